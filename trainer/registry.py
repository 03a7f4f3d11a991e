"""Registry of model families ("ast" now; "mkd", "reb", ... later) and the job they are given.

A family is a class with two static methods, registered by name:

* ``train(job: TrainJob) -> TrainResult``: train from the good samples of ``job`` and write the
  run directory (config.yaml, checkpoint.pt, train_log.json, validation_scores.json);
* ``load(config: dict, checkpoint: dict, device) -> nn.Module``: rebuild the trained detector
  (a module with ``forward(image, depth, mask) -> (anomaly_map, score)`` and ``score_maps``).

Every family exports through the same path because every detector takes the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from edge_ad.dataset import DatasetSplit
from edge_ad.registry import Registry
from trainer.config import TrainSettings
from trainer.feature_cache import FeatureCache


@dataclass(eq=False)
class TrainJob:
    """Everything a family needs to train: resolved settings, data splits, output and cache."""

    settings: TrainSettings
    data_root: Path
    train_split: DatasetSplit
    val_split: DatasetSplit
    val_source: str  # "validation" (its own split) or "train-holdout"
    out_dir: Path
    cache: FeatureCache
    progress: bool = True
    threads: int = 1  # torch threads the run uses (set by trainer.train_run from the preset)


@dataclass(eq=False)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    config: dict[str, Any]
    log: dict[str, Any]
    validation_scores: list[float] = field(default_factory=list)


class ModelFamily(Protocol):
    """Interface of a registered family (see the module docstring)."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult: ...

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> nn.Module: ...


_FAMILIES: Registry[type] = Registry("model family")


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator adding a family under ``name``; a second registration warns and wins."""
    return _FAMILIES.register(name)


def list_families() -> list[str]:
    """Registered family names, sorted."""
    return _FAMILIES.names()


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; ConfigError naming the known ones otherwise."""
    return _FAMILIES.lookup(name)  # type: ignore[return-value]


# Importing a family module registers it.
from trainer.ast import family as _ast_family  # noqa: E402,F401
from trainer.mkd import family as _mkd_family  # noqa: E402,F401
from trainer.reb import family as _reb_family  # noqa: E402,F401
from trainer.stereotype_deepening import family as _stereotype_deepening_family  # noqa: E402,F401
from trainer.uninformed_students import family as _uninformed_students_family  # noqa: E402,F401
