"""Patch networks of Uninformed Students: valid convolutions with a p x p receptive field, run densely.

A network maps a p x p patch to one descriptor (1 x 1 output). Run on a whole image it yields a
descriptor map: with max-pools the map is strided (stride 4 for p = 33, 8 for p = 65), which is
our anomaly-map grid. Padding each side by ``(R - stride) / 2`` (R the effective receptive
field) makes the map exactly ``image / stride`` cells, cell j centred on the image block it
covers, so a bilinear upsampling lines up with the image (the paper's "fast dense" unwarping
gives stride 1; we keep the strided grid: cheaper and exportable).

Architectures (supplement Tables 1a/1b; p = 65 from the main paper's Table 4, which is not in
the seeds and is reconstructed: conv 5, pool, conv 5, pool, conv 5, pool, conv 4, conv 1):

* p = 33: Conv1 printed 3x3 but 33 -> 29 needs 5x5: we use 5x5. Its first pool floors 29 -> 14,
  so the effective receptive field is 32 (computed, not assumed, by :func:`geometry`).
* p = 17: Conv1 printed 5x5 but 17 -> 12 needs 6x6: we use 6x6 (receptive field exactly 17).

Widths are ``width`` times the printed multiple of 128 (paper: width 128), the last conv gives
the ``descriptor_dim`` descriptor (paper: 128). LeakyReLU (slope 5e-3) follows every conv except
the descriptor conv: students regress the teacher's *normalised* (signed) descriptor, which an
output activation with slope 5e-3 could not reach below zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_ad.errors import ConfigError

DEFAULT_LEAKY_SLOPE = 5e-3


@dataclass(frozen=True)
class Layer:
    """One layer: ``conv`` (kernel, output width = factor x width; factor 0 = the descriptor) or ``pool`` 2x2/2."""

    kind: str
    kernel: int = 2
    factor: int = 0


def _conv(kernel: int, factor: int = 0) -> Layer:
    return Layer("conv", kernel, factor)


POOL = Layer("pool", 2)

# Patch size -> layers, widths as multiples of 128 in the paper (factor 1 = 128, 2 = 256).
ARCHITECTURES: dict[int, tuple[Layer, ...]] = {
    17: (_conv(6, 1), _conv(5, 2), _conv(5, 2), _conv(4)),
    33: (_conv(5, 1), POOL, _conv(5, 2), POOL, _conv(2, 2), _conv(4)),
    65: (_conv(5, 1), POOL, _conv(5, 1), POOL, _conv(5, 1), POOL, _conv(4, 2), _conv(1)),
}


def architecture(patch_size: int) -> tuple[Layer, ...]:
    """The layers of the p = ``patch_size`` network; ConfigError for a size the paper does not define."""
    if patch_size not in ARCHITECTURES:
        known = ", ".join(str(p) for p in ARCHITECTURES)
        raise ConfigError(f"model.patch_sizes: {patch_size} is not one of the paper's patch sizes ({known})")
    return ARCHITECTURES[patch_size]


def geometry(patch_size: int) -> tuple[int, int]:
    """(effective receptive field R, output stride) of the p = ``patch_size`` network."""
    field, jump = 1, 1
    for layer in reversed(architecture(patch_size)):
        # Walking back from one output cell: a kxk conv widens the field by k - 1, a pool doubles it.
        field = field + layer.kernel - 1 if layer.kind == "conv" else field * 2
    for layer in architecture(patch_size):
        if layer.kind == "pool":
            jump *= 2
    return field, jump


def reflect_indices(size: int, pad: int) -> torch.Tensor:
    """Indices that reflect-pad a dimension of ``size`` by ``pad`` each side (as numpy/torch "reflect")."""
    if pad >= size:
        raise ConfigError(f"reflect padding of {pad} needs an input larger than {pad} pixels, got {size}")
    idx = torch.arange(-pad, size + pad)
    idx = idx.abs()
    return torch.where(idx >= size, 2 * (size - 1) - idx, idx)


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad the last two dimensions by ``pad``, as gathers (exports as ONNX Gather, which every
    TensorRT parses; Pad's reflect mode is not available on older TensorRT releases)."""
    if pad == 0:
        return x
    rows = reflect_indices(x.shape[-2], pad).to(x.device)
    cols = reflect_indices(x.shape[-1], pad).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


class PatchNet(nn.Module):
    """Descriptor network of one patch size: ``forward`` on padded input, :meth:`dense` on an image."""

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        width: int,
        descriptor_dim: int,
        leaky_slope: float = DEFAULT_LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.receptive_field, self.stride = geometry(patch_size)
        self.pad = (self.receptive_field - self.stride) // 2
        layers: list[nn.Module] = []
        channels = in_channels
        spec = architecture(patch_size)
        for i, layer in enumerate(spec):
            if layer.kind == "pool":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = layer.factor * width if layer.factor else descriptor_dim
            conv = nn.Conv2d(channels, out, layer.kernel)
            last = i == len(spec) - 1
            # He initialisation for the activation that follows: with PyTorch's default the teacher
            # sat on its "predict the mean" plateau for the first epochs (half of a short run).
            nn.init.kaiming_normal_(
                conv.weight, a=leaky_slope, nonlinearity="linear" if last else "leaky_relu"
            )
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            if not last:  # the descriptor conv stays linear (see the module docstring)
                layers.append(nn.LeakyReLU(leaky_slope))
            channels = out
        self.layers = nn.Sequential(*layers)
        self.descriptor_dim = descriptor_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors of every p x p window of ``x`` on the stride lattice (valid convolutions)."""
        return self.layers(x)

    def dense(self, image: torch.Tensor) -> torch.Tensor:
        """Descriptor map (N, d, S/stride, S/stride) of an unpadded image, aligned to its pixel blocks."""
        return self.layers(reflect_pad(image, self.pad))


class Teacher(nn.Module):
    """A patch network plus the 1x1 "decode" to the distillation target's channels (training only)."""

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        width: int,
        descriptor_dim: int,
        target_channels: int,
        leaky_slope: float = DEFAULT_LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self.net = PatchNet(in_channels, patch_size, width, descriptor_dim, leaky_slope)
        self.decode = nn.Conv2d(descriptor_dim, target_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptors, decoded descriptors) of padded input ``x``."""
        descriptor = self.net(x)
        return descriptor, self.decode(descriptor)
