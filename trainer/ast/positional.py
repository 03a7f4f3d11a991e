"""2-D sinusoidal positional encoding (Transformer formula per axis, as in CFLOW and AST)."""

from __future__ import annotations

import math

import torch


def positional_encoding_2d(channels: int, height: int, width: int) -> torch.Tensor:
    """Encoding of shape (channels, height, width); ``channels`` must be a multiple of 4.

    The first half of the channels encodes the column (x), the second half the row (y); within
    each half even channels are sines and odd channels cosines of the position times
    ``exp(-2i * ln(10000) / (channels / 2))`` (CFLOW's ``positionalencoding2d``).
    """
    if channels % 4 != 0:
        raise ValueError(f"positional encoding channels must be a multiple of 4, got {channels}")
    half = channels // 2
    div_term = torch.exp(torch.arange(0.0, half, 2) * -(math.log(1e4) / half))  # (half/2,)
    pos_w = torch.arange(0.0, width)[:, None] * div_term  # (W, half/2)
    pos_h = torch.arange(0.0, height)[:, None] * div_term  # (H, half/2)
    enc = torch.zeros(channels, height, width)
    enc[0:half:2] = torch.sin(pos_w).T[:, None, :].expand(-1, height, -1)
    enc[1:half:2] = torch.cos(pos_w).T[:, None, :].expand(-1, height, -1)
    enc[half::2] = torch.sin(pos_h).T[:, :, None].expand(-1, -1, width)
    enc[half + 1 :: 2] = torch.cos(pos_h).T[:, :, None].expand(-1, -1, width)
    return enc
