"""Tiny datasets on disk for tests: MVTec 3D-AD layout (with or without xyz) and MVTec AD layout.

Images are small random textures (deterministic per seed); point clouds are a tilted plane at
about 0.5 m with a few missing points; defect masks are a rectangle. Use them wherever a test
needs "a dataset folder" without caring about realistic content (for realistic parts use
edge_ad.synth).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from edge_ad.dataset import write_sample

DEFAULT_DEFECTS: Mapping[str, int] = {"crack": 2, "hole": 1}


def random_rgb(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 noise."""
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def plane_xyz(rng: np.random.Generator, size: tuple[int, int], missing_fraction: float = 0.05) -> np.ndarray:
    """(H, W, 3) float32 metres: a slightly tilted plane near z = 0.5 m, some points missing (0, 0, 0)."""
    h, w = size
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    z = 0.5 + 0.0005 * v + rng.normal(0.0, 0.0005, size=(h, w)).astype(np.float32)
    xyz = np.stack([(u - w / 2) * z / 500.0, (v - h / 2) * z / 500.0, z], axis=2).astype(np.float32)
    xyz[rng.random((h, w)) < missing_fraction] = 0.0
    return xyz


def rect_mask(size: tuple[int, int], index: int) -> np.ndarray:
    """(H, W) bool with a defect rectangle whose position depends on ``index``."""
    h, w = size
    mask = np.zeros(size, dtype=bool)
    top, left = (index * 3) % max(1, h // 2), (index * 5) % max(1, w // 2)
    mask[top : top + max(2, h // 4), left : left + max(2, w // 4)] = True
    return mask


def make_mvtec3d(
    root: Path,
    category: str = "part",
    n_train: int = 4,
    n_validation: int = 2,
    n_test_good: int = 2,
    defects: Mapping[str, int] = DEFAULT_DEFECTS,
    size: tuple[int, int] = (24, 32),
    with_xyz: bool = True,
    seed: int = 0,
) -> Path:
    """Write an MVTec 3D-AD style category with ``edge_ad.dataset.write_sample``; returns its folder.

    ``size`` is (H, W). Test good samples get an all-False gt (as in MVTec 3D-AD); defects a
    rectangle. ``with_xyz=False`` gives the RGB-only variant (no xyz folders).
    """
    rng = np.random.default_rng(seed)
    category_root = Path(root) / category
    plan = [("train", "good", n_train), ("validation", "good", n_validation), ("test", "good", n_test_good)]
    plan += [("test", name, count) for name, count in defects.items()]
    for split, defect_type, count in plan:
        for index in range(count):
            gt = None
            if split == "test":
                gt = rect_mask(size, index) if defect_type != "good" else np.zeros(size, dtype=bool)
            write_sample(
                category_root,
                split,
                defect_type,
                index,
                rgb=random_rgb(rng, size),
                xyz=plane_xyz(rng, size) if with_xyz else None,
                gt=gt,
            )
    return category_root


def make_mvtecad(
    root: Path,
    category: str = "part",
    n_train: int = 4,
    n_test_good: int = 2,
    defects: Mapping[str, int] = DEFAULT_DEFECTS,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
) -> Path:
    """Write an MVTec AD style category (RGB only, masks as ground_truth/<type>/NNN_mask.png); returns its folder."""
    rng = np.random.default_rng(seed)
    category_root = Path(root) / category
    plan = [("train", "good", n_train), ("test", "good", n_test_good)]
    plan += [("test", name, count) for name, count in defects.items()]
    for split, defect_type, count in plan:
        folder = category_root / split / defect_type
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            cv2.imwrite(str(folder / f"{index:03d}.png"), random_rgb(rng, size))
            if split == "test" and defect_type != "good":
                mask_dir = category_root / "ground_truth" / defect_type
                mask_dir.mkdir(parents=True, exist_ok=True)
                mask = rect_mask(size, index).astype(np.uint8) * 255
                cv2.imwrite(str(mask_dir / f"{index:03d}_mask.png"), mask)
    return category_root
