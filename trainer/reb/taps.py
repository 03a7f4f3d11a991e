"""Several feature maps of one backbone pass ("taps"), for the PatchCore-style neck of REB.

A backbone that has ``forward_taps(image, blocks)`` (our ResNet-18) is asked directly;
EfficientNet (whose module we share with AST and do not change) is walked block by block here.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_ad.errors import ConfigError
from trainer.backbones.efficientnet import EfficientNet


def tap_outputs(backbone: nn.Module, image: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
    """Feature maps after each of ``blocks`` (backbone block indices), in the order given."""
    forward_taps = getattr(backbone, "forward_taps", None)
    if callable(forward_taps):
        return forward_taps(image, blocks)
    if isinstance(backbone, EfficientNet):
        x = backbone._act(backbone._bn0(backbone._conv_stem(image)))
        outputs: dict[int, torch.Tensor] = {}
        for index, block in enumerate(backbone._blocks):
            x = block(x)
            outputs[index] = x
            if index == max(blocks):
                break
        missing = [b for b in blocks if b not in outputs]
        if missing:
            raise ConfigError(f"backbone has no block {missing[0]} (it keeps blocks 0..{len(backbone._blocks) - 1})")
        return [outputs[b] for b in blocks]
    raise ConfigError(f"backbone {type(backbone).__name__} cannot give several taps (REB needs two)")


@torch.no_grad()
def tap_shapes(backbone: nn.Module, image_size: int, blocks: tuple[int, ...]) -> list[tuple[int, int]]:
    """(channels, stride) of each tap, measured with one zero image of ``image_size``."""
    device = next(backbone.parameters()).device
    outputs = tap_outputs(backbone, torch.zeros(1, 3, image_size, image_size, device=device), blocks)
    shapes = []
    for block, out in zip(blocks, outputs, strict=True):
        if image_size % out.shape[-1]:
            raise ConfigError(
                f"preprocess.image_size {image_size} is not a multiple of the stride of backbone block {block}"
            )
        shapes.append((int(out.shape[1]), image_size // int(out.shape[-1])))
    return shapes
