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
from edge_ad.geometry import ForegroundConfig
from edge_ad.preprocess import PreprocessConfig
from edge_ad.typed_data import load_dataclass
from trainer.ast.model import ASTModelConfig
from trainer.ast.student import DEFAULT_LEAKY_SLOPE
from trainer.backbones import build_backbone
from trainer.config import TrainSettings

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
    sizes = load_dataclass(
        ASTSizes, settings.model, error=ConfigError, path=f"preset {settings.preset}: model"
    )
    uses_rgb = settings.mode in ("rgb", "rgbd")
    weights = Path(settings.backbone.weights).expanduser() if settings.backbone.weights else None
    # Depth mode needs only the backbone's geometry (the grid), never its weights.
    backbone = build_backbone(
        settings.backbone.name, settings.backbone.block, weights, load_weights and uses_rgb
    )
    image_size = settings.preprocess.image_size
    if image_size % backbone.stride:
        raise ConfigError(
            f"preprocess.image_size {image_size} is not a multiple of the backbone stride {backbone.stride} "
            f"({settings.backbone.name} block {settings.backbone.block})"
        )
    grid = image_size // backbone.stride
    fg = settings.preprocess.foreground
    preprocess = PreprocessConfig(
        image_size=image_size,
        mean=settings.preprocess.mean or backbone.mean,
        std=settings.preprocess.std or backbone.std,
        mode=settings.mode,
        depth_size=grid * DEPTH_UNSHUFFLE,
        mask_dilate_px=settings.preprocess.mask_dilate_px,
        foreground=ForegroundConfig.from_dict(fg, path="preprocess.foreground")
        if (has_xyz and fg is not None)
        else None,
        depth_unit_scale=settings.preprocess.depth_unit_scale,
        **_depth_options(settings.preprocess),
    )
    aggregation = settings.aggregation
    if aggregation == "auto":  # AST: max with a foreground mask, mean without
        aggregation = "max" if preprocess.foreground is not None else "mean"
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
        aggregation=aggregation,
        flow_seed=settings.seed,
    )
    info = {
        "name": settings.backbone.name,
        "block": settings.backbone.block,
        "weights": str(weights) if weights else None,
        "weights_sha256": getattr(backbone, "weights_sha256", None) if uses_rgb else None,
        "channels": backbone.channels,
        "stride": backbone.stride,
    }
    return ASTParts(backbone if uses_rgb else None, info, preprocess, model)


# How depth is measured: passed from the preset's ``preprocess`` section to PreprocessConfig as they are.
_DEPTH_FIELDS = ("depth_reference", "depth_median_px", "depth_clip_m")


def _depth_options(preprocess: Any) -> dict[str, Any]:
    return {name: getattr(preprocess, name) for name in _DEPTH_FIELDS}


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
