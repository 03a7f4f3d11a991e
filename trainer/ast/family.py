"""The "ast" model family: train a run directory from a TrainJob, and load it back."""

from __future__ import annotations

import time
from typing import Any

import torch

from trainer.ast.model import ASTDetector, ASTModelConfig
from trainer.ast.setup import build_parts, rebuild_backbone
from trainer.ast.train import assemble_split, fit_student, fit_teacher
from trainer.family_run import load_state, run_config, write_run, write_train_log
from trainer.features import prepare_split
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.torch_setup import resolve_device, seed_everything


@register_family("ast")
class ASTFamily:
    """Asymmetric Student-Teacher (Rudolph et al., WACV 2023) on RGB, depth or both."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Cache features, train teacher then student, write the run, score validation."""
        return _train(job, job.threads)

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> ASTDetector:
        """Rebuild the detector of a saved run (backbone weights checked against the recorded hash)."""
        model_config = ASTModelConfig.from_dict(config["model"])
        backbone = rebuild_backbone(config["backbone"]) if model_config.uses_rgb else None
        detector = ASTDetector(model_config, backbone)
        load_state(detector, checkpoint["state"], ("teacher", "student"))
        return detector.to(device).eval()


def _train(job: TrainJob, threads: int) -> TrainResult:
    """The training run proper (inside the thread-count context)."""
    started = time.perf_counter()
    settings = job.settings
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    parts = build_parts(settings, job.train_split.has_xyz)
    detector = ASTDetector(parts.model, parts.backbone).to(device)

    t0 = time.perf_counter()
    batch = settings.train.batch_size
    train_arrays, train_hit = prepare_split(
        job.train_split, parts.preprocess, detector.backbone, job.cache, device, batch, job.progress
    )
    val_arrays, val_hit = prepare_split(
        job.val_split, parts.preprocess, detector.backbone, job.cache, device, batch, job.progress
    )
    feature_seconds = time.perf_counter() - t0

    train_inputs = assemble_split(detector, train_arrays, device)
    val_inputs = assemble_split(detector, val_arrays, device)
    t0 = time.perf_counter()
    teacher_log = fit_teacher(detector, train_inputs, val_inputs, settings.train, generator, job.progress)
    teacher_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    student_log = fit_student(detector, train_inputs, val_inputs, settings.train, generator, job.progress)
    student_seconds = time.perf_counter() - t0
    detector.eval()

    config = run_config(
        job,
        family="ast",
        aggregation=parts.model.aggregation,
        backbone=parts.backbone_info,
        model=parts.model.to_dict(),
        preprocess=parts.preprocess,
        device=device,
    )
    state = {"teacher": detector.teacher.state_dict(), "student": detector.student.state_dict()}
    validation_scores, scoring_seconds = write_run(job, config, state, detector, parts.preprocess)
    log = {
        "final_losses": {"teacher": teacher_log[-1]["loss"], "student": student_log[-1]["loss"]},
        "teacher": teacher_log,
        "student": student_log,
        "seconds": {
            "features": feature_seconds,
            "teacher": teacher_seconds,
            "student": student_seconds,
            "validation_scoring": scoring_seconds,
            "total": time.perf_counter() - started,
        },
        "feature_cache": {"train_hit": train_hit, "validation_hit": val_hit, "dir": str(job.cache.cache_dir)},
        "device": str(device),
        "threads": threads,
    }
    return write_train_log(job, config, log, validation_scores)
