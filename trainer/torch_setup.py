"""Device choice, thread count and seeding for training runs."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from edge_ad.errors import ConfigError

MAX_CPU_THREADS = 8  # beyond this, small convolutions gain little and starve other processes


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU raises ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name}: no CUDA device is available (torch {torch.__version__}); use cpu or auto"
        )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device: invalid device {name!r}: {exc}") from exc


@contextmanager
def cpu_threads(requested: int | None = None) -> Iterator[int]:
    """Set torch's intra-op thread count for a block and restore it afterwards; yields the count.

    ``requested`` None: all cores (at most 8) unless OMP_NUM_THREADS already chose. Tiny models
    should ask for 1: their many small ops pay a thread barrier each, which costs more than it
    saves, and on a busy machine (CI, shared workstation) far more.
    """
    previous = torch.get_num_threads()
    if requested is not None:
        torch.set_num_threads(max(1, requested))
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(MAX_CPU_THREADS, os.cpu_count() or 1)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for shuffling batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from the global RNG
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
