"""Dataset split -> preprocessed model inputs (through edge_ad.preprocess) -> backbone features.

Training, validation scoring and evaluation all get their inputs from :func:`preprocessed_batches`,
which calls the one preprocessing function of the runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_ad.dataset import DatasetSplit, Sample
from edge_ad.preprocess import PreprocessConfig, preprocess, to_model_inputs
from edge_ad.progress import track
from trainer.feature_cache import FeatureCache, SplitArrays, cache_key


def needs_xyz(config: PreprocessConfig) -> bool:
    """Whether preprocessing uses the point cloud (for depth input or the foreground mask)."""
    return config.mode != "rgb" or config.foreground is not None


@dataclass(eq=False)
class PreprocessedBatch:
    """Decoded samples and their model inputs ("image", "depth", "mask") plus per-sample has_mask."""

    samples: list[Sample]
    inputs: dict[str, np.ndarray]
    has_mask: np.ndarray


def preprocessed_batches(
    split: DatasetSplit, config: PreprocessConfig, batch_size: int, description: str, progress: bool = True
) -> Iterator[PreprocessedBatch]:
    """Decode and preprocess ``split`` in batches of ``batch_size`` (the runtime's preprocessing)."""
    use_xyz = needs_xyz(config)
    starts = range(0, len(split), batch_size)
    for start in track(starts, description, enabled=progress):
        samples = [split[i] for i in range(start, min(start + batch_size, len(split)))]
        done = [preprocess(s.rgb, s.xyz if use_xyz else None, config) for s in samples]
        yield PreprocessedBatch(
            samples, to_model_inputs(done), np.array([p.has_mask for p in done], dtype=bool)
        )


def backbone_id(backbone: nn.Module | None) -> str:
    """Identity of a backbone for cache keys: name, feature block (channels/stride) and weights hash."""
    if backbone is None:
        return "none"
    name = getattr(backbone, "name", type(backbone).__name__)
    return f"{name}:c{backbone.channels}:s{backbone.stride}:{getattr(backbone, 'weights_sha256', None)}"


@torch.no_grad()
def prepare_split(
    split: DatasetSplit,
    config: PreprocessConfig,
    backbone: nn.Module | None,
    cache: FeatureCache,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[SplitArrays, bool]:
    """Model inputs and backbone features of ``split``, from the cache when possible.

    Returns the arrays and whether they came from the cache. ``backbone`` None (depth mode)
    caches only the preprocessed depth and mask.
    """
    key = cache_key(backbone_id(backbone), config.fingerprint(), split.refs)
    cached = cache.load(key)
    if cached is not None and len(cached) == len(split):
        return cached, True
    names: list[str] = []
    depth: list[np.ndarray] = []
    mask: list[np.ndarray] = []
    has_mask: list[np.ndarray] = []
    features: list[np.ndarray] = []
    what = "features" if backbone is not None else "inputs"
    for batch in preprocessed_batches(
        split, config, batch_size, f"{what} {split.split} ({len(split)})", progress
    ):
        names.extend(s.name for s in batch.samples)
        depth.append(batch.inputs["depth"].astype(np.float32))
        mask.append(batch.inputs["mask"].astype(np.float32))
        has_mask.append(batch.has_mask)
        if backbone is not None:
            image = torch.from_numpy(batch.inputs["image"]).to(device)
            features.append(backbone(image).float().cpu().numpy())
    arrays = SplitArrays(
        names=names,
        depth=np.concatenate(depth),
        mask=np.concatenate(mask),
        has_mask=np.concatenate(has_mask),
        features=np.concatenate(features) if features else None,
    )
    cache.save(key, arrays)
    return arrays, False
