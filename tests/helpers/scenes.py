"""Tiny analytic RGB-D scenes for geometry tests: a tilted belt plane, a box on it, noise, holes, junk.

Every pixel's ray is cast exactly against the plane and the box (slab test in the plane's frame),
so the box silhouette and the plane are known without approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_ad.frame import Intrinsics
from edge_ad.plane import Plane


@dataclass(frozen=True, eq=False)
class AnalyticScene:
    """xyz (H, W, 3) float32 metres (missing = 0); silhouette: pixels whose ray hits the box."""

    xyz: np.ndarray
    silhouette: np.ndarray
    dent: np.ndarray
    plane: Plane
    intrinsics: Intrinsics

    @property
    def depth(self) -> np.ndarray:
        """z channel (0 where missing)."""
        return self.xyz[..., 2]


def tilted_plane(distance_m: float, tilt_deg: float, tilt_axis_deg: float = 30.0) -> Plane:
    """The plane through (0, 0, distance_m) whose normal is tilted by ``tilt_deg`` from the optical axis."""
    axis = math.radians(tilt_axis_deg)
    tilt = math.radians(tilt_deg)
    # Rotate (0, 0, -1) (facing the camera) by ``tilt`` about the in-image axis at ``tilt_axis_deg``.
    normal = np.array([math.sin(tilt) * -math.sin(axis), math.sin(tilt) * math.cos(axis), -math.cos(tilt)])
    return Plane(tuple(normal), float(normal[2] * -distance_m))


def make_scene(
    *,
    width: int = 640,
    height: int = 480,
    focal_px: float = 600.0,
    distance_m: float = 0.4,
    tilt_deg: float = 8.0,
    tilt_axis_deg: float = 30.0,
    box_size_m: tuple[float, float, float] | None = (0.12, 0.09, 0.03),
    box_center_m: tuple[float, float] = (0.01, -0.01),
    dent_radius_m: float = 0.0,
    dent_depth_m: float = 0.02,
    dent_center_m: tuple[float, float] = (-0.12, 0.06),
    noise_m: float = 0.0,
    hole_fraction: float = 0.0,
    junk_fraction: float = 0.0,
    seed: int = 0,
) -> AnalyticScene:
    """Render a pinhole view of a tilted plane with an optional box standing on it and a dent in it.

    Box and dent positions are in the plane's own (s, t) coordinates around the point where the
    optical axis meets the plane. Noise is along each ray; holes become (0, 0, 0); junk pixels get
    random depths in [0.1, 1.5] m (in front of and behind the plane).
    """
    rng = np.random.default_rng(seed)
    k = Intrinsics(width, height, focal_px, focal_px, (width - 1) / 2, (height - 1) / 2)
    plane = tilted_plane(distance_m, tilt_deg, tilt_axis_deg)
    n = np.asarray(plane.normal)
    e1 = np.cross([0.0, 1.0, 0.0], n)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    origin = np.array([0.0, 0.0, distance_m])

    u, v = np.meshgrid((np.arange(width) - k.cx) / k.fx, (np.arange(height) - k.cy) / k.fy)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1)
    n_dot_r = rays @ n
    t = -plane.d / n_dot_r

    silhouette = np.zeros((height, width), bool)
    if box_size_m is not None:
        base = origin + box_center_m[0] * e1 + box_center_m[1] * e2
        t_box = _ray_box(rays, base, (e1, e2, n), box_size_m)
        silhouette = np.isfinite(t_box) & (t_box < t)
        t = np.where(silhouette, t_box, t)

    dent = np.zeros_like(silhouette)
    if dent_radius_m > 0:
        hit = t[..., None] * rays - origin
        s_coord, t_coord = hit @ e1 - dent_center_m[0], hit @ e2 - dent_center_m[1]
        dent = ~silhouette & (s_coord**2 + t_coord**2 < dent_radius_m**2)
        t = np.where(dent, -(plane.d + dent_depth_m) / n_dot_r, t)

    t = t + rng.normal(0.0, noise_m, t.shape) if noise_m > 0 else t
    junk = rng.random(t.shape) < junk_fraction
    t = np.where(junk, rng.uniform(0.1, 1.5, t.shape), t)
    xyz = (t[..., None] * rays).astype(np.float32)
    xyz[rng.random(t.shape) < hole_fraction] = 0.0
    return AnalyticScene(xyz=xyz, silhouette=silhouette, dent=dent, plane=plane, intrinsics=k)


def _ray_box(
    rays: np.ndarray, base: np.ndarray, frame: tuple[np.ndarray, ...], size: tuple[float, ...]
) -> np.ndarray:
    """Ray parameter of the first hit of camera rays with a box on the plane (inf where missed)."""
    lows = np.array([-size[0] / 2, -size[1] / 2, 0.0])
    highs = np.array([size[0] / 2, size[1] / 2, size[2]])
    t_near = np.full(rays.shape[:2], -np.inf)
    t_far = np.full(rays.shape[:2], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, lo, hi in zip(frame, lows, highs, strict=True):
            o = float(axis @ -base)  # the camera origin in the box frame
            r = rays @ axis
            t1, t2 = (lo - o) / r, (hi - o) / r
            t_near = np.maximum(t_near, np.minimum(t1, t2))
            t_far = np.minimum(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_far > 0), t_near, np.inf)
