"""The AST teacher: a conditional Real-NVP normalizing flow over feature maps.

Each of the ``len(kernel_sizes)`` blocks applies a fixed random channel permutation (seeded per
block), then a GLOW-order affine coupling conditioned on the positional encoding c:

    y1 = x1 * e(s2([x2, c])) + t2([x2, c])
    y2 = x2 * e(s1([y1, c])) + t1([y1, c])

with e(s) = exp(alpha * 0.636 * atan(s / alpha)) (soft clamping, |log e| < alpha) and each (s, t)
pair produced by one subnet conv(k) -> ReLU -> conv(k) with replicate padding whose output is
multiplied by a learnable gamma initialised to 0, so every block starts as the identity
(CS-Flow's "gamma trick"). The log-determinant is returned per position (summed over channels),
which is what the per-position NLL of AST needs; summed over positions it is the log|det| of the
whole map's Jacobian (the coupling Jacobian is block triangular).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

# 0.636 ~ 2/pi: alpha * (2/pi) * atan(s/alpha) maps R onto (-alpha, alpha) with slope 1 at 0.
SOFT_CLAMP_FACTOR = 0.636


def replicate_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad H and W by repeating the border ``pad`` times (same values as F.pad(mode="replicate")).

    Built from slices and concatenation because the CPU backward of replication padding is several
    times slower than the convolution it feeds; this also exports to ONNX as plain Slice/Concat.
    """
    if pad == 0:
        return x
    x = torch.cat([x[..., :1]] * pad + [x] + [x[..., -1:]] * pad, dim=-1)
    return torch.cat([x[..., :1, :]] * pad + [x] + [x[..., -1:, :]] * pad, dim=-2)


class CouplingSubnet(nn.Module):
    """conv(k) -> ReLU -> conv(k) (replicate padding), output scaled by a learnable gamma (init 0)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift parameters for the other half, concatenated along channels."""
        hidden = torch.relu(self.conv1(replicate_pad(x, self.pad)))
        return self.conv2(replicate_pad(hidden, self.pad)) * self.gamma


class ConditionalCouplingBlock(nn.Module):
    """Fixed permutation + two-sided affine coupling conditioned on ``cond``."""

    def __init__(
        self, channels: int, cond_channels: int, hidden: int, kernel_size: int, clamp: float, seed: int
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling block needs at least 2 channels, got {channels}")
        self.len1 = channels // 2
        self.len2 = channels - self.len1
        self.clamp = float(clamp)
        perm = np.random.default_rng(seed).permutation(channels)
        self.register_buffer("perm", torch.from_numpy(perm).long())
        self.register_buffer("perm_inv", torch.from_numpy(np.argsort(perm)).long())
        self.s1 = CouplingSubnet(self.len1 + cond_channels, 2 * self.len2, hidden, kernel_size)
        self.s2 = CouplingSubnet(self.len2 + cond_channels, 2 * self.len1, hidden, kernel_size)

    def _log_e(self, s: torch.Tensor) -> torch.Tensor:
        return self.clamp * SOFT_CLAMP_FACTOR * torch.atan(s / self.clamp)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log-det per position (N, H, W))."""
        x = x.index_select(1, self.perm)
        x1, x2 = x[:, : self.len1], x[:, self.len1 :]
        r2 = self.s2(torch.cat([x2, cond], 1))
        log_s2, t2 = self._log_e(r2[:, : self.len1]), r2[:, self.len1 :]
        y1 = x1 * torch.exp(log_s2) + t2
        r1 = self.s1(torch.cat([y1, cond], 1))
        log_s1, t1 = self._log_e(r1[:, : self.len2]), r1[:, self.len2 :]
        y2 = x2 * torch.exp(log_s1) + t1
        logdet = log_s1.sum(dim=1) + log_s2.sum(dim=1)
        return torch.cat([y1, y2], 1), logdet

    def inverse(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`forward` (for tests and sampling)."""
        y1, y2 = y[:, : self.len1], y[:, self.len1 :]
        r1 = self.s1(torch.cat([y1, cond], 1))
        log_s1, t1 = self._log_e(r1[:, : self.len2]), r1[:, self.len2 :]
        x2 = (y2 - t1) * torch.exp(-log_s1)
        r2 = self.s2(torch.cat([x2, cond], 1))
        log_s2, t2 = self._log_e(r2[:, : self.len1]), r2[:, self.len1 :]
        x1 = (y1 - t2) * torch.exp(-log_s2)
        return torch.cat([x1, x2], 1).index_select(1, self.perm_inv)


class ConditionalFlow(nn.Module):
    """Stack of conditional coupling blocks: x (N, C, H, W), cond (N, Cc, H, W) -> z, log-det (N, H, W)."""

    def __init__(
        self,
        channels: int,
        cond_channels: int,
        hidden: int,
        kernel_sizes: Sequence[int] = (3, 3, 3, 5),
        clamp: float = 1.9,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ConditionalCouplingBlock(channels, cond_channels, hidden, k, clamp, seed=seed + i)
            for i, k in enumerate(kernel_sizes)
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent z (same shape as x) and the log|det dz/dx| per position (N, H, W)."""
        logdet = torch.zeros_like(x[:, 0])
        for block in self.blocks:
            x, block_logdet = block(x, cond)
            logdet = logdet + block_logdet
        return x, logdet

    def inverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x such that ``forward(x, cond)[0] == z``."""
        for block in reversed(self.blocks):
            z = block.inverse(z, cond)
        return z
