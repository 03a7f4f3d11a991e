"""ResNet-18 (He et al. 2016) with torchvision's state-dict names, for the REB paper preset.

torchvision is not installed, so the network is written out here with exactly torchvision's
module names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``fc``) and loads torchvision's ImageNet
file (``resnet18-f37072fd.pth``) from a user-given path with strict key checks. ``block`` is the
last residual stage kept (1..4: strides 4, 8, 16, 32; channels 64, 128, 256, 512); later stages
are never built. :meth:`ResNetFeatures.forward_taps` returns several stages in one pass (REB's
layer2 + layer3 neck).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge_ad.errors import ConfigError
from trainer.backbones import register_backbone
from trainer.backbones.weights import load_filtered_state_dict, resolve_user_weights

RESNET18_FILE = "resnet18-f37072fd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_CHANNELS = (64, 128, 256, 512)
RESNET18_DEFAULT_BLOCK = 3


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a skip (1x1 stride-2 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block."""
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + skip)


class ResNetFeatures(nn.Module):
    """ResNet-18 truncated after stage ``last_stage`` (1..4); frozen and in eval mode once loaded."""

    def __init__(self, last_stage: int, with_head: bool = False) -> None:
        super().__init__()
        if not 1 <= last_stage <= 4:
            raise ConfigError(f"backbone.block: resnet18 has stages 1..4, got {last_stage}")
        self.name = "resnet18"
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.weights_sha256: str | None = None
        self.last_stage = last_stage
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for stage in range(1, last_stage + 1):
            out_ch = STAGE_CHANNELS[stage - 1]
            stride = 1 if stage == 1 else 2
            self.add_module(f"layer{stage}", nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
            in_ch = out_ch
        if with_head:  # only to enumerate the complete file's keys
            self.fc = nn.Linear(512, 1000)
        self.channels = STAGE_CHANNELS[last_stage - 1]
        self.stride = 2 ** (last_stage + 1)

    def forward_taps(self, image: torch.Tensor, stages: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of ``stages`` (each in 1..last_stage), in the order given, in one pass."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        outputs: dict[int, torch.Tensor] = {}
        for stage in range(1, max(stages) + 1):
            x = getattr(self, f"layer{stage}")(x)
            outputs[stage] = x
        return [outputs[stage] for stage in stages]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Features of the last kept stage."""
        return self.forward_taps(image, (self.last_stage,))[0]

    def freeze(self) -> ResNetFeatures:
        """No gradients, eval-mode BatchNorm."""
        for param in self.parameters():
            param.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> ResNetFeatures:
        """Stay in eval mode: BatchNorm keeps ImageNet's statistics (fine-tuning updates weights only)."""
        return super().train(False)


def resnet18_keys() -> set[str]:
    """State-dict keys of the complete torchvision ResNet-18 (built on the meta device)."""
    with torch.device("meta"):
        return set(ResNetFeatures(4, with_head=True).state_dict().keys())


@register_backbone("resnet18")
def resnet18(block_index: int | None = None, weights: Path | None = None, load_weights: bool = True) -> ResNetFeatures:
    """ResNet-18 with torchvision ImageNet weights from a user-given file (REB's Res18)."""
    model = ResNetFeatures(RESNET18_DEFAULT_BLOCK if block_index is None else block_index)
    if load_weights:
        path = resolve_user_weights(weights, RESNET18_FILE, "resnet18")
        model.weights_sha256 = load_filtered_state_dict(model, path, resnet18_keys(), "resnet18")
    return model.freeze()
