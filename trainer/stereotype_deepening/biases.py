"""The three biases of Section 4.3 as per-cell maps (Eqs. 7-9), from descriptors at the grid.

Shapes: doctor (N, d, h, w); masters (N, m, d, h, w); master targets (N, m, d, h, w), the masters'
outputs normalised as the bachelors learned them; bachelors (N, 2m, d, h, w), bachelors 2i and
2i + 1 being the class of master i. Distances are Euclidean over the d dimensions (the paper's
sqrt((a - b)^2)). Every loop runs over a fixed number of networks, so the graph exports as is.

* inference (Eq. 7): sum_i ||D - M_i||.
* delivery (Eq. 8): sum_i sum_{j in class i} ||M_i - B_j||. Only a bachelor's own master: that is
  the distillation edge drawn in Figure 3, and a cross-class pair would mostly measure how two
  masters differ, which is the peer bias already.
* peer (Eq. 9, denominator garbled): mean distance over all unordered pairs of masters and all
  unordered pairs of bachelors (sum of both sums / number of pairs), so adding students does not
  inflate it.
"""

from __future__ import annotations

from itertools import combinations

import torch


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance over the descriptor axis (-3): (..., d, h, w) -> (..., h, w)."""
    return (a - b).pow(2).sum(dim=-3).sqrt()


def inference_bias(doctor: torch.Tensor, masters: torch.Tensor) -> torch.Tensor:
    """Eq. 7: (N, h, w)."""
    return distance(masters, doctor[:, None]).sum(dim=1)


def delivery_bias(master_targets: torch.Tensor, bachelors: torch.Tensor) -> torch.Tensor:
    """Eq. 8 with j over master i's class: (N, h, w)."""
    n, m = master_targets.shape[:2]
    per_class = bachelors.reshape(n, m, bachelors.shape[1] // m, *bachelors.shape[2:])
    return distance(per_class, master_targets[:, :, None]).sum(dim=(1, 2))


def peer_bias(masters: torch.Tensor, bachelors: torch.Tensor) -> torch.Tensor:
    """Eq. 9: mean pairwise distance over master pairs and bachelor pairs, (N, h, w)."""
    pairs = [(masters, i, k) for i, k in combinations(range(masters.shape[1]), 2)]
    pairs += [(bachelors, j, k) for j, k in combinations(range(bachelors.shape[1]), 2)]
    total = sum(distance(level[:, i], level[:, k]) for level, i, k in pairs)
    return total / len(pairs)
