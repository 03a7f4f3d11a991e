"""Memory bank construction: greedy coreset subsampling and LDKNN's local density.

Both are exact (no approximate search) and chunked so a bank of ~10^5 patches fits in memory.
"""

from __future__ import annotations

import torch

from edge_ad.errors import ConfigError

_CHUNK = 512


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared L2 distances (len(a), len(b)), clamped at 0 against rounding."""
    return ((a * a).sum(1, keepdim=True) - 2.0 * a @ b.t() + (b * b).sum(1)[None]).clamp(min=0.0)


def greedy_coreset(
    features: torch.Tensor, size: int, generator: torch.Generator, projection_dim: int = 128
) -> torch.Tensor:
    """Indices (size,) of a greedy k-center coreset of ``features`` (N, D) (PatchCore).

    Distances are taken after a random Gaussian projection to ``projection_dim`` (Johnson-
    Lindenstrauss, as PatchCore); the first centre is drawn from ``generator``.
    """
    n, dim = features.shape
    if not 1 <= size <= n:
        raise ConfigError(f"coreset size must be in [1, {n}], got {size}")
    if size == n:
        return torch.arange(n)
    points = features
    if dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / projection_dim**0.5
        points = features @ projection.to(features.device, features.dtype)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    # The loop is sequential by nature: keep each step to one matrix-vector product (norms once).
    norms = (points * points).sum(1)

    def to_centre(index: int) -> torch.Tensor:
        return (norms - 2.0 * (points @ points[index]) + norms[index]).clamp(min=0.0)

    nearest = to_centre(int(chosen[0]))
    for i in range(1, size):
        index = int(torch.argmax(nearest))
        chosen[i] = index
        nearest = torch.minimum(nearest, to_centre(index))
    return chosen


def local_density(bank: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
    """Mean squared distance of each ``bank[indices]`` point to its ``k`` nearest neighbours in ``bank``.

    REB's Eq. 2 with the code's squared L2, the point itself excluded (by index: a duplicate of it
    elsewhere in the bank still counts as a neighbour at distance 0). Computed against the whole
    bank even when only a coreset is kept, as REB's code does.
    """
    n = len(bank)
    if not 1 <= k < n:
        raise ConfigError(f"model.k: need 1 <= k < bank size {n}, got {k}")
    out = torch.empty(len(indices), dtype=bank.dtype)
    for start in range(0, len(indices), _CHUNK):
        idx = indices[start : start + _CHUNK].to(bank.device)
        distances = squared_distances(bank[idx], bank)
        distances[torch.arange(len(idx)), idx] = float("inf")
        out[start : start + len(idx)] = distances.topk(k, dim=1, largest=False).values.mean(dim=1).cpu()
    return out
