"""VGG-16 (the MKD paper's source network) with torchvision's state-dict names, from a user-given file.

No VGG weights ship with edge-ad: the file is torchvision's ImageNet release ``vgg16-397923af.pth``
(keys ``features.N.weight/bias`` and ``classifier.N.weight/bias``), given with
``--backbone-weights`` or found in ``$EDGE_AD_WEIGHTS_DIR``. The layers keep torchvision's
``features`` indices so that file loads with strict key checks.

Single-tap mode (the backbone registry): features after ``features[block]`` (default 30, the last
max-pool). Multi-tap mode (:meth:`VGG16Features.forward_taps`): the outputs after several indices in
one pass, e.g. MKD's critical points, the pools after blocks 2-5 (indices 9, 16, 23, 30).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edge_ad.errors import ConfigError
from trainer.backbones import register_backbone
from trainer.backbones.weights import load_filtered_state_dict, resolve_user_weights

VGG16_FILE = "vgg16-397923af.pth"

# torchvision's configuration "D": channels of each 3x3 conv, "M" a 2x2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
VGG16_POOLS = (4, 9, 16, 23, 30)  # features indices of the five max-pools
VGG16_DEFAULT_BLOCK = 30
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layers(last_index: int) -> tuple[nn.Sequential, list[tuple[int, int]]]:
    """``features[0..last_index]`` and the (channels, stride) after every index."""
    layers: list[nn.Module] = []
    geometry: list[tuple[int, int]] = []
    channels, stride = 3, 1
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            stride *= 2
            geometry.append((channels, stride))
        else:
            layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
            channels = int(item)
            geometry.append((channels, stride))
            layers.append(nn.ReLU(inplace=False))
            geometry.append((channels, stride))
        if len(layers) > last_index:
            break
    return nn.Sequential(*layers[: last_index + 1]), geometry[: last_index + 1]


class VGG16Features(nn.Module):
    """Frozen, eval-mode VGG-16 feature stack truncated after ``features[last_index]``."""

    def __init__(self, last_index: int) -> None:
        super().__init__()
        count = sum(2 if item != "M" else 1 for item in VGG16_CONFIG)
        if not 0 <= last_index < count:
            raise ConfigError(f"backbone.block: vgg16 has features indices 0..{count - 1}, got {last_index}")
        self.features, self.geometry = _layers(last_index)
        self.name = "vgg16"
        self.channels, self.stride = self.geometry[last_index]
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.weights_sha256: str | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Features after the last kept index (N, channels, S/stride, S/stride)."""
        return self.features(image)

    def forward_taps(self, image: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Outputs after each of ``indices`` (ascending, all kept), in one pass."""
        wanted = set(indices)
        taps = []
        x = image
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                taps.append(x)
        return taps

    def freeze(self) -> VGG16Features:
        """No gradients, eval mode."""
        for param in self.parameters():
            param.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        """Stay in eval mode like every frozen backbone (a parent's .train() must not change it)."""
        return super().train(False)


def full_model_keys() -> set[str]:
    """Keys of torchvision's complete VGG-16 (features + classifier), for the strict file check."""
    keys = set()
    index = 0
    for item in VGG16_CONFIG:
        if item != "M":
            keys |= {f"features.{index}.weight", f"features.{index}.bias"}
            index += 2
        else:
            index += 1
    for layer in (0, 3, 6):
        keys |= {f"classifier.{layer}.weight", f"classifier.{layer}.bias"}
    return keys


@register_backbone("vgg16")
def vgg16(
    block_index: int | None = None, weights: Path | None = None, load_weights: bool = True
) -> VGG16Features:
    """VGG-16 with torchvision ImageNet weights from a user-given file (``vgg16-397923af.pth``)."""
    model = VGG16Features(VGG16_DEFAULT_BLOCK if block_index is None else block_index)
    if load_weights:
        path = resolve_user_weights(weights, VGG16_FILE, "vgg16")
        model.weights_sha256 = load_filtered_state_dict(model, path, full_model_keys(), "vgg16")
    return model.freeze()
