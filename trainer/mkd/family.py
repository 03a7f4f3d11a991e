"""The "mkd" model family: Multiresolution Knowledge Distillation (Salehi et al., CVPR 2021).

A frozen ImageNet source S is tapped at several critical points (CPs); a smaller, bias-free,
VGG-like cloner C learns on good images to reproduce S at every CP (value: MSE; direction:
1 - cosine). At test time their discrepancy is the anomaly score. See docs/models/mkd.md.

Choices where the paper is silent, garbled or impossible here:

* Source: mkd-paper uses VGG-16 as published (pools after blocks 2-5, user-given torchvision
  weights). mkd-edge/-tiny use EfficientNet-Lite0 (the only packaged weights; VGG-16 costs about
  15 GMAC at 224 px) tapped after blocks 2/4/10 (strides 4/8/16). Its block outputs are signed
  linear bottlenecks, so the cloner's CP convs are linear there (``cp_activation: linear``).
* Cloner: the official code's [16,16,M,16,128,M,...] for VGG (Figure 2 is not in the text); for
  Lite0 the same pattern with the taps' channel counts at the CPs.
* Loss: both combinations, ``model.loss``: "code" (L_dir + lambda L_val, lambda 0.5, the default:
  it is what produced the published numbers) or "paper" (L_val + lambda L_dir, lambda = initial
  L_val / L_dir of the untrained cloner on the training set). L_dir subtracts each CP's cosine
  from 1 (code), not the whole sum (as printed). The run records ``loss``, ``lam``, ``lam_rule``.
* Scoring CPs: ``model.score_points``; mkd-paper scores the last 3 of 4 (code), the others all.
* Anomaly map ("mkd", what forward, the bundle and the line compute): per position, the weighted
  sum of (1 - cosine over channels) and the channel-mean squared error, summed over scoring CPs
  upsampled bilinearly to the finest one. Image score: the map aggregated over the foreground
  (mean = the paper's total loss; "auto" takes max with a foreground mask, as every family).
* "mkd-gradient" (evaluation only): the paper's |dL/dx| localisation (trainer.mkd.gradient_map),
  pooled to the map grid because every score kind shares one grid and mask.
* Training: Adam (lr, betas, weight decay from ``train``), no augmentation, no early stopping; a
  fixed epoch count instead of "until convergence" and no averaging over checkpoints.
* Modes: rgb only. Depth cannot enter an ImageNet source, and a cloner given depth as a 4th
  channel could only learn to ignore it; rgbd and depth are ConfigErrors saying so. With point
  clouds, depth still finds the part (the foreground mask), like every family.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from trainer.family_run import load_state, run_config, write_run, write_train_log
from trainer.mkd.config import MKDModelConfig
from trainer.mkd.model import MKDDetector
from trainer.mkd.setup import build_parts, rebuild_source
from trainer.mkd.train import clone_data, fit_cloner, initial_lambda
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.torch_setup import resolve_device, seed_everything


@register_family("mkd")
class MKDFamily:
    """Multiresolution Knowledge Distillation on RGB (the foreground mask from depth when there is one)."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Preprocess, run the source once, train the cloner, write the run, score validation."""
        return _train(job, job.threads)

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> MKDDetector:
        """Rebuild the detector of a saved run (source weights checked against the recorded hash)."""
        detector = MKDDetector(MKDModelConfig.from_dict(config["model"]), rebuild_source(config["backbone"]))
        load_state(detector, checkpoint["state"], ("cloner",))
        return detector.to(device).eval()


def _train(job: TrainJob, threads: int) -> TrainResult:
    """The training run proper (inside the thread-count context)."""
    started = time.perf_counter()
    settings = job.settings
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    parts = build_parts(settings, job.train_split.has_xyz)
    detector = MKDDetector(parts.model, parts.source).to(device)
    batch = settings.train.batch_size

    t0 = time.perf_counter()
    train_data = clone_data(detector, job.train_split, parts.preprocess, device, batch, job.progress)
    val_data = clone_data(detector, job.val_split, parts.preprocess, device, batch, job.progress)
    source_seconds = time.perf_counter() - t0
    if parts.lam_from_data:
        detector.config = dataclasses.replace(
            detector.config, lam=initial_lambda(detector, train_data, batch)
        )

    t0 = time.perf_counter()
    log = fit_cloner(detector, train_data, val_data, settings.train, generator, job.progress)
    cloner_seconds = time.perf_counter() - t0
    detector.eval()
    model = detector.config

    config = run_config(
        job,
        family="mkd",
        aggregation=model.aggregation,
        backbone=parts.backbone_info,
        model=model.to_dict(),
        preprocess=parts.preprocess,
        device=device,
    )
    del train_data, val_data  # the images are not needed for scoring
    validation_scores, scoring_seconds = write_run(
        job, config, {"cloner": detector.cloner.state_dict()}, detector, parts.preprocess
    )
    train_log = {
        "final_losses": {"cloner": log[-1]["loss"]},
        "cloner": log,
        "loss": {"combination": model.loss, "lam": model.lam, "lam_rule": model.lam_rule},
        "seconds": {
            "source": source_seconds,
            "cloner": cloner_seconds,
            "validation_scoring": scoring_seconds,
            "total": time.perf_counter() - started,
        },
        "device": str(device),
        "threads": threads,
    }
    return write_train_log(job, config, train_log, validation_scores)
