"""The frozen source S tapped at several critical points (CPs): one pass, a list of activations.

The backbone registry returns one block; MKD needs the activations at several depths. The
registered backbone truncated after the deepest tap (``frozen_backbone`` with ``block`` = the last
tap) already holds every layer needed, so :class:`TapSource` only walks it and keeps the outputs
after the tapped layers, reusing the backbone's own modules:

* ``efficientnet_lite0`` / ``efficientnet_b5``: taps are MBConv block indices (Lite0: block 2 =
  24 ch at stride 4, 4 = 40 ch at stride 8, 10 = 112 ch at stride 16);
* ``vgg16``: taps are ``features`` indices (the paper's pools after blocks 2-5: 9, 16, 23, 30).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edge_ad.errors import ConfigError
from trainer.backbones.efficientnet import EfficientNetFeatures
from trainer.backbones.vgg import VGG16Features


class TapSource(nn.Module):
    """``forward(image) -> [activation at each tap]``; frozen, eval mode; ``channels``/``strides`` per tap."""

    def __init__(self, backbone: nn.Module, taps: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(backbone, (EfficientNetFeatures, VGG16Features)):
            raise ConfigError(
                f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} has no multi-tap mode "
                "(mkd sources: efficientnet_lite0, efficientnet_b5, vgg16)"
            )
        taps = tuple(int(t) for t in taps)
        if not taps or list(taps) != sorted(set(taps)):
            raise ConfigError(f"model.source_taps must be strictly increasing, got {list(taps)}")
        last = (
            len(backbone._blocks) - 1
            if isinstance(backbone, EfficientNetFeatures)
            else len(backbone.features) - 1
        )
        if taps[-1] != last:
            raise ConfigError(
                f"model.source_taps: the deepest tap ({taps[-1]}) must be backbone.block ({last}): "
                "the backbone is built only up to that block"
            )
        self.backbone = backbone
        self.taps = taps
        self.name = f"{backbone.name}@{','.join(map(str, taps))}"
        self.mean = backbone.mean
        self.std = backbone.std
        self.weights_sha256 = backbone.weights_sha256
        with torch.no_grad():
            side = 2 * backbone.stride
            probe = self.forward(torch.zeros(1, 3, side, side))
        self.channels = tuple(int(t.shape[1]) for t in probe)
        self.strides = tuple(side // int(t.shape[-1]) for t in probe)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Activations at every tap, shallowest first."""
        net = self.backbone
        if isinstance(net, VGG16Features):
            return net.forward_taps(image, self.taps)
        wanted = set(self.taps)
        outputs = []
        x = net._act(net._bn0(net._conv_stem(image)))
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in wanted:
                outputs.append(x)
        return outputs

    def train(self, mode: bool = True) -> TapSource:
        """Stay in eval mode: the source is frozen (its BatchNorm statistics are ImageNet's)."""
        return super().train(False)
