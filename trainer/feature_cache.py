"""On-disk cache of a split's preprocessed inputs and frozen-backbone features.

The backbone is frozen, so its features of a given image never change: AST's code pre-extracts
them once, and so do we. One ``<cache_dir>/<key>.npz`` per split holds the features (N, C, h, w),
the preprocessed depth and mask (N, 1, D, D), ``has_mask`` and the sample names. The key hashes
everything the arrays depend on: backbone name, block and weights SHA-256, the preprocessing
fingerprint, and the data (every file path with its size and modification time), so an edited,
added or removed image, other weights or other preprocessing is a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ad.dataset import SampleRef

CACHE_ENV = "EDGE_AD_CACHE"
# Bump when the file layout below or the preprocessing code changes (the preprocess fingerprint covers
# its settings, not its code: a changed preprocess() with the same settings must not reuse old inputs).
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$EDGE_AD_CACHE`` when set, else ``~/.cache/edge-ad/features``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edge-ad" / "features"


@dataclass(eq=False)
class SplitArrays:
    """Model inputs of one split, ready for training: all float32, first axis = sample."""

    names: list[str]
    depth: np.ndarray
    mask: np.ndarray
    has_mask: np.ndarray
    features: np.ndarray | None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> SplitArrays:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return SplitArrays(
            names=[self.names[i] for i in idx],
            depth=self.depth[idx],
            mask=self.mask[idx],
            has_mask=self.has_mask[idx],
            features=None if self.features is None else self.features[idx],
        )


def data_fingerprint(refs: Sequence[SampleRef]) -> list[list[object]]:
    """[path, size, mtime_ns] of every file of every sample, in split order."""
    entries: list[list[object]] = []
    for ref in refs:
        for path in (ref.rgb, ref.xyz):
            if path is not None:
                stat = Path(path).stat()
                entries.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return entries


def cache_key(backbone_id: str, preprocess_fingerprint: str, refs: Sequence[SampleRef]) -> str:
    """Hex key naming the cache file of these samples under this backbone and preprocessing."""
    payload = {
        "version": CACHE_VERSION,
        "backbone": backbone_id,
        "preprocess": preprocess_fingerprint,
        "data": data_fingerprint(refs),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


class FeatureCache:
    """Load and store :class:`SplitArrays` by key; ``cache_dir`` None disables caching."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()

    def path(self, key: str) -> Path | None:
        """File that holds ``key`` (None when caching is disabled)."""
        return None if self.cache_dir is None else self.cache_dir / f"{key}.npz"

    def load(self, key: str) -> SplitArrays | None:
        """The cached arrays, or None on a miss (an unreadable file counts as a miss)."""
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return SplitArrays(
                    names=[str(n) for n in data["names"]],
                    depth=data["depth"],
                    mask=data["mask"],
                    has_mask=data["has_mask"].astype(bool),
                    features=data["features"] if "features" in data.files else None,
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def save(self, key: str, arrays: SplitArrays) -> Path | None:
        """Write atomically (temporary file then rename) so a crash never leaves a half file."""
        path = self.path(key)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "names": np.asarray(arrays.names, dtype=str),
            "depth": arrays.depth,
            "mask": arrays.mask,
            "has_mask": arrays.has_mask,
        }
        if arrays.features is not None:
            payload["features"] = arrays.features
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **payload)
        tmp.replace(path)
        return path
