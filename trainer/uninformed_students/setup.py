"""Resolved settings -> the Uninformed Students pieces: target backbone, PreprocessConfig, model config.

The depth input has the image's size (``depth_size == image_size``) so that RGB and depth stack
into one 4-channel patch. The pretrained backbone is needed only where its features are a
distillation target (modes rgb and rgbd); in depth mode nothing is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from edge_ad.errors import ConfigError
from edge_ad.preprocess import PreprocessConfig
from trainer.config import TrainSettings
from trainer.family_setup import frozen_backbone, model_sizes, preprocess_config, resolve_aggregation
from trainer.uninformed_students.model import USModelConfig
from trainer.uninformed_students.patch_net import DEFAULT_LEAKY_SLOPE, geometry


@dataclass(frozen=True)
class USSizes:
    """The preset's ``model`` section for the uninformed_students family."""

    patch_sizes: tuple[int, ...] = (33,)
    width: int = 128
    descriptor_dim: int = 128
    students: int = 3
    leaky_slope: float = DEFAULT_LEAKY_SLOPE
    # Teacher loss weights (supplement's reference setting: L_k + L_c, both 1).
    distill_weight: float = 1.0
    compact_weight: float = 1.0
    # Depth reconstruction target of the teacher (modes depth, rgbd): the patch's depth averaged
    # over depth_blocks x depth_blocks blocks (see trainer.uninformed_students.targets).
    depth_blocks: int = 4
    # Training crops (pixels at image_size, centred on a random foreground cell); 0 = whole images.
    crop_size: int = 0

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        for name in ("distill_weight", "compact_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{path}.{name}: must be >= 0, got {getattr(self, name)}")
        if self.depth_blocks < 1:
            raise ConfigError(f"{path}.depth_blocks: must be >= 1, got {self.depth_blocks}")
        if self.crop_size < 0:
            raise ConfigError(f"{path}.crop_size: must be >= 0 (0: whole images), got {self.crop_size}")
        for p in self.patch_sizes:
            geometry(p)  # ConfigError for a patch size the paper does not define


@dataclass(eq=False)
class USParts:
    """What a run is built from; ``backbone`` is None in depth mode."""

    backbone: nn.Module | None
    backbone_info: dict[str, Any]
    preprocess: PreprocessConfig
    model: USModelConfig
    sizes: USSizes


def build_parts(settings: TrainSettings, has_xyz: bool) -> USParts:
    """Target backbone (rgb/rgbd only), preprocessing, model config and the preset's sizes."""
    sizes = model_sizes(settings, USSizes)
    uses_rgb = settings.mode in ("rgb", "rgbd")
    uses_depth = settings.mode in ("depth", "rgbd")
    backbone, info = frozen_backbone(settings, load_weights=uses_rgb)
    image_size = settings.preprocess.image_size
    if sizes.crop_size:
        largest = max(geometry(p)[1] for p in sizes.patch_sizes)
        if sizes.crop_size % largest or sizes.crop_size > image_size:
            raise ConfigError(
                f"preset {settings.preset}: model.crop_size {sizes.crop_size} must be a multiple of the largest "
                f"stride {largest} and at most preprocess.image_size {image_size}"
            )
    preprocess = preprocess_config(settings, has_xyz, backbone.mean, backbone.std, image_size)
    target_channels = (backbone.channels if uses_rgb else 0) + (sizes.depth_blocks**2 if uses_depth else 0)
    model = USModelConfig(
        mode=settings.mode,
        image_size=image_size,
        patch_sizes=sizes.patch_sizes,
        target_channels=target_channels,
        width=sizes.width,
        descriptor_dim=sizes.descriptor_dim,
        students=sizes.students,
        leaky_slope=sizes.leaky_slope,
        aggregation=resolve_aggregation(settings.aggregation, preprocess),
    )
    return USParts(backbone if uses_rgb else None, info, preprocess, model, sizes)
