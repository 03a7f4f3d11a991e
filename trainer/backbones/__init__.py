"""Registry of frozen feature extractors (backbones) by name.

A backbone factory takes ``(block_index, weights, load_weights)`` and returns a :class:`FeatureBackbone`: a frozen
``nn.Module`` in eval mode that maps a normalised image (N, 3, S, S) to features (N, C, S/stride,
S/stride) and declares ``name``, ``channels``, ``stride``, ``mean``/``std`` (the normalisation its
weights were trained with) and ``weights_sha256``. Families look backbones up by the name written
in the preset, so adding one is a decorated function in a new module imported below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from edge_ad.registry import Registry


@runtime_checkable
class FeatureBackbone(Protocol):
    """What every registered backbone exposes besides ``forward(image) -> features``."""

    name: str
    channels: int
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str | None

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


BackboneFactory = Callable[[int | None, Path | None, bool], torch.nn.Module]

_REGISTRY: Registry[BackboneFactory] = Registry("backbone")


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding a backbone factory under ``name``; a second registration warns and wins."""
    return _REGISTRY.register(name)


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return _REGISTRY.names()


def build_backbone(
    name: str, block_index: int | None = None, weights: Path | None = None, load_weights: bool = True
) -> torch.nn.Module:
    """Build the frozen backbone ``name`` truncated after ``block_index`` (None: its default block).

    ``weights`` is a user-given weights file (needed by backbones without packaged weights);
    ``load_weights`` False gives the bare architecture (for its channels and stride only).
    Raises ConfigError for an unknown name or block, WeightsError for missing or mismatched weights.
    """
    return _REGISTRY.lookup(name, "backbone: unknown name")(block_index, weights, load_weights)


# Importing the implementation modules registers their backbones.
from trainer.backbones import efficientnet as _efficientnet  # noqa: E402,F401
from trainer.backbones import resnet as _resnet  # noqa: E402,F401
from trainer.backbones import vgg as _vgg  # noqa: E402,F401
