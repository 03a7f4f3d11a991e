"""The cloner C: a small VGG-like network without biases that imitates the source at its CPs.

Stages of bias-free 3x3 convolutions, each stage ending in a 2x2 max-pool. Every conv is followed
by BatchNorm + ReLU except the last conv of a stage (the one right before the pool), which has
ReLU only (official code). The paper drops every bias so that C cannot output an input-independent
constant that matches near-identical normal activations (Deep-SVDD's argument); BatchNorm's affine
shift is a bias too, so it is kept only inside stages, never on the activations C is compared on.

The CP after stage k has stride 2**(k+1); the CPs are the pools whose stride equals a source
tap's stride, and the last conv of such a stage must have the tap's channel count.

``cp_activation`` "linear" drops the ReLU at CP convs: EfficientNet block outputs are linear
bottlenecks (signed), which a ReLU output could never match; VGG's pools follow a ReLU ("relu").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from edge_ad.errors import ConfigError


class Cloner(nn.Module):
    """``forward(image) -> [activation at each CP]`` (those named by ``cp_strides``)."""

    def __init__(
        self,
        in_channels: int,
        stages: Sequence[Sequence[int]],
        cp_strides: Sequence[int],
        cp_channels: Sequence[int],
        cp_activation: str = "relu",
    ) -> None:
        super().__init__()
        if cp_activation not in ("relu", "linear"):
            raise ConfigError(f"model.cp_activation must be relu or linear, got {cp_activation!r}")
        self.cp_stages = cloner_cp_stages(stages, cp_strides, cp_channels)
        self.stages = nn.ModuleList()
        channels = in_channels
        for index, widths in enumerate(stages):
            layers: list[nn.Module] = []
            for position, width in enumerate(widths):
                layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False))
                channels = width
                if position < len(widths) - 1:
                    layers += [nn.BatchNorm2d(width), nn.ReLU()]
                elif cp_activation == "relu" or index not in self.cp_stages:
                    layers.append(nn.ReLU())
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self.stages.append(nn.Sequential(*layers))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)  # official code

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Activations after the CP stages, shallowest first (stages past the last CP are not run)."""
        outputs = []
        x = image
        for index in range(self.cp_stages[-1] + 1):
            x = self.stages[index](x)
            if index in self.cp_stages:
                outputs.append(x)
        return outputs


def cloner_cp_stages(
    stages: Sequence[Sequence[int]], cp_strides: Sequence[int], cp_channels: Sequence[int]
) -> tuple[int, ...]:
    """Index of the stage whose pool is each CP; ConfigError when strides or channels do not line up."""
    if not stages or any(not widths or min(widths) < 1 for widths in stages):
        raise ConfigError(f"model.cloner_stages: need non-empty stages of positive widths, got {stages}")
    found = []
    for stride, channels in zip(cp_strides, cp_channels, strict=True):
        index = int(round(math.log2(stride))) - 1
        if 2 ** (index + 1) != stride or not 0 <= index < len(stages):
            raise ConfigError(
                f"model.cloner_stages: a source tap has stride {stride}, but the cloner's pools give "
                f"strides {[2 ** (k + 1) for k in range(len(stages))]}"
            )
        if stages[index][-1] != channels:
            raise ConfigError(
                f"model.cloner_stages[{index}]: the last conv before the CP at stride {stride} must have "
                f"{channels} channels (the source's), got {stages[index][-1]}"
            )
        found.append(index)
    return tuple(found)
