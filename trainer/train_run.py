"""Train a run directory from a dataset folder and a preset: the entry point behind ``edge-ad train``.

Family-independent steps live here (open the data, pick the validation samples, resolve the
preset against the data and the overrides); the family registered under ``settings.family``
does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.dataset import DatasetSplit, open_split
from edge_ad.errors import DataError
from trainer.config import DEFAULT_PRESET, resolve_settings
from trainer.feature_cache import FeatureCache, default_cache_dir
from trainer.registry import TrainJob, TrainResult, get_family
from trainer.torch_setup import cpu_threads


def split_train_validation(
    data_root: Path, val_fraction: float, seed: int
) -> tuple[DatasetSplit, DatasetSplit, str]:
    """(train, validation, source): the ``validation`` split when it exists, else a seeded hold-out of train."""
    train = open_split(data_root, "train")
    if (Path(data_root) / "validation").is_dir():
        return train, open_split(data_root, "validation"), "validation"
    if len(train) < 2:
        raise DataError(
            f"{data_root}: need at least 2 training images to hold some out for validation, got {len(train)}"
        )
    n_val = min(len(train) - 1, max(1, round(val_fraction * len(train))))
    order = np.random.default_rng(seed).permutation(len(train))
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])

    def pick(idx: list[int]) -> DatasetSplit:
        return DatasetSplit(train.category_root, "train", train.layout, [train.refs[i] for i in idx])

    return pick(train_idx), pick(val_idx), "train-holdout"


def train(
    data_root: Path,
    out_dir: Path,
    preset: str = DEFAULT_PRESET,
    overrides: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on the good parts of ``data_root`` (one category folder) into ``out_dir``.

    ``overrides`` is a nested dict over the preset (e.g. ``{"mode": "rgb", "train": {"epochs": 5}}``);
    ``cache_dir`` None uses :func:`trainer.feature_cache.default_cache_dir`.
    Raises DataError for missing or unreadable data, ConfigError for invalid settings (including a
    depth mode on data without xyz), WeightsError and TrainingError from the family.
    """
    data_root = Path(data_root)
    first = open_split(data_root, "train")  # fails early, naming the folder, when the data is missing
    settings = resolve_settings(preset, first.has_xyz, overrides)
    train_split, val_split, val_source = split_train_validation(
        data_root, settings.val_fraction, settings.seed
    )
    # The preset's thread count holds for the whole run, whichever family trains it.
    with cpu_threads(settings.train.cpu_threads) as threads:
        job = TrainJob(
            settings=settings,
            data_root=data_root,
            train_split=train_split,
            val_split=val_split,
            val_source=val_source,
            out_dir=Path(out_dir),
            cache=FeatureCache(cache_dir if cache_dir is not None else default_cache_dir()),
            progress=progress,
            threads=threads,
        )
        return get_family(settings.family).train(job)
