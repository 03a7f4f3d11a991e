"""MKD's localisation: the gradient of the loss with respect to the input, smoothed and opened.

Paper Eqs. 5-6: Lambda = dL_total/dx; M = g_sigma(Lambda) (Gaussian, sigma 4); L_map = opening of
M by B, a 3x3 ellipse (OpenCV's 3x3 ellipse is the 4-neighbour cross). The paper does not say how
the three colour channels become one map; the official code sums |gradient| over them, and so do
we. The code then rescales each map by its own minimum and 99th percentile; we do not, since that
would make maps of different images incomparable (pixel AUROC pools all pixels of a test set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# OpenCV's getStructuringElement(MORPH_ELLIPSE, (3, 3)): centre plus its 4 neighbours.
CROSS_OFFSETS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(4 sigma) (scipy's default truncation)."""
    radius = max(1, math.ceil(4.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) maps, edges replicated."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel(sigma).to(maps)
    radius = (kernel.numel() - 1) // 2
    x = F.pad(maps, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def _cross_filter(maps: torch.Tensor, reduce: str) -> torch.Tensor:
    # Min (erosion) or max (dilation) over the cross neighbourhood, edges replicated.
    padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
    h, w = maps.shape[-2:]
    shifted = torch.stack([padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in CROSS_OFFSETS])
    return shifted.amin(dim=0) if reduce == "min" else shifted.amax(dim=0)


def opening(maps: torch.Tensor) -> torch.Tensor:
    """Grey-level opening (erosion then dilation) with the 3x3 ellipse."""
    return _cross_filter(_cross_filter(maps, "min"), "max")


def postprocess_gradient(gradient: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 3, H, W) input gradient -> (N, 1, H, W) localisation map: sum |.|, blur, open."""
    return opening(gaussian_blur(gradient.abs().sum(dim=1, keepdim=True), sigma))
