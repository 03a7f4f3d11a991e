"""The patch network of Table 1, run fully-convolutionally, k independent copies in one module.

Table 1 (64x64 patch): Conv 4x4 -> 64, pool 2, Conv 4x4 -> 32, pool 2, Conv 4x4 -> 16, pool 2,
Conv 4x4 -> 8, Conv 2x2 -> 4, Linear -> 1, Linear -> 512, LeakyReLU (slope 5e-3) after every conv.
Its receptive field is 61 px and it has three 2x2 max-pools, so run on a whole image it gives
one descriptor per 8x8 cell (stride 8), which is the doctor's grid (Lite0 block 4, stride 8).

Choices where the table cannot be right or is silent:

* The ``4 -> 1 -> 512`` tail is read as a typesetting error: a 1-wide layer would put every
  descriptor on one line (an affine image of a scalar), which cannot regress a many-dimensional
  teacher. The tail here is Conv 2x2 -> ``head_width`` (LeakyReLU) then a 1x1 conv (the
  fully-convolutional Linear) -> ``out_dim``. The four 4x4 conv widths come from the preset
  (the paper preset keeps 64/32/16/8).
* Convolutions are padded to keep the size ("same": two pixels before and one after for 4x4) so
  the output grid is exactly image_size / 8 and lines up cell for cell with the doctor.
* The k networks of one level (masters, or bachelors) are one grouped convolution stack (the
  first layer ungrouped, as they share the input): each group is an independent network with its own random initialisation (the paper's "students of
  the same level differ only by their random initialisation"), and one grouped conv runs faster
  on a CPU and exports as one ONNX node per layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAPER_LEAKY_SLOPE = 5e-3
POOLS = 3
STRIDE = 2**POOLS


class SamePadConv(nn.Conv2d):
    """Stride-1 conv with explicit zero padding that keeps H x W (even kernels pad one more before)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad k/2 before and k/2 - 1 after, then convolve without padding.

        (Measured: padding a copy is faster here than the conv's own padding plus a crop, whose
        non-contiguous view slows every following op.)
        """
        k = self.kernel_size[0]
        before, after = k // 2, k - 1 - k // 2
        return super().forward(F.pad(x, [before, after, before, after]))


class PatchNetEnsemble(nn.Module):
    """``networks`` independent Table-1 networks: (N, C, H, W) -> (N, networks, out_dim, H/8, W/8)."""

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        networks: int,
        widths: tuple[int, ...] = (64, 32, 16, 8),
        head_width: int = 128,
        leaky_slope: float = PAPER_LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_dim, self.networks = in_channels, out_dim, networks
        k = networks
        c1, c2, c3, c4 = widths
        # All networks read the same input, so their first layers are one ungrouped conv with k * c1
        # outputs (each network owns its c1 filters): the same maths as k separate convs, without
        # copying the input k times (this layer runs at full resolution and dominates the cost).
        self.conv1 = SamePadConv(in_channels, c1 * k, 4)
        self.conv2 = SamePadConv(c1 * k, c2 * k, 4, groups=k)
        self.conv3 = SamePadConv(c2 * k, c3 * k, 4, groups=k)
        self.conv4 = SamePadConv(c3 * k, c4 * k, 4, groups=k)
        self.conv5 = SamePadConv(c4 * k, head_width * k, 2, groups=k)
        self.out = nn.Conv2d(head_width * k, out_dim * k, 1, groups=k)
        self.act = nn.LeakyReLU(leaky_slope)
        self.pool = nn.MaxPool2d(2, 2)
        self._init_weights(leaky_slope)

    def _init_weights(self, leaky_slope: float) -> None:
        # He initialisation for LeakyReLU: PyTorch's default conv init shrinks activations by about
        # sqrt(3) per layer, and through six layers the students start on a long plateau at L_d = 1.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight, a=leaky_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        # The output starts at 0 (the standardised target's mean): a random output layer starts with
        # L_d near 2 and the first large steps kill most LeakyReLU(0.005) units (measured: the
        # students then sit at L_d = 1 for many epochs).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors of every network at every stride-8 cell."""
        y = self.pool(self.act(self.conv1(x)))
        y = self.pool(self.act(self.conv2(y)))
        y = self.pool(self.act(self.conv3(y)))
        y = self.act(self.conv4(y))
        y = self.act(self.conv5(y))
        y = self.out(y)
        n, _, h, w = y.shape
        return y.reshape(n, self.networks, self.out_dim, h, w)
