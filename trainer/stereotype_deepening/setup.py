"""Resolved settings -> the Stereotype Deepening pieces: doctor backbone, PreprocessConfig, model config.

The doctor's feature block must have stride 8, the stride of the patch network's three pools,
so doctor and students describe the same 8x8 cells. Depth is read at full resolution
(depth_size = image_size) because the students take it as a fourth input channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from edge_ad.errors import ConfigError
from edge_ad.preprocess import PreprocessConfig
from trainer.config import TrainSettings
from trainer.family_setup import (
    check_grid,
    frozen_backbone,
    model_sizes,
    preprocess_config,
    resolve_aggregation,
)
from trainer.stereotype_deepening.model import SDModelConfig
from trainer.stereotype_deepening.patch_net import PAPER_LEAKY_SLOPE, STRIDE


@dataclass(frozen=True)
class SDSizes:
    """The preset's ``model`` section (network sizes and the loss weight mu)."""

    masters: int = 2
    bachelors_per_master: int = 2
    widths: tuple[int, ...] = (64, 32, 16, 8)
    head_width: int = 128
    leaky_slope: float = PAPER_LEAKY_SLOPE
    depth_target_cells: int = 4
    mu: float = 0.9
    train_crop: int = 0  # training window side in pixels (multiple of 8); 0: whole images

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if not 0.0 <= self.mu <= 1.0:
            raise ConfigError(f"{path}.mu: must be in [0, 1], got {self.mu}")
        if self.train_crop < 0 or self.train_crop % STRIDE:
            raise ConfigError(f"{path}.train_crop: must be 0 or a positive multiple of {STRIDE}, got {self.train_crop}")
        if len(self.widths) != 4:
            raise ConfigError(f"{path}.widths: need the 4 conv widths of Table 1, got {list(self.widths)}")


@dataclass(eq=False)
class SDParts:
    """What a run is built from."""

    backbone: nn.Module
    backbone_info: dict[str, Any]
    preprocess: PreprocessConfig
    model: SDModelConfig
    mu: float
    train_crop: int


def build_parts(settings: TrainSettings, has_xyz: bool, load_weights: bool = True) -> SDParts:
    """Doctor backbone (weights loaded unless ``load_weights`` is False), preprocessing and model config."""
    sizes = model_sizes(settings, SDSizes)
    backbone, info = frozen_backbone(settings, load_weights)
    what = f"{settings.backbone.name} block {settings.backbone.block}"
    if backbone.stride != STRIDE:
        raise ConfigError(
            f"backbone.block: the doctor ({what}) has stride {backbone.stride}; stereotype_deepening needs "
            f"stride {STRIDE} to match the patch network's three pools (efficientnet_lite0: blocks 3-4)"
        )
    grid = check_grid(settings.preprocess.image_size, STRIDE, what)
    preprocess = preprocess_config(settings, has_xyz, backbone.mean, backbone.std, settings.preprocess.image_size)
    model = SDModelConfig(
        mode=settings.mode,
        grid=grid,
        doctor_channels=backbone.channels,
        masters=sizes.masters,
        bachelors_per_master=sizes.bachelors_per_master,
        widths=sizes.widths,
        head_width=sizes.head_width,
        leaky_slope=sizes.leaky_slope,
        depth_target_cells=sizes.depth_target_cells,
        aggregation=resolve_aggregation(settings.aggregation, preprocess),
    )
    return SDParts(backbone, info, preprocess, model, sizes.mu, sizes.train_crop)
