"""Resolved settings -> the MKD pieces: the tapped source, PreprocessConfig and MKDModelConfig."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_ad.errors import ConfigError
from edge_ad.preprocess import PreprocessConfig
from trainer.ast.setup import rebuild_backbone
from trainer.config import TrainSettings
from trainer.family_setup import (
    check_grid,
    frozen_backbone,
    model_sizes,
    preprocess_config,
    resolve_aggregation,
)
from trainer.mkd.config import CODE_LAMBDA, MKDModelConfig, MKDSizes
from trainer.mkd.source import TapSource

# An ImageNet source cannot take depth, and a cloner given depth could only learn to ignore it.
RGB_ONLY = (
    "mkd distils an ImageNet RGB network, which cannot take depth; train mkd with --mode rgb "
    "(with point clouds, depth still finds the part: the foreground mask limits the score to it)"
)


@dataclass(eq=False)
class MKDParts:
    """What a run is built from; ``model.lam`` is a placeholder until training resolves the paper's rule."""

    source: TapSource
    backbone_info: dict[str, Any]
    preprocess: PreprocessConfig
    model: MKDModelConfig
    lam_from_data: bool


def build_parts(settings: TrainSettings, has_xyz: bool, load_weights: bool = True) -> MKDParts:
    """Tapped source (weights loaded unless ``load_weights`` is False), preprocessing and model config."""
    if settings.mode != "rgb":
        raise ConfigError(f"mode {settings.mode!r}: {RGB_ONLY}")
    sizes = model_sizes(settings, MKDSizes)
    backbone, info = frozen_backbone(settings, load_weights)
    source = TapSource(backbone, sizes.source_taps)
    info = {
        **info,
        "taps": list(source.taps),
        "tap_channels": list(source.channels),
        "tap_strides": list(source.strides),
    }
    points = sizes.score_points or tuple(range(len(source.taps)))
    finest = min(source.strides[i] for i in points)
    size = settings.preprocess.image_size
    # Every CP grid must be whole; the map lives on the finest scoring one.
    check_grid(size, max(source.strides), f"{settings.backbone.name} taps {list(source.taps)}")
    grid = size // finest
    preprocess = preprocess_config(settings, has_xyz, source.mean, source.std, size)
    if sizes.lam is not None:
        lam, rule = sizes.lam, "preset"
    elif sizes.loss == "code":
        lam, rule = CODE_LAMBDA, "code-default"
    else:
        lam, rule = 1.0, "initial-ratio"
    model = MKDModelConfig(
        mode=settings.mode,
        image_size=size,
        grid=grid,
        mask_pool=finest,
        source_taps=source.taps,
        source_channels=source.channels,
        source_strides=source.strides,
        cloner_stages=sizes.cloner_stages,
        cp_activation=sizes.cp_activation,
        score_points=tuple(sorted(points)),
        loss=sizes.loss,
        lam=lam,
        lam_rule=rule,
        gradient_sigma=sizes.gradient_sigma,
        aggregation=resolve_aggregation(settings.aggregation, preprocess),
    )
    return MKDParts(source, info, preprocess, model, rule == "initial-ratio")


def rebuild_source(info: dict[str, Any]) -> TapSource:
    """The tapped source of a saved run (weights checked against the recorded SHA-256, as AST does)."""
    return TapSource(rebuild_backbone(info), info["taps"])
