"""The "stereotype_deepening" family (Zhou, Zheng, Yong): train a run directory and load it back.

A tree of networks: a doctor (teacher), m >= 2 masters that regress the doctor, and
``bachelors_per_master`` bachelors per master that regress their master, trained one level after
another ("transitive learning"). A cell is anomalous when the tree disagrees with itself there:
inference bias (doctor vs masters), delivery bias (master vs its bachelors) and peer bias (within
a level). Choices where the paper is garbled, silent or impossible here:

* Doctor: the paper fine-tunes a pretrained classifier with cross-entropy on patches of "abnormal"
  (outside) data; backbone, classes and data are unspecified and there is neither outside data nor
  any packaged weights but EfficientNet-Lite0 here. The doctor is the frozen ImageNet Lite0 cut
  after block 4 (40 channels at stride 8, receptive field 67 px, close to Table 1's 61 px): its
  ImageNet training is the "training with abnormal data". Not projected to 512-d: a fixed random
  projection of 40 channels adds no information (rank 40), costs 12x the output convs in all
  1 + 3m networks, and would give the compactness loss 512 dimensions it cannot decorrelate.
* Patch network: Table 1 run fully-convolutionally (trainer.stereotype_deepening.patch_net; the
  4 -> 1 -> 512 tail read as a typesetting error; He init, zero-initialised output layer).
  Training is dense: every foreground cell is one 61-px patch of the paper, and instead of random
  64-px patches each step sees one window per image (``model.train_crop`` px, around the part:
  the belt is never scored), which gives the same patches for far fewer network passes.
* Level normalisation: per-dimension standardisation over the training foreground cells
  (trainer.stereotype_deepening.train). Loss: L_d mean squared error per dimension, L_p the mean
  |correlation| between descriptor dimensions (trainer.stereotype_deepening.losses); mu = 0.9:
  regression is what the biases measure, compactness only regularises (with mu = 0.5 the
  students give up fidelity to decorrelate dimensions that the doctor itself correlates).
* Scores (trainer.stereotype_deepening.biases): delivery within a master's class; peer as the mean
  over pairs; each term divided by its mean over the training foreground cells (buffers) so none
  dominates. Score kinds: "stereotype_deepening" (the sum, Eq. 10, what forward exports),
  "sd-inference", "sd-delivery", "sd-peer" (the paper's single-term ablation, Figure 5).
* Modes: ``rgb`` and ``rgbd``. In rgbd the students see RGB + depth (4 channels) and the doctor's
  descriptor gets a depth target appended: the depth averaged to 4x4 sub-cells of each 8x8 cell
  (16 values). Without that target the doctor never sees depth and the students would learn to
  ignore the fourth channel: depth could not change a score. ``depth`` mode is refused: the doctor
  is an RGB network, a depth-only tree would have no teacher.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from trainer.ast.setup import rebuild_backbone
from trainer.family_run import load_state, run_config, write_run, write_train_log
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.stereotype_deepening.model import SDDetector, SDModelConfig
from trainer.stereotype_deepening.patch_net import STRIDE
from trainer.stereotype_deepening.setup import build_parts
from trainer.stereotype_deepening.train import (
    LevelSchedule,
    batched,
    fit_input_stats,
    fit_level,
    fit_master_stats,
    fit_term_means,
    load_split,
)
from trainer.torch_setup import resolve_device, seed_everything

PARTS = ("masters", "bachelors", "stats")


@register_family("stereotype_deepening")
class StereotypeDeepeningFamily:
    """Stereotype Deepening on RGB or RGB-D: doctor -> masters -> bachelors."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Preprocess, fit the doctor statistics, masters, then bachelors; write the run; score validation."""
        return _train(job, job.threads)

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> SDDetector:
        """Rebuild the detector of a saved run (doctor weights checked against the recorded hash)."""
        detector = SDDetector(SDModelConfig.from_dict(config["model"]), rebuild_backbone(config["backbone"]))
        load_state(detector, checkpoint["state"], PARTS)
        return detector.to(device).eval()


def _train(job: TrainJob, threads: int) -> TrainResult:
    """The training run proper (inside the thread-count context)."""
    started = time.perf_counter()
    settings = job.settings
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    parts = build_parts(settings, job.train_split.has_xyz)
    detector = SDDetector(parts.model, parts.backbone).to(device)
    batch = settings.train.batch_size

    t0 = time.perf_counter()
    data = load_split(job.train_split, parts.preprocess, batch, device, job.progress)
    fit_input_stats(detector, data, batch)
    inputs = batched(detector.student_input, data, batch)
    doctor = batched(detector.doctor, data, batch)[:, None]
    input_seconds = time.perf_counter() - t0

    optim = settings.train
    t0 = time.perf_counter()
    crop = parts.train_crop // STRIDE
    schedule = LevelSchedule("masters", optim.epochs, parts.mu, crop)
    master_log = fit_level(detector.masters, inputs, doctor, data.cells, optim, schedule, generator, job.progress)
    master_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    targets = fit_master_stats(detector, data, batch)
    schedule = LevelSchedule("bachelors", optim.student_epochs or optim.epochs, parts.mu, crop)
    bachelor_log = fit_level(detector.bachelors, inputs, targets, data.cells, optim, schedule, generator, job.progress)
    bachelor_seconds = time.perf_counter() - t0
    term_means = fit_term_means(detector, data, batch)
    detector.eval()
    del inputs, doctor, targets, data

    config = run_config(
        job,
        family="stereotype_deepening",
        aggregation=parts.model.aggregation,
        backbone=parts.backbone_info,
        model=parts.model.to_dict(),
        preprocess=parts.preprocess,
        device=device,
        train_extra={"mu": parts.mu, "train_crop": parts.train_crop},
    )
    state = {part: getattr(detector, part).state_dict() for part in PARTS}
    validation_scores, scoring_seconds = write_run(job, config, state, detector, parts.preprocess)
    log = {
        "final_losses": {"masters": master_log[-1]["loss"], "bachelors": bachelor_log[-1]["loss"]},
        "masters": master_log,
        "bachelors": bachelor_log,
        "term_means": term_means,
        "seconds": {
            "inputs": input_seconds,
            "masters": master_seconds,
            "bachelors": bachelor_seconds,
            "validation_scoring": scoring_seconds,
            "total": time.perf_counter() - started,
        },
        "device": str(device),
        "threads": threads,
    }
    return write_train_log(job, config, log, validation_scores)
