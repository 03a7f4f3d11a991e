"""A tiny RGB-D dataset for fast training tests: discs on a tilted belt, dents and stains.

Good parts are flat-topped discs (random position, radius and colour shade) standing on a
slightly tilted, textured belt seen by a pinhole camera from ~0.4 m. Defects: ``dent`` (a 4 mm
deep pit on the top face: depth only, RGB untouched) and ``stain`` (a dark blot: RGB only, depth
untouched). Written with ``edge_ad.dataset.write_sample`` in the MVTec 3D-AD layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ad.dataset import write_sample
from edge_ad.frame import Intrinsics

DEFECTS = ("dent", "stain")


def _belt_depth(size: int, intr: Intrinsics, tilt: tuple[float, float], z0: float) -> np.ndarray:
    # Depth of the plane z = z0 + tx * X + ty * Y along each pixel ray (x = z * u, y = z * v).
    u = (np.arange(size, dtype=np.float64) - intr.cx) / intr.fx
    v = (np.arange(size, dtype=np.float64) - intr.cy) / intr.fy
    uu, vv = np.meshgrid(u, v)
    return z0 / (1.0 - tilt[0] * uu - tilt[1] * vv)


def render_part(
    rng: np.random.Generator, size: int = 96, defect: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8 (H, W, 3), xyz float32 (H, W, 3) metres, gt bool (H, W)) of one scene."""
    intr = Intrinsics(size, size, fx=2.1 * size, fy=2.1 * size, cx=size / 2, cy=size / 2)
    z = _belt_depth(size, intr, (rng.uniform(-0.05, 0.05), rng.uniform(0.02, 0.08)), rng.uniform(0.39, 0.41))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = size / 2 + rng.uniform(-0.08, 0.08) * size, size / 2 + rng.uniform(-0.08, 0.08) * size
    radius = rng.uniform(0.2, 0.24) * size
    part = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    z = np.where(part, z - 0.015, z)

    belt = 60 + 10 * rng.standard_normal((size, size))
    rgb = np.repeat(belt[..., None], 3, axis=2)
    colour = np.array([205.0, 130.0, 60.0]) * rng.uniform(0.95, 1.05)
    rgb[part] = colour + 4 * rng.standard_normal((int(part.sum()), 3))

    gt = np.zeros((size, size), bool)
    if defect is not None:
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5) * radius
        dx, dy = cx + dist * np.cos(angle), cy + dist * np.sin(angle)
        spot_r = rng.uniform(0.07, 0.09) * size
        gt = ((xx - dx) ** 2 + (yy - dy) ** 2 <= spot_r**2) & part
        if defect == "dent":
            z = np.where(gt, z + 0.004, z)
        elif defect == "stain":
            rgb[gt] = rgb[gt] * 0.35
        else:
            raise ValueError(f"unknown defect {defect!r}; known: {', '.join(DEFECTS)}")
    z = z + rng.normal(0.0, 0.0003, z.shape)
    xyz = intr.deproject(z.astype(np.float32))
    return np.clip(rgb, 0, 255).astype(np.uint8), xyz, gt


def make_tiny_parts(
    root: Path,
    category: str = "discs",
    seed: int = 0,
    n_train: int = 16,
    n_validation: int = 4,
    n_test_good: int = 6,
    n_test_per_defect: int = 6,
    size: int = 96,
    with_xyz: bool = True,
) -> Path:
    """Write the dataset under ``root/category`` and return that category folder."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / category
    plan: list[tuple[str, str, int]] = [("train", "good", n_train), ("validation", "good", n_validation)]
    plan += [("test", "good", n_test_good)] + [("test", d, n_test_per_defect) for d in DEFECTS]
    for split, kind, count in plan:
        for i in range(count):
            rgb, xyz, gt = render_part(rng, size, None if kind == "good" else kind)
            write_sample(cat, split, kind, i, rgb, xyz if with_xyz else None, gt if split == "test" else None)
    return cat
