"""Dataset splits -> in-memory model inputs and, per patch size, the teacher's standardised targets.

The patch networks are trained on the images themselves (not on cached backbone features), so
the split is decoded once through the runtime's preprocessing (trainer.features.preprocessed_batches)
and kept in memory; the frozen backbone runs on the same batches for the distillation targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_ad.dataset import DatasetSplit
from edge_ad.errors import TrainingError
from edge_ad.preprocess import PreprocessConfig
from trainer.features import preprocessed_batches
from trainer.uninformed_students.model import UninformedStudentsDetector, grid_mask, model_inputs
from trainer.uninformed_students.patch_net import reflect_pad
from trainer.uninformed_students.targets import ScaleData, depth_block_targets, feature_targets, standardise


@dataclass(eq=False)
class SplitTensors:
    """Model inputs x (N, C, S, S), depth (N, 1, S, S), mask (N, 1, S, S) and backbone features (or None)."""

    x: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    features: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.x)


@torch.no_grad()
def load_split(
    split: DatasetSplit,
    config: PreprocessConfig,
    mode: str,
    backbone: nn.Module | None,
    device: torch.device,
    batch_size: int,
    progress: bool = True,
) -> SplitTensors:
    """Preprocess every sample of ``split`` (the runtime's path) and run ``backbone`` on its images."""
    xs, depths, masks, features = [], [], [], []
    for batch in preprocessed_batches(
        split, config, batch_size, f"inputs {split.split} ({len(split)})", progress
    ):
        image = torch.from_numpy(batch.inputs["image"]).to(device)
        depth = torch.from_numpy(batch.inputs["depth"]).to(device)
        xs.append(model_inputs(mode, image, depth))
        depths.append(depth)
        masks.append(torch.from_numpy(batch.inputs["mask"]).to(device))
        if backbone is not None:
            features.append(backbone(image).float())
    if not xs:
        raise TrainingError(f"split {split.split} of {split.category_root} has no samples to train on")
    x = torch.cat(xs)
    if not torch.isfinite(x).all():
        raise TrainingError("model inputs contain NaN or inf (check the depth data and preprocessing)")
    return SplitTensors(x, torch.cat(depths), torch.cat(masks), torch.cat(features) if features else None)


def raw_targets(
    detector: UninformedStudentsDetector, scale: int, data: SplitTensors, blocks: int
) -> torch.Tensor:
    """Unstandardised teacher targets (N, T, h, w): backbone features and/or depth sub-block means."""
    net = detector.teachers[scale].net
    cells = detector.config.image_size // net.stride
    parts = []
    if data.features is not None:
        parts.append(feature_targets(data.features, cells))
    if detector.config.mode in ("depth", "rgbd"):
        parts.append(depth_block_targets(data.depth, net, blocks))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def scale_data(
    detector: UninformedStudentsDetector, scale: int, train: SplitTensors, val: SplitTensors, blocks: int
) -> tuple[ScaleData, ScaleData]:
    """Train and validation :class:`ScaleData` of one patch size, targets standardised on the training foreground."""
    net = detector.teachers[scale].net
    out = []
    for data in (train, val):
        out.append(
            ScaleData(
                padded=reflect_pad(data.x, net.pad),
                targets=raw_targets(detector, scale, data, blocks),
                mask=grid_mask(data.mask, net.stride),
                stride=net.stride,
                span=net.receptive_field,
            )
        )
    mean, std = standardise(out[0].targets, out[0].mask)
    for item in out:
        item.targets = (item.targets - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return out[0], out[1]
