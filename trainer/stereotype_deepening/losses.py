"""Training losses of masters and bachelors: L_t = mu * L_d + (1 - mu) * L_p (Eqs. 4-6).

* ``L_d`` (Eq. 4, ||M(I) - D(I)||^2): the squared error to the previous level's normalised
  descriptor, averaged over descriptor dimensions and foreground cells. Averaging over dimensions
  (not summing) keeps L_d of order 1 for any descriptor size, on the same scale as L_p, so one mu
  works for every preset.
* ``L_p`` (Eq. 5 is garbled: only "n(n-1)/2" survives): the mean absolute off-diagonal correlation
  coefficient r_ij (Eq. 2) between descriptor DIMENSIONS, estimated over the descriptors of the
  batch (every foreground cell of every image). Dimensions, not descriptors, because Eq. 2 takes
  column means (b_i is a column of the batch descriptor matrix) and Section 3.2 motivates the term
  by redundancy between dimensions (L2-Net); correlating descriptors with each other would fight
  the regression, which wants neighbouring normal patches to have similar descriptors. The sum of
  |r_ij| over pairs is divided by the number of pairs, d(d-1)/2, so the value is a mean in [0, 1]
  and does not grow with the number of correlated items (the paper's stated aim for n(n-1)/2).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def regression_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L_d per network: (N, k, d, h, w) vs the same, weights (N, h, w) in {0, 1} -> (k,)."""
    per_cell = (pred - target).pow(2).mean(dim=2)  # (N, k, h, w)
    w = weight[:, None]
    return (per_cell * w).sum(dim=(0, 2, 3)) / w.sum().clamp(min=1.0)


def correlation_matrix(descriptors: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for each network: descriptors (k, P, d) (P samples) -> correlation coefficients (k, d, d)."""
    centred = descriptors - descriptors.mean(dim=1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred
    norm = cov.diagonal(dim1=1, dim2=2).clamp(min=EPS).sqrt()
    return cov / (norm[:, :, None] * norm[:, None, :])


def compactness_loss(descriptors: torch.Tensor) -> torch.Tensor:
    """L_p per network: mean |r_ij| over the d(d-1)/2 pairs of dimensions, descriptors (k, P, d) -> (k,)."""
    d = descriptors.shape[-1]
    if d < 2:
        return descriptors.new_zeros(descriptors.shape[0])
    r = correlation_matrix(descriptors).abs()
    off_diagonal = r.sum(dim=(1, 2)) - r.diagonal(dim1=1, dim2=2).sum(dim=1)
    return off_diagonal / 2 / (d * (d - 1) / 2)


def foreground_descriptors(pred: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N, k, d, h, w) and foreground (N, h, w) -> (k, P, d): the descriptors of foreground cells."""
    n, k, d, h, w = pred.shape
    flat = pred.permute(1, 0, 3, 4, 2).reshape(k, n * h * w, d)
    keep = weight.reshape(-1) > 0
    return flat[:, keep]


def level_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mu: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_t averaged over the level's networks, and its parts (for the log)."""
    l_d = regression_loss(pred, target, weight)
    l_p = compactness_loss(foreground_descriptors(pred, weight)) if mu < 1.0 else torch.zeros_like(l_d)
    total = (mu * l_d + (1.0 - mu) * l_p).mean()
    return total, {"loss": float(total.detach()), "l_d": float(l_d.mean().detach()), "l_p": float(l_p.mean().detach())}
