"""The belt plane: a robust fit (RANSAC, then least squares on the inliers) and signed distances.

Points are in the camera frame (x right, y down, z forward, metres). A :class:`Plane` keeps its
unit normal pointing toward the camera, so ``signed_distance > 0`` means "between the belt and the
camera" -- where a part sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_ad.errors import GeometryError, PlaneFitError

# A triplet whose sides span less than this sine of an angle is treated as collinear.
_MIN_TRIPLET_SINE = 1e-4
# Least squares on inliers is degenerate when the second singular value is this small vs the first.
_MIN_SPREAD_RATIO = 1e-3
# "Clearly behind the plane" means farther than this many inlier thresholds.
_BEHIND_MARGIN = 3.0
# Hypotheses are scored on this many points: enough to rank planes, a fifth of the cost of 5000.
_SCORE_POINTS = 1000


@dataclass(frozen=True)
class Plane:
    """The plane ``normal . p + d = 0``, with ``normal`` a unit vector pointing toward the camera.

    Construction normalises ``normal`` and flips the sign of ``(normal, d)`` so that ``d >= 0``:
    the camera origin then lies on the positive side, whatever sign the caller used.
    """

    normal: tuple[float, ...]
    d: float

    def __post_init__(self) -> None:
        n = np.asarray(self.normal, dtype=np.float64)
        if n.shape != (3,) or not np.all(np.isfinite(n)) or not math.isfinite(self.d):
            raise GeometryError(
                f"plane: expected a finite 3-vector normal and finite d, got {self.normal!r}, {self.d!r}"
            )
        length = float(np.linalg.norm(n))
        if length < 1e-12:
            raise GeometryError(f"plane: normal {self.normal!r} has zero length")
        d = float(self.d)
        # Re-normalise only when needed so that a round trip through to_dict/from_dict is bit-stable.
        if abs(length - 1.0) > 1e-12:
            n, d = n / length, d / length
        if d < 0 or (d == 0 and n[2] > 0):
            n, d = -n, -d
        object.__setattr__(self, "normal", tuple(float(v) for v in n))
        object.__setattr__(self, "d", float(d))

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance of ``points`` (..., 3) to the plane in metres, positive on the camera side."""
        n = np.asarray(self.normal, dtype=np.float32)
        return (points @ n + np.float32(self.d)).astype(np.float32, copy=False)

    def tilt_deg(self) -> float:
        """Angle in degrees between the plane's normal and the optical axis (0 = facing the camera)."""
        return math.degrees(math.acos(min(1.0, max(-1.0, -self.normal[2]))))

    def angle_to_deg(self, other: Plane) -> float:
        """Angle in degrees between the normals of two planes."""
        cos = abs(float(np.dot(self.normal, other.normal)))
        return math.degrees(math.acos(min(1.0, cos)))


@dataclass(frozen=True)
class PlaneFit:
    """Result of :func:`fit_plane`; ratio and RMS are measured on the points the fit sampled."""

    plane: Plane
    inlier_ratio: float
    rms_m: float
    n_points: int


