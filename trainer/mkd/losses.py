"""MKD's discrepancy between source and cloner activations at the critical points (CPs).

Paper (Salehi et al., Eqs. 2-4), per sample, N_i neurons at CP_i:

* L_val = sum_i (1/N_i) sum_j (a_s(j) - a_c(j))**2: the per-CP mean squared error;
* L_dir = sum_i (1 - cos(vec(a_s), vec(a_c))): cosine of the flattened activations. The paper
  prints the "1 -" outside the sum; the official code (and we) subtract each CP's cosine from 1,
  so every CP counts alike whatever the number of CPs;
* the paper's total is L_val + lambda * L_dir (lambda from the ratio of the two initial losses),
  the code's L_dir + lambda * L_val (lambda 0.5 on MVTec). Both are ``weight_val * L_val +
  weight_dir * L_dir`` (:func:`loss_weights`).

The anomaly map is the same discrepancy per position: (1 - cosine over channels) and the mean
squared error over channels, weighted alike, summed over the scoring CPs after upsampling each CP
bilinearly to the finest one's grid. Its mean over the image is the paper's L_total up to the
per-position (instead of whole-CP) cosine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from edge_ad.errors import ConfigError

EPS = 1e-8
COMBINATIONS = ("paper", "code")


def loss_weights(combination: str, lam: float) -> tuple[float, float]:
    """(weight_val, weight_dir): paper L_val + lam * L_dir, code L_dir + lam * L_val."""
    if combination == "paper":
        return 1.0, lam
    if combination == "code":
        return lam, 1.0
    raise ConfigError(f"model.loss must be one of {', '.join(COMBINATIONS)}, got {combination!r}")


def _cosine(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    # Written out (not F.cosine_similarity) so the ONNX graph is three reductions and a division.
    dot = (a * b).sum(dim=dim)
    norms = torch.sqrt((a * a).sum(dim=dim)) * torch.sqrt((b * b).sum(dim=dim))
    return dot / norms.clamp(min=EPS)


def value_loss(source: Sequence[torch.Tensor], cloner: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_val per sample (N,): per-CP mean squared error, summed over CPs."""
    return sum(((s - c) ** 2).flatten(1).mean(dim=1) for s, c in zip(source, cloner, strict=True))  # type: ignore[return-value]


def direction_loss(source: Sequence[torch.Tensor], cloner: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_dir per sample (N,): per-CP 1 - cosine of the flattened activations, summed over CPs."""
    return sum(1.0 - _cosine(s.flatten(1), c.flatten(1), dim=1) for s, c in zip(source, cloner, strict=True))  # type: ignore[return-value]


def total_loss(
    source: Sequence[torch.Tensor], cloner: Sequence[torch.Tensor], weight_val: float, weight_dir: float
) -> torch.Tensor:
    """weight_val * L_val + weight_dir * L_dir per sample (N,)."""
    return weight_val * value_loss(source, cloner) + weight_dir * direction_loss(source, cloner)


def discrepancy_map(
    source: Sequence[torch.Tensor],
    cloner: Sequence[torch.Tensor],
    weight_val: float,
    weight_dir: float,
    size: int,
) -> torch.Tensor:
    """Per-position discrepancy (N, 1, size, size) summed over the given CPs (see the module docstring)."""
    total = None
    for s, c in zip(source, cloner, strict=True):
        per_cp = weight_dir * (1.0 - _cosine(s, c, dim=1)) + weight_val * ((s - c) ** 2).mean(dim=1)
        per_cp = per_cp[:, None]
        if per_cp.shape[-1] != size:
            per_cp = F.interpolate(per_cp, size=(size, size), mode="bilinear", align_corners=False)
        total = per_cp if total is None else total + per_cp
    if total is None:
        raise ConfigError("discrepancy_map: no critical points to score")
    return total
