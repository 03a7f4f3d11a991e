"""Foreground extraction from an organized point cloud: validity, hole filling, background, mask.

The part is whatever stands more than ``threshold_m`` off the background on the camera side
(closer to the camera than the belt). Three background models:

``plane``       robust fit of the dominant plane in this frame (RANSAC, then least squares);
                the default for the line, where the belt fills most of the view. A dominant
                plane with much of the scene behind it (a flat part bigger than the visible
                belt) is refused rather than taken for the belt.
``corners``     AST's bilinear surface through the four image corners (MVTec 3D-AD compatible);
                the distance is then measured along z, as in AST.
``calibrated``  a fixed plane from station calibration; refused when the frame no longer shows
                it (camera knocked, belt missing), instead of calling everything a part.

Missing depth: after AST's 3-pass hole filling, a pixel that was filled from its neighbours is
tested with its filled depth (specular spots on a part then do not punch holes in the mask);
a pixel still missing after the passes is background, as in AST. In ``z_filled`` such pixels
get the background's depth, so downstream code sees a dense map that reads as "belt" there.
Plane, PlaneFit and fit_plane (``edge_ad.plane``) and part_presence (``edge_ad.presence``) are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from edge_ad._fields import check_range, coerce_fields
from edge_ad.errors import ConfigError, GeometryError, PlaneFitError
from edge_ad.plane import Plane, PlaneFit, fit_plane
from edge_ad.presence import FULL_ROI, Presence, check_roi, part_presence, roi_to_pixels
from edge_ad.typed_data import load_dataclass, to_plain

__all__ = [
    "ForegroundConfig",
    "ForegroundResult",
    "Plane",
    "PlaneFit",
    "Presence",
    "corner_background",
    "dilate_mask",
    "extract_foreground",
    "fill_holes",
    "fit_plane",
    "part_presence",
    "roi_to_pixels",
    "valid_mask",
]

ForegroundMethod = Literal["plane", "corners", "calibrated"]
# RANSAC looks at this many valid pixels; more adds time, not accuracy, on a belt-sized plane.
_PLANE_SAMPLE = 5000
_SEED = 0


def valid_mask(xyz: np.ndarray, z_min: float = 0.05, z_max: float = 5.0) -> np.ndarray:
    """Pixels of ``xyz`` (H, W, 3) with a finite point whose z lies in [z_min, z_max] (excludes (0,0,0))."""
    _check_xyz(xyz)
    with np.errstate(invalid="ignore"):
        z = xyz[..., 2]
        valid = (z >= z_min) & (z <= z_max)
        valid &= np.isfinite(xyz[..., 0]) & np.isfinite(xyz[..., 1])
    return valid


def fill_holes(z: np.ndarray, valid: np.ndarray, iterations: int = 3) -> np.ndarray:
    """AST hole filling: each pass sets every missing pixel to the mean of its valid 8-neighbours.

    Returns float32 depth with 0 where a pixel is still missing after ``iterations`` passes (a hole
    wider than about 2 x iterations pixels keeps a missing core). Values under ``~valid`` are ignored.
    """
    if z.ndim != 2 or valid.shape != z.shape:
        raise GeometryError(
            f"fill_holes: expected z (H, W) and valid of the same shape, got {z.shape} and {valid.shape}"
        )
    filled = np.where(valid, z, 0).astype(np.float32)
    known = valid.astype(np.float32)
    for _ in range(iterations):
        missing = known == 0
        if not missing.any():
            break
        # Unnormalised 3x3 box sums; a missing centre contributes 0, so these are 8-neighbour sums.
        sums = cv2.boxFilter(filled, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        counts = cv2.boxFilter(known, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        fill = missing & (counts > 0.5)
        filled[fill] = sums[fill] / counts[fill]
        known[fill] = 1.0
    return filled


def corner_background(z: np.ndarray, valid: np.ndarray, patch: int = 2) -> np.ndarray:
    """AST's background: a bilinear surface through the mean valid depth of the four corner patches."""
    if z.ndim != 2 or valid.shape != z.shape:
        raise GeometryError(
            f"corner_background: expected z (H, W) and valid alike, got {z.shape} and {valid.shape}"
        )
    h, w = z.shape
    corners = {}
    for name, rows, cols in (
        ("top-left", slice(0, patch), slice(0, patch)),
        ("top-right", slice(0, patch), slice(w - patch, w)),
        ("bottom-left", slice(h - patch, h), slice(0, patch)),
        ("bottom-right", slice(h - patch, h), slice(w - patch, w)),
    ):
        ok = valid[rows, cols]
        if not ok.any():
            raise GeometryError(
                f"corner_background: no valid depth in the {patch}x{patch} {name} corner patch"
            )
        corners[name] = float(z[rows, cols][ok].mean())
    s = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    top = (1 - s) * corners["top-left"] + s * corners["top-right"]
    bottom = (1 - s) * corners["bottom-left"] + s * corners["bottom-right"]
    return ((1 - t) * top + t * bottom).astype(np.float32)


