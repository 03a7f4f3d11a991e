"""Resolved settings -> the AST pieces: backbone, PreprocessConfig and ASTModelConfig.

The feature grid follows from the backbone (image_size / stride); the depth input is the grid
times the pixel-unshuffle factor (8, as in AST), so depth and features always line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from edge_ad.errors import ConfigError, WeightsError
from edge_ad.preprocess import PreprocessConfig
from trainer.ast.model import ASTModelConfig
from trainer.ast.student import DEFAULT_LEAKY_SLOPE
from trainer.backbones import build_backbone
from trainer.config import TrainSettings
from trainer.family_setup import (
    check_grid,
    frozen_backbone,
    model_sizes,
    preprocess_config,
    resolve_aggregation,
)

DEPTH_UNSHUFFLE = 8


@dataclass(frozen=True)
class ASTSizes:
    """The preset's ``model`` section for the AST family."""

    pos_channels: int = 32
    teacher_hidden: int = 64
    kernel_sizes: tuple[int, ...] = (3, 3, 3, 5)
    clamp_alpha: float = 1.9
    student_width: int = 1024
    student_blocks: int = 4
    leaky_slope: float = DEFAULT_LEAKY_SLOPE

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"{path}.kernel_sizes: need odd sizes >= 1, got {list(self.kernel_sizes)}")
        if self.clamp_alpha <= 0:
            raise ConfigError(f"{path}.clamp_alpha: must be > 0, got {self.clamp_alpha}")
        if self.student_blocks < 0:
            raise ConfigError(f"{path}.student_blocks: must be >= 0, got {self.student_blocks}")


@dataclass(eq=False)
class ASTParts:
    """What a run is built from; ``backbone`` is None in depth mode."""

    backbone: nn.Module | None
    backbone_info: dict[str, Any]
    preprocess: PreprocessConfig
    model: ASTModelConfig


def build_parts(settings: TrainSettings, has_xyz: bool, load_weights: bool = True) -> ASTParts:
    """Backbone (weights loaded unless ``load_weights`` is False), preprocessing and model config."""
    sizes = model_sizes(settings, ASTSizes)
    uses_rgb = settings.mode in ("rgb", "rgbd")
    # Depth mode needs only the backbone's geometry (the grid), never its weights.
    backbone, info = frozen_backbone(settings, load_weights and uses_rgb)
    grid = check_grid(
        settings.preprocess.image_size, backbone.stride, f"{settings.backbone.name} block {settings.backbone.block}"
    )
    preprocess = preprocess_config(settings, has_xyz, backbone.mean, backbone.std, grid * DEPTH_UNSHUFFLE)
    model = ASTModelConfig(
        mode=settings.mode,
        grid=grid,
        rgb_channels=backbone.channels if uses_rgb else 0,
        depth_unshuffle=DEPTH_UNSHUFFLE,
        pos_channels=sizes.pos_channels,
        teacher_hidden=sizes.teacher_hidden,
        kernel_sizes=sizes.kernel_sizes,
        clamp_alpha=sizes.clamp_alpha,
        student_width=sizes.student_width,
        student_blocks=sizes.student_blocks,
        leaky_slope=sizes.leaky_slope,
        aggregation=resolve_aggregation(settings.aggregation, preprocess),
        flow_seed=settings.seed,
    )
    return ASTParts(backbone if uses_rgb else None, info, preprocess, model)


def rebuild_backbone(info: dict[str, Any]) -> nn.Module:
    """The frozen backbone of a saved run, checking that its weights are the ones it trained with."""
    weights = Path(info["weights"]) if info.get("weights") else None
    backbone = build_backbone(info["name"], info.get("block"), weights)
    expected = info.get("weights_sha256")
    if expected and backbone.weights_sha256 != expected:
        raise WeightsError(
            f"backbone {info['name']}: the weights found now (sha256 {backbone.weights_sha256}) are not the ones "
            f"this run was trained with (sha256 {expected})"
        )
    return backbone
