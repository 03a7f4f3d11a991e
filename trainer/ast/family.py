"""The "ast" model family: train a run directory from a TrainJob, and load it back."""

from __future__ import annotations

import time
from typing import Any

import torch

from edge_ad.errors import WeightsError
from edge_ad.typed_data import to_plain
from trainer.ast.model import ASTDetector, ASTModelConfig
from trainer.ast.setup import build_parts, rebuild_backbone
from trainer.ast.train import assemble_split, fit_student, fit_teacher
from trainer.features import prepare_split
from trainer.inference import iter_scores, write_validation_scores
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.run_io import (
    TRAIN_LOG_FILE,
    LoadedRun,
    versions,
    write_checkpoint,
    write_config,
    write_json,
)
from trainer.torch_setup import cpu_threads, resolve_device, seed_everything


@register_family("ast")
class ASTFamily:
    """Asymmetric Student-Teacher (Rudolph et al., WACV 2023) on RGB, depth or both."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Cache features, train teacher then student, write the run, score validation."""
        with cpu_threads(job.settings.train.cpu_threads) as threads:
            return _train(job, threads)

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> ASTDetector:
        """Rebuild the detector of a saved run (backbone weights checked against the recorded hash)."""
        model_config = ASTModelConfig.from_dict(config["model"])
        backbone = rebuild_backbone(config["backbone"]) if model_config.uses_rgb else None
        detector = ASTDetector(model_config, backbone)
        state = checkpoint["state"]
        for part in ("teacher", "student"):
            try:
                getattr(detector, part).load_state_dict(state[part], strict=True)
            except (KeyError, RuntimeError) as exc:
                raise WeightsError(
                    f"checkpoint {part} weights do not fit the model in config.yaml: {exc}"
                ) from exc
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

    config = {
        "family": "ast",
        "preset": settings.preset,
        "mode": settings.mode,
        "aggregation": parts.model.aggregation,
        "seed": settings.seed,
        "backbone": parts.backbone_info,
        "model": parts.model.to_dict(),
        "preprocess": parts.preprocess.to_dict(),
        "train": {
            **to_plain(settings.train),
            "device": str(device),
            "threads": threads,
        },
        "data": {
            "root": str(job.data_root),
            "train_samples": len(job.train_split),
            "validation_samples": len(job.val_split),
            "validation_source": job.val_source,
            "has_xyz": job.train_split.has_xyz,
        },
        "settings": settings.to_dict(),
        "versions": versions(),
    }
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_config(job.out_dir, config)
    write_checkpoint(
        job.out_dir,
        config,
        {"teacher": detector.teacher.state_dict(), "student": detector.student.state_dict()},
    )

    loaded = LoadedRun(config, detector, parts.preprocess, parts.model.aggregation, job.out_dir)
    t0 = time.perf_counter()
    scored = list(iter_scores(loaded, job.val_split, batch, job.progress))
    validation_scores = write_validation_scores(job.out_dir, scored)
    log = {
        "final_losses": {"teacher": teacher_log[-1]["loss"], "student": student_log[-1]["loss"]},
        "teacher": teacher_log,
        "student": student_log,
        "seconds": {
            "features": feature_seconds,
            "teacher": teacher_seconds,
            "student": student_seconds,
            "validation_scoring": time.perf_counter() - t0,
            "total": time.perf_counter() - started,
        },
        "feature_cache": {"train_hit": train_hit, "validation_hit": val_hit, "dir": str(job.cache.cache_dir)},
        "device": str(device),
        "threads": threads,
    }
    write_json(job.out_dir / TRAIN_LOG_FILE, log)
    return TrainResult(job.out_dir, config, log, validation_scores)
