"""The AST student: a plain fully convolutional network regressing the teacher's latent z.

Layout (AST paper Sec. 3.3 and the official code): input conv 3x3 (C + pos -> width) + LeakyReLU,
``blocks`` residual blocks of two (conv 3x3 -> BatchNorm -> LeakyReLU) rounds plus an identity
skip, output conv 3x3 (width -> C).

LeakyReLU slope, decided: 0.2, as printed in the paper (the official code uses PyTorch's default
0.01). The preset field ``student.leaky_slope`` switches it; the value used is saved in every run's
config.yaml, so runs stay reproducible either way.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_LEAKY_SLOPE = 0.2


class ResidualBlock(nn.Module):
    """(conv 3x3 -> BN -> LeakyReLU) x 2 plus identity."""

    def __init__(self, width: int, slope: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(slope),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(slope),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + body(x)."""
        return x + self.body(x)


class Student(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, H, W), same grid as the teacher's z."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int, blocks: int, slope: float = DEFAULT_LEAKY_SLOPE
    ):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(slope))
        self.blocks = nn.Sequential(*(ResidualBlock(width, slope) for _ in range(blocks)))
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted teacher latent."""
        return self.out(self.blocks(self.inp(x)))