def dilate_mask(mask: np.ndarray, side_px: int) -> np.ndarray:
    """Grow a bool mask with a ``side_px`` x ``side_px`` square (AST's 8x8 is side 8); 0 or 1: a copy."""
    if side_px <= 1 or not mask.any():
        return mask.copy()
    kernel = np.ones((side_px, side_px), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


@dataclass(frozen=True)
class ForegroundConfig:
    """How to cut the part out of the background (all lengths in metres).

    ``dilate_px`` is the side of the square used to grow ``mask`` (0 or 1: no growth); ``roi`` is a
    normalised (x0, y0, x1, y1) box for part presence. ``plane`` is required by method "calibrated".
    ``plane_inlier_m`` / ``min_plane_inlier_ratio`` govern the belt fit (and the calibrated check).
    """

    method: ForegroundMethod = "plane"
    threshold_m: float = 0.007
    dilate_px: int = 5
    z_min_m: float = 0.05
    z_max_m: float = 5.0
    min_valid_fraction: float = 0.25
    plane: Plane | None = None
    roi: tuple[float, ...] = FULL_ROI
    plane_inlier_m: float = 0.004
    min_plane_inlier_ratio: float = 0.25

    def __post_init__(self) -> None:
        coerce_fields(self)
        owner = "ForegroundConfig"
        check_range(owner, "threshold_m", self.threshold_m, low=0.0, low_open=True)
        check_range(owner, "dilate_px", self.dilate_px, low=0)
        check_range(owner, "z_min_m", self.z_min_m, low=0.0)
        check_range(owner, "z_max_m", self.z_max_m, low=self.z_min_m, low_open=True)
        check_range(owner, "min_valid_fraction", self.min_valid_fraction, low=0.0, high=1.0)
        check_range(owner, "plane_inlier_m", self.plane_inlier_m, low=0.0, low_open=True)
        check_range(
            owner, "min_plane_inlier_ratio", self.min_plane_inlier_ratio, low=0.0, high=1.0, low_open=True
        )
        if self.method == "calibrated" and self.plane is None:
            raise ConfigError(
                f"{owner}.plane: method 'calibrated' needs a plane (normal, d) from calibration"
            )
        check_roi(self.roi)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (lists, nested plane as {normal, d} or None)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: object, path: str = "foreground") -> ForegroundConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types raise ConfigError naming ``path``."""
        return load_dataclass(cls, data, error=ConfigError, path=path)


@dataclass(frozen=True, eq=False)
class ForegroundResult:
    """Foreground of one frame (all arrays (H, W)).

    ``mask``: foreground grown by ``dilate_px``; ``raw_mask``: before growing; ``valid``: measured
    depth; ``z_filled``: dense float32 depth (see the module docstring); ``plane``: the background
    plane (None for "corners"); ``height_m``: float32 distance above the background, camera side
    positive, 0 where depth is missing; ``fit``: the RANSAC result for method "plane".
    """

    mask: np.ndarray
    raw_mask: np.ndarray
    valid: np.ndarray
    z_filled: np.ndarray
    plane: Plane | None
    valid_fraction: float
    height_m: np.ndarray
    fit: PlaneFit | None = None


def extract_foreground(xyz: np.ndarray, config: ForegroundConfig | None = None) -> ForegroundResult:
    """Cut the part out of ``xyz`` (H, W, 3) metres; raises GeometryError / PlaneFitError on unusable depth.

    An empty mask is a legitimate answer (no part in view); degenerate depth never is. For a depth
    map, pass ``Frame.xyz()`` (``Intrinsics.deproject``); ``config`` defaults to ForegroundConfig().
    """
    config = config or ForegroundConfig()
    valid = valid_mask(xyz, config.z_min_m, config.z_max_m)
    valid_fraction = float(np.count_nonzero(valid)) / valid.size
    if valid_fraction < config.min_valid_fraction:
        raise GeometryError(
            f"only {valid_fraction:.1%} of {valid.size} pixels have depth in "
            f"[{config.z_min_m}, {config.z_max_m}] m, need >= {config.min_valid_fraction:.0%}"
        )
    z = xyz[..., 2]
    z_filled = fill_holes(z, valid)
    known = z_filled > 0
    fit = None
    plane = None
    if config.method == "corners":
        background = corner_background(z, valid)
        height = background - z_filled
    else:
        rays, sample = _fit_rays(xyz, valid)
        if config.method == "plane":
            fit = fit_plane(
                sample,
                inlier_threshold_m=config.plane_inlier_m,
                min_inlier_ratio=config.min_plane_inlier_ratio,
                max_points=_PLANE_SAMPLE,
                seed=_SEED,
            )
            plane = fit.plane
        else:
            plane = config.plane
        n_dot_ray = _normal_dot_rays(plane, rays, z.shape)
        # Measured pixels use their own xyz; filled ones sit on their pixel's ray at the filled depth.
        with np.errstate(invalid="ignore", over="ignore"):  # invalid pixels may hold NaN/inf; not selected
            height = np.where(valid, plane.signed_distance(xyz), z_filled * n_dot_ray + np.float32(plane.d))
        far = float(sample[:, 2].max())
        with np.errstate(divide="ignore", invalid="ignore"):
            background = np.where(n_dot_ray < -1e-6, -plane.d / n_dot_ray, far).astype(np.float32)
        if config.method == "calibrated":
            _check_calibrated_plane(height, valid, config)
    height = np.where(known, height, 0).astype(np.float32)
    z_filled = np.where(known, z_filled, background).astype(np.float32)
    raw_mask = known & (height > config.threshold_m)
    return ForegroundResult(
        mask=dilate_mask(raw_mask, config.dilate_px),
        raw_mask=raw_mask,
        valid=valid,
        z_filled=z_filled,
        plane=plane,
        valid_fraction=valid_fraction,
        height_m=height,
        fit=fit,
    )


def _check_xyz(xyz: np.ndarray) -> None:
    if not isinstance(xyz, np.ndarray) or xyz.ndim != 3 or xyz.shape[2] != 3:
        raise GeometryError(
            f"expected an organized point cloud (H, W, 3), got {getattr(xyz, 'shape', type(xyz))}"
        )
    if xyz.dtype.kind != "f":
        raise GeometryError(f"expected a float point cloud in metres, got dtype {xyz.dtype}")


def _fit_rays(xyz: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole ray slopes (x/z = a*u + b, y/z = c*v + e) from a sample of valid pixels, and the sample.

    The rays place hole-filled depths in 3D and give the belt's depth behind pixels with none.
    """
    flat = np.flatnonzero(valid)
    if len(flat) > _PLANE_SAMPLE:
        flat = flat[np.random.default_rng(_SEED).choice(len(flat), size=_PLANE_SAMPLE, replace=False)]
    points = xyz.reshape(-1, 3)[flat].astype(np.float64)
    u, v = flat % valid.shape[1], flat // valid.shape[1]
    if np.ptp(u) == 0 or np.ptp(v) == 0:
        raise PlaneFitError(f"valid depth spans a single image row or column ({len(flat)} sampled pixels)")
    a, b = np.polyfit(u, points[:, 0] / points[:, 2], 1)
    c, e = np.polyfit(v, points[:, 1] / points[:, 2], 1)
    return np.array([a, b, c, e]), points


def _normal_dot_rays(plane: Plane, rays: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    a, b, c, e = rays
    nx, ny, nz = plane.normal
    h, w = shape
    across = nx * (a * np.arange(w) + b)
    down = ny * (c * np.arange(h) + e)
    return (down[:, None] + across[None, :] + nz).astype(np.float32)


def _check_calibrated_plane(height: np.ndarray, valid: np.ndarray, config: ForegroundConfig) -> None:
    on_plane = float(np.count_nonzero(valid & (np.abs(height) <= config.threshold_m))) / max(
        1, np.count_nonzero(valid)
    )
    if on_plane < config.min_plane_inlier_ratio:
        raise PlaneFitError(
            f"calibrated plane does not match this frame: {on_plane:.1%} of valid pixels lie within "
            f"{config.threshold_m * 1000:.1f} mm of it, need >= {config.min_plane_inlier_ratio:.0%} "
            "(camera moved or belt not in view? recalibrate the plane)"
        )
