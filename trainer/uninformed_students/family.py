"""The "uninformed_students" model family: train a run directory from a TrainJob, and load it back.

Choices where the paper (only its supplement is in the seeds) is silent, garbled or impossible
here; docs/models/uninformed_students.md has the reasons at more length:

* Teacher losses L_k + L_c (the supplement's best); L_m dropped (needs ImageNet triplets).
  L_c as the mean squared off-diagonal correlation (the paper's plain sum is unbounded below).
* L_k's pretrained descriptor: EfficientNet-Lite0 (packaged weights; the paper preset: ResNet-18,
  a user file) sampled at each patch centre from whole-image features, not run per patch; the teacher is trained on the good
  training images (no ImageNet), densely on foreground crops.
* Conv1 kernels fixed to 5x5 (p = 33) and 6x6 (p = 17); the p = 65 network is reconstructed
  from the main paper; the descriptor conv is linear (students regress signed targets).
* Dense maps at the networks' stride (4 for p = 33), reflect padding, no "fast dense" unwarping.
* Students regress the teacher's descriptor standardised per dimension over the training
  foreground; error and variance are divided by their std over the good *validation* foreground
  (the paper's choice as we recall it: unseen good data, so the scale is that of a new part).
* Modes: rgb, depth and rgbd. With depth the networks take 4 (or 1) channels and the teacher
  also reconstructs the patch's depth at 4x4 blocks, so depth shape enters the descriptor.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from trainer.family_run import load_state, run_config, write_run, write_train_log
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.torch_setup import resolve_device, seed_everything
from trainer.uninformed_students.data import load_split, scale_data
from trainer.uninformed_students.model import UninformedStudentsDetector, USModelConfig
from trainer.uninformed_students.setup import build_parts
from trainer.uninformed_students.train import (
    fit_students,
    fit_teacher,
    set_descriptor_statistics,
    set_score_statistics,
    teacher_descriptors,
)


@register_family("uninformed_students")
class UninformedStudentsFamily:
    """Uninformed Students (Bergmann et al., CVPR 2020): patch teacher + student ensemble, per patch size."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Load the data, train teacher then students per patch size, calibrate, write the run, score validation."""
        return _train(job, job.threads)

    @staticmethod
    def load(
        config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device
    ) -> UninformedStudentsDetector:
        """Rebuild the detector of a saved run (the backbone was a training target only: not needed)."""
        detector = UninformedStudentsDetector(USModelConfig.from_dict(config["model"]))
        load_state(detector, checkpoint["state"])
        return detector.to(device).eval()


def _train(job: TrainJob, threads: int) -> TrainResult:
    """The training run proper (inside the thread-count context)."""
    started = time.perf_counter()
    settings = job.settings
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    parts = build_parts(settings, job.train_split.has_xyz)
    detector = UninformedStudentsDetector(parts.model).to(device)
    backbone = None if parts.backbone is None else parts.backbone.to(device)
    batch = settings.train.batch_size

    t0 = time.perf_counter()
    mode = parts.model.mode
    train = load_split(job.train_split, parts.preprocess, mode, backbone, device, batch, job.progress)
    # The validation parts' backbone features serve the (logged) teacher validation loss.
    val = load_split(job.val_split, parts.preprocess, mode, backbone, device, batch, job.progress)
    seconds: dict[str, float] = {"inputs": time.perf_counter() - t0}

    logs: dict[str, Any] = {}
    statistics: dict[str, dict[str, float]] = {}
    for scale, patch in enumerate(parts.model.patch_sizes):
        train_data, val_data = scale_data(detector, scale, train, val, parts.sizes.depth_blocks)
        t0 = time.perf_counter()
        logs[f"teacher_p{patch}"] = fit_teacher(
            detector, scale, train_data, val_data, parts.sizes, settings.train, generator, job.progress
        )
        seconds[f"teacher_p{patch}"] = time.perf_counter() - t0
        descriptors = teacher_descriptors(detector, scale, train_data, batch)
        set_descriptor_statistics(detector, scale, descriptors, train_data.mask)
        del descriptors
        t0 = time.perf_counter()
        logs[f"students_p{patch}"] = fit_students(
            detector, scale, train_data, val_data, parts.sizes, settings.train, generator, job.progress
        )
        seconds[f"students_p{patch}"] = time.perf_counter() - t0
        statistics[f"p{patch}"] = set_score_statistics(detector, scale, val_data, batch)
    detector.eval()

    config = run_config(
        job,
        family="uninformed_students",
        aggregation=parts.model.aggregation,
        backbone=parts.backbone_info,
        model=parts.model.to_dict(),
        preprocess=parts.preprocess,
        device=device,
    )
    validation_scores, scoring_seconds = write_run(
        job, config, {"detector": detector.state_dict()}, detector, parts.preprocess
    )
    seconds["validation_scoring"] = scoring_seconds
    seconds["total"] = time.perf_counter() - started
    log = {
        "final_losses": {name: entries[-1]["loss"] for name, entries in logs.items()},
        **logs,
        "score_statistics": statistics,
        "seconds": seconds,
        "device": str(device),
        "threads": threads,
    }
    return write_train_log(job, config, log, validation_scores)
