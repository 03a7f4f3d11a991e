"""Resolved settings -> the REB pieces: sizes, backbone trunks, preprocessing and the grid.

The backbone in the preset is cut after the DEEP tap (``backbone.block``); ``model.shallow_block``
names the shallow one, whose stride sets the grid. Fine-tuning may put its proxy head on a later
block (``model.proxy_block``, REB's layer4): that trunk is built for training only, and the
detector keeps the blocks up to the deep tap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from edge_ad.errors import ConfigError, WeightsError
from edge_ad.preprocess import PreprocessConfig
from trainer.backbones import build_backbone
from trainer.config import TrainSettings
from trainer.family_setup import frozen_backbone, model_sizes, preprocess_config
from trainer.reb.finetune import FinetuneSettings
from trainer.reb.taps import tap_shapes


@dataclass(frozen=True)
class REBSizes:
    """The preset's ``model`` section for REB (fine-tuning steps, lr, batch: the preset's ``train``)."""

    shallow_block: int = 4
    proxy_block: int | None = None  # None: the proxy head sits on the deep tap
    tap_dim: int = 128
    feature_dim: int = 128
    depth_unshuffle: int = 4
    depth_weight: float = 0.5  # share of the RGB features' variance the depth descriptor gets (rgbd)
    coreset_fraction: float = 0.1
    coreset_max: int | None = None
    k: int = 5
    ld_lambda: float = 1.0
    finetune: bool = True  # False: REB's "LDKNN" ablation (ImageNet weights + LDKNN)
    finetune_from_block: int = 0
    finetune_momentum: float = 0.9
    finetune_accumulate: int = 1  # micro-batches per update (train.batch_size is the whole update)

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if not 0.0 < self.coreset_fraction <= 1.0:
            raise ConfigError(f"{path}.coreset_fraction: must be in (0, 1], got {self.coreset_fraction}")
        if self.coreset_max is not None and self.coreset_max < self.k + 1:
            raise ConfigError(f"{path}.coreset_max: must be > k ({self.k}), got {self.coreset_max}")
        if self.k < 1 or self.ld_lambda < 0 or self.depth_weight < 0:
            raise ConfigError(f"{path}: need k >= 1, ld_lambda >= 0 and depth_weight >= 0")
        for name in ("tap_dim", "feature_dim", "depth_unshuffle"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.finetune_accumulate < 1:
            raise ConfigError(f"{path}.finetune_accumulate: must be >= 1, got {self.finetune_accumulate}")
        if not 0.0 <= self.finetune_momentum < 1.0:
            raise ConfigError(f"{path}.finetune_momentum: must be in [0, 1), got {self.finetune_momentum}")


@dataclass(eq=False)
class REBParts:
    """What a run is built from."""

    sizes: REBSizes
    backbone: nn.Module
    backbone_info: dict[str, Any]
    preprocess: PreprocessConfig
    taps: tuple[int, int]
    tap_channels: tuple[int, int]
    grid: int


def build_parts(settings: TrainSettings, has_xyz: bool) -> REBParts:
    """Backbone with its base weights (cut after the deep tap), taps, grid and preprocessing."""
    if settings.mode not in ("rgb", "rgbd"):
        raise ConfigError(f"mode {settings.mode!r}: REB supports rgb and rgbd (its features come from the image)")
    sizes = model_sizes(settings, REBSizes)
    backbone, info = frozen_backbone(settings)
    deep = settings.backbone.block
    if deep is None:
        raise ConfigError(f"preset {settings.preset}: backbone.block (the deep tap) must be set for REB")
    if not sizes.shallow_block < deep:
        raise ConfigError(f"preset {settings.preset}: model.shallow_block {sizes.shallow_block} must be < backbone.block {deep}")
    if sizes.proxy_block is not None and sizes.proxy_block < deep:
        raise ConfigError(f"preset {settings.preset}: model.proxy_block must be >= backbone.block {deep}")
    taps = (sizes.shallow_block, deep)
    (c1, s1), (c2, _) = tap_shapes(backbone, settings.preprocess.image_size, taps)
    grid = settings.preprocess.image_size // s1
    preprocess = preprocess_config(settings, has_xyz, backbone.mean, backbone.std, grid * sizes.depth_unshuffle)
    info = {**info, "taps": list(taps), "finetuned": sizes.finetune}
    return REBParts(sizes, backbone, info, preprocess, taps, (c1, c2), grid)


def finetune_trunk(settings: TrainSettings, sizes: REBSizes) -> nn.Module:
    """The trunk the proxy head trains on: base weights, cut after ``proxy_block`` (or the deep tap)."""
    weights = Path(settings.backbone.weights).expanduser() if settings.backbone.weights else None
    block = sizes.proxy_block if sizes.proxy_block is not None else settings.backbone.block
    return build_backbone(settings.backbone.name, block, weights)


def finetune_settings(settings: TrainSettings, sizes: REBSizes) -> FinetuneSettings:
    """Fine-tuning updates, batch, lr and weight decay from ``train``; momentum and blocks from ``model``."""
    return FinetuneSettings(
        steps=settings.train.epochs,
        batch_size=settings.train.batch_size,
        lr=settings.train.lr,
        momentum=sizes.finetune_momentum,
        weight_decay=settings.train.weight_decay,
        from_block=sizes.finetune_from_block,
        accumulate=sizes.finetune_accumulate,
    )


def copy_trunk_weights(source: nn.Module, target: nn.Module) -> None:
    """Load the fine-tuned (possibly longer) trunk's weights into the detector's shorter one."""
    wanted = target.state_dict()
    state = source.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise WeightsError(f"fine-tuned trunk lacks {len(missing)} keys of the detector's backbone: {missing[:4]}")
    target.load_state_dict({k: state[k] for k in wanted}, strict=True)


def bare_backbone(info: dict[str, Any]) -> nn.Module:
    """The architecture of a saved run's backbone (its weights come from the checkpoint)."""
    return build_backbone(info["name"], info.get("block"), None, load_weights=False)