def fit_plane(
    points: np.ndarray,
    *,
    inlier_threshold_m: float = 0.004,
    min_inlier_ratio: float = 0.25,
    max_points: int = 5000,
    iterations: int = 256,
    min_points: int = 30,
    max_behind_ratio: float = 0.2,
    seed: int = 0,
) -> PlaneFit:
    """Fit the dominant plane of ``points`` (N, 3): RANSAC on a subsample, then SVD on the inliers.

    Deterministic for a given ``seed``. Pass only valid points (see ``geometry.valid_mask``); the
    (0, 0, 0) missing marker is refused. Raises PlaneFitError when there are too few points, they
    are collinear, or no plane holds ``min_inlier_ratio`` of them within ``inlier_threshold_m``.

    The background must be the farthest surface: when more than ``max_behind_ratio`` of the points
    lie clearly behind the dominant plane, that plane is probably a large flat part (or a ledge),
    and treating it as the belt would silently hide the part, so PlaneFitError is raised instead
    (use a calibrated plane for such scenes; pass 1.0 to switch the check off).
    """
    pts = _checked_points(points, min_points)
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), size=max_points, replace=False)]
    sample = pts.astype(np.float64)

    normals, offsets = _hypotheses(sample, rng, iterations)
    # One matrix product scores every hypothesis against a random subset of the sample.
    subset = rng.choice(len(sample), size=min(_SCORE_POINTS, len(sample)), replace=False)
    scored = sample[subset].astype(np.float32)
    counts = np.count_nonzero(np.abs(_distances(scored, normals, offsets)) < inlier_threshold_m, axis=0)
    best = int(np.argmax(counts))
    ratio = counts[best] / len(scored)
    if ratio < min_inlier_ratio:
        raise PlaneFitError(
            f"no dominant plane: best RANSAC plane holds {ratio:.1%} of {len(scored)} points within "
            f"{inlier_threshold_m * 1000:.1f} mm, need >= {min_inlier_ratio:.0%}"
        )
    normal, offset = normals[best], float(offsets[best])
    # Two refits: the least-squares plane picks a slightly better inlier set than the 3-point one.
    for _ in range(2):
        inliers = np.abs(_distances(sample, normal, offset)) < inlier_threshold_m
        if inliers.sum() < 3:
            break
        normal, offset = _least_squares_plane(sample[inliers])
    plane = Plane(tuple(normal), offset)
    distances = _distances(sample, np.asarray(plane.normal), plane.d)
    inliers = np.abs(distances) < inlier_threshold_m
    behind = float(np.mean(distances < -_BEHIND_MARGIN * inlier_threshold_m))
    if behind > max_behind_ratio:
        raise PlaneFitError(
            f"no background plane: {behind:.1%} of {len(sample)} points lie more than "
            f"{_BEHIND_MARGIN * inlier_threshold_m * 1000:.0f} mm behind the dominant plane "
            f"(allowed {max_behind_ratio:.0%}; it holds {inliers.mean():.1%}); it looks like a large "
            "flat part, not the belt -- use a calibrated belt plane for this scene"
        )
    return PlaneFit(
        plane=plane,
        inlier_ratio=float(inliers.mean()),
        rms_m=float(np.sqrt(np.mean(distances[inliers] ** 2))) if inliers.any() else float("nan"),
        n_points=len(points),
    )


def _distances(points: np.ndarray, normals: np.ndarray, offsets: np.ndarray | float) -> np.ndarray:
    """Signed distances of (N, 3) points to one plane (normal (3,)) or to K planes (normals (K, 3)) -> (N, K).

    Written as broadcast multiply-adds rather than a matrix product: BLAS would spin up threads
    for this small product and, on a busy 2-core device, wait for them far longer than it computes.
    """
    normals = np.asarray(normals, dtype=points.dtype)
    x, y, z = points[:, 0, None], points[:, 1, None], points[:, 2, None]
    out = x * normals[..., 0] + y * normals[..., 1] + z * normals[..., 2] + np.asarray(offsets, points.dtype)
    return out if normals.ndim == 2 else out[:, 0]


def _checked_points(points: np.ndarray, min_points: int) -> np.ndarray:
    if not isinstance(points, np.ndarray) or points.ndim != 2 or points.shape[1] != 3:
        shape = getattr(points, "shape", type(points).__name__)
        raise GeometryError(f"fit_plane: expected points of shape (N, 3), got {shape}")
    if len(points) < max(min_points, 3):
        raise PlaneFitError(f"fit_plane: {len(points)} points, need at least {max(min_points, 3)}")
    if not np.all(np.isfinite(points)):
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise GeometryError(
            f"fit_plane: {bad} of {len(points)} points are not finite; filter with valid_mask first"
        )
    missing = int((points == 0).all(axis=1).sum())
    if missing:
        raise GeometryError(
            f"fit_plane: {missing} of {len(points)} points are the (0, 0, 0) missing marker; filter with valid_mask first"
        )
    return points


def _hypotheses(
    sample: np.ndarray, rng: np.random.Generator, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Planes through random point triplets, without the near-collinear ones."""
    idx = rng.integers(0, len(sample), size=(iterations, 3))
    p0, p1, p2 = sample[idx[:, 0]], sample[idx[:, 1]], sample[idx[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    cross = np.cross(e1, e2)
    area = np.linalg.norm(cross, axis=1)
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    good = area > _MIN_TRIPLET_SINE * np.maximum(scale, 1e-300)
    if not good.any():
        raise PlaneFitError(
            f"fit_plane: all {iterations} sampled point triplets are collinear or repeated "
            f"({len(sample)} points); the points do not span a plane"
        )
    normals = cross[good] / area[good, None]
    offsets = -np.einsum("ij,ij->i", normals, p0[good])
    return normals, offsets


def _least_squares_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Total least squares: the normal is the direction of least spread about the centroid."""
    centroid = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - centroid, full_matrices=False)
    if singular[1] <= _MIN_SPREAD_RATIO * singular[0]:
        raise PlaneFitError(
            f"fit_plane: the {len(points)} inlier points are (nearly) collinear "
            f"(singular values {singular[0]:.3g}, {singular[1]:.3g}, {singular[2]:.3g})"
        )
    normal = vt[2]
    return normal, float(-normal @ centroid)
