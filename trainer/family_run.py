"""What every family does around its own training: the run record, the files, the weights on load.

A family trains its networks its own way; the run folder it leaves is the same for all of them:
``config.yaml`` (:func:`run_config`), ``checkpoint.pt`` and ``validation_scores.json``
(:func:`write_run`), ``train_log.json`` (:func:`write_train_log`). :func:`load_state` puts a
checkpoint's weights back with the error every family gives when they do not fit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from edge_ad.errors import WeightsError
from edge_ad.preprocess import PreprocessConfig
from edge_ad.typed_data import to_plain
from trainer.inference import iter_scores, write_validation_scores
from trainer.registry import TrainJob, TrainResult
from trainer.run_io import (
    TRAIN_LOG_FILE,
    LoadedRun,
    versions,
    write_checkpoint,
    write_config,
    write_json,
)


def run_config(
    job: TrainJob,
    *,
    family: str,
    aggregation: str,
    backbone: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    preprocess: PreprocessConfig,
    device: torch.device,
    train_extra: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``config.yaml`` of a run: everything ``load`` needs plus what the run was trained on and with."""
    settings = job.settings
    return {
        "family": family,
        "preset": settings.preset,
        "mode": settings.mode,
        "aggregation": aggregation,
        "seed": settings.seed,
        "backbone": dict(backbone) if backbone is not None else None,
        "model": dict(model),
        "preprocess": preprocess.to_dict(),
        "train": {**to_plain(settings.train), **(train_extra or {}), "device": str(device), "threads": job.threads},
        "data": {
            "root": str(job.data_root),
            "train_samples": len(job.train_split),
            "validation_samples": len(job.val_split),
            "validation_source": job.val_source,
            "has_xyz": job.train_split.has_xyz,
        },
        **extra,
        "settings": settings.to_dict(),
        "versions": versions(),
    }


def write_run(
    job: TrainJob,
    config: dict[str, Any],
    state: Mapping[str, Mapping[str, torch.Tensor]],
    detector: nn.Module,
    preprocess: PreprocessConfig,
) -> tuple[list[float], float]:
    """Write config.yaml and checkpoint.pt, score the good validation parts into validation_scores.json.

    Returns the validation scores (the family's default score) and the seconds scoring took.
    """
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_config(job.out_dir, config)
    write_checkpoint(job.out_dir, config, {name: dict(sd) for name, sd in state.items()})
    loaded = LoadedRun(config, detector.eval(), preprocess, str(config["aggregation"]), job.out_dir)
    started = time.perf_counter()
    scored = list(iter_scores(loaded, job.val_split, job.settings.train.batch_size, job.progress))
    return write_validation_scores(job.out_dir, scored), time.perf_counter() - started


def write_train_log(
    job: TrainJob, config: dict[str, Any], log: dict[str, Any], validation_scores: list[float]
) -> TrainResult:
    """Write ``train_log.json`` (it must carry ``seconds.total``) and return the finished run."""
    write_json(job.out_dir / TRAIN_LOG_FILE, log)
    return TrainResult(job.out_dir, config, log, validation_scores)


def load_state(detector: nn.Module, state: Mapping[str, Any], parts: Sequence[str] | None = None) -> None:
    """Load the checkpoint's state dicts into ``detector``'s ``parts`` (None: the whole detector
    from ``state["detector"]``); WeightsError naming the part when they do not fit config.yaml."""
    targets = [(name, getattr(detector, name)) for name in parts] if parts else [("detector", detector)]
    for name, module in targets:
        try:
            module.load_state_dict(state[name], strict=True)
        except (KeyError, RuntimeError) as exc:
            raise WeightsError(f"checkpoint {name} weights do not fit the model in config.yaml: {exc}") from exc
