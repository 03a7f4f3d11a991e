"""Pieces every model family builds the same way from resolved settings.

The preprocessing config (the one path shared with the runtime), the image-score aggregation,
the frozen backbone with its run record, and the family's ``model`` section checked against a
dataclass. A family adds only what is its own (network sizes, grid, losses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from edge_ad.errors import ConfigError
from edge_ad.geometry import ForegroundConfig
from edge_ad.preprocess import PreprocessConfig
from edge_ad.typed_data import load_dataclass
from trainer.backbones import build_backbone
from trainer.config import TrainSettings

T = TypeVar("T")

# How depth is measured: passed from the preset's ``preprocess`` section to PreprocessConfig as they are.
_DEPTH_FIELDS = ("depth_reference", "depth_median_px", "depth_clip_m")


def model_sizes(settings: TrainSettings, cls: type[T]) -> T:
    """The preset's ``model`` section as the family's sizes dataclass (unknown keys fail with the path)."""
    return load_dataclass(cls, settings.model, error=ConfigError, path=f"preset {settings.preset}: model")


def frozen_backbone(settings: TrainSettings, load_weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The preset's backbone and the record a run keeps of it (``config.yaml: backbone``)."""
    weights = Path(settings.backbone.weights).expanduser() if settings.backbone.weights else None
    backbone = build_backbone(settings.backbone.name, settings.backbone.block, weights, load_weights)
    info = {
        "name": settings.backbone.name,
        "block": settings.backbone.block,
        "weights": str(weights) if weights else None,
        "weights_sha256": getattr(backbone, "weights_sha256", None) if load_weights else None,
        "channels": backbone.channels,
        "stride": backbone.stride,
    }
    return backbone, info


def preprocess_config(
    settings: TrainSettings,
    has_xyz: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    depth_size: int,
) -> PreprocessConfig:
    """The run's PreprocessConfig: the preset's fields, the backbone's mean/std unless the preset sets them.

    The foreground (belt plane) is used only when the data has point clouds, and how depth is
    measured only when the mode reads depth (an rgb run on data without xyz keeps the defaults).
    """
    pre = settings.preprocess
    depth_options = {name: getattr(pre, name) for name in _DEPTH_FIELDS} if settings.mode != "rgb" else {}
    return PreprocessConfig(
        image_size=pre.image_size,
        mean=pre.mean or mean,
        std=pre.std or std,
        mode=settings.mode,
        depth_size=depth_size,
        mask_dilate_px=pre.mask_dilate_px,
        foreground=ForegroundConfig.from_dict(pre.foreground, path="preprocess.foreground")
        if (has_xyz and pre.foreground is not None)
        else None,
        depth_unit_scale=pre.depth_unit_scale,
        **depth_options,
    )


def resolve_aggregation(aggregation: str, preprocess: PreprocessConfig) -> str:
    """"auto" becomes max with a foreground mask, mean without (AST's rule, used by every family)."""
    if aggregation == "auto":
        return "max" if preprocess.foreground is not None else "mean"
    return aggregation


def check_grid(image_size: int, stride: int, what: str) -> int:
    """The feature grid side (image_size / stride); ConfigError when the size is not a multiple."""
    if image_size % stride:
        raise ConfigError(f"preprocess.image_size {image_size} is not a multiple of the stride {stride} of {what}")
    return image_size // stride
