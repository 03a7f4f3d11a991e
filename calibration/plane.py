"""Belt plane calibration: fit the empty belt over many frames, find where it is seen, measure its noise.

All valid points of all frames are pooled (a subsample per frame) and fitted once with
:func:`edge_ad.plane.fit_plane`; pooling averages the per-frame depth noise down, which is what
makes the plane good to well under a millimetre. The region of interest is the largest box
(trimmed in from the image border, a line at a time) whose pixels show the belt -- valid depth
lying on the plane -- in nearly every frame. Per-pixel depth noise is the standard deviation of
each pixel's depth over the frames.

Calibration refuses (GeometryError / PlaneFitError, exit 6) rather than store a bad plane: too
little valid depth (belt not in view), a plane that holds too few of the points or scatters too
much (not flat), or points standing clear of it (a part left on the belt).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ad.config import StationConfig, update_station_file
from edge_ad.errors import CameraError, GeometryError, PlaneFitError
from edge_ad.frame import Frame
from edge_ad.geometry import valid_mask
from edge_ad.plane import Plane, fit_plane
from edge_ad.presence import roi_to_pixels
from edge_ad.sources import FrameSource, SourceExhausted
from edge_ad.yaml_edit import write_bytes_atomic

# Points pooled for the fit (spread evenly over the frames): plenty for sub-mm accuracy, fast.
POOLED_POINTS = 20_000


@dataclass(frozen=True)
class PlaneLimits:
    """When a calibration is refused, and how the ROI is found (lengths in metres).

    ``inlier_m``: a point within this distance lies on the belt; ``clear_m``: a point this far
    above it stands on the belt (a part); ``max_rms_m`` defaults to half of ``inlier_m``.
    ``roi_frame_share``: a pixel is belt when it is so in this share of frames; ``roi_line_share``:
    the ROI's border lines must be belt over this share of their length.
    """

    z_min_m: float = 0.05
    z_max_m: float = 5.0
    inlier_m: float = 0.004
    clear_m: float = 0.007
    min_valid_fraction: float = 0.3
    min_inlier_ratio: float = 0.9
    max_rms_m: float | None = None
    max_clear_fraction: float = 0.005
    roi_frame_share: float = 0.9
    roi_line_share: float = 0.95
    min_roi_fraction: float = 0.1


@dataclass(frozen=True, eq=False)
class PlaneCalibration:
    """The result: the belt plane, its ROI (normalised x0, y0, x1, y1) and the per-pixel depth noise.

    ``noise_std_m`` (H, W) float32: std of each pixel's depth over the frames, NaN where fewer than
    two frames had depth. ``inlier_ratio``, ``rms_m`` and ``clear_fraction`` are measured on the
    valid pixels inside the ROI over all frames.
    """

    plane: Plane
    roi: tuple[float, float, float, float]
    noise_std_m: np.ndarray
    rms_m: float
    inlier_ratio: float
    clear_fraction: float
    valid_fraction: float
    n_frames: int
    n_points: int

    @property
    def median_noise_m(self) -> float:
        """Median of the per-pixel depth std inside the ROI (NaN when unknown)."""
        h, w = self.noise_std_m.shape
        x0, y0, x1, y1 = roi_to_pixels(self.roi, w, h)
        window = self.noise_std_m[y0:y1, x0:x1]
        return float(np.nanmedian(window)) if np.isfinite(window).any() else math.nan


def collect_frames(source: FrameSource, count: int, timeout_s: float = 1.0, stall_s: float = 5.0) -> list[Frame]:
    """Read ``count`` frames from a started source; CameraError when it stalls for ``stall_s`` or ends early."""
    frames: list[Frame] = []
    waited = 0.0
    while len(frames) < count:
        try:
            frame = source.read(timeout_s)
        except SourceExhausted:
            if len(frames) >= 2:
                break  # a short recording: use what it holds
            raise CameraError(f"the source ended after {len(frames)} frame(s); plane calibration needs at least 2") from None
        if frame is None:
            waited += timeout_s
            if waited >= stall_s:
                raise CameraError(f"no frame for {waited:.1f} s after {len(frames)} of {count} frames")
            continue
        waited = 0.0
        frames.append(frame)
    return frames


def calibrate_plane(frames: Sequence[Frame], limits: PlaneLimits = PlaneLimits(), seed: int = 0) -> PlaneCalibration:
    """Fit the empty belt seen in ``frames`` (all of one camera, at least 2); see the module docstring."""
    if len(frames) < 2:
        raise GeometryError(f"plane calibration needs at least 2 frames, got {len(frames)}")
    clouds = [_xyz(frame) for frame in frames]
    shape = clouds[0].shape
    for frame, xyz in zip(frames, clouds, strict=True):
        if xyz.shape != shape:
            raise GeometryError(f"frame {frame.frame_number} is {xyz.shape[:2]}, the first frame {shape[:2]}")
    valid = np.stack([valid_mask(xyz, limits.z_min_m, limits.z_max_m) for xyz in clouds])
    valid_fraction = float(valid.mean())
    if valid_fraction < limits.min_valid_fraction:
        raise GeometryError(
            f"belt not visible: only {valid_fraction:.1%} of pixels have depth in "
            f"[{limits.z_min_m}, {limits.z_max_m}] m over {len(frames)} frames, need >= {limits.min_valid_fraction:.0%}"
        )
    plane = _pooled_fit(clouds, valid, limits, seed)
    distance = np.stack([plane.signed_distance(xyz) for xyz in clouds])
    on_belt = valid & (np.abs(distance) < limits.inlier_m)
    roi = _belt_roi(on_belt.mean(axis=0) >= limits.roi_frame_share, limits)
    x0, y0, x1, y1 = roi_to_pixels(roi, shape[1], shape[0])
    inside = valid[:, y0:y1, x0:x1]
    d_inside = distance[:, y0:y1, x0:x1][inside]
    inliers = np.abs(d_inside) < limits.inlier_m
    inlier_ratio = float(inliers.mean())
    rms = float(np.sqrt(np.mean(d_inside[inliers] ** 2)))
    clear = float(np.mean(d_inside > limits.clear_m))
    _check_flat(inlier_ratio, rms, clear, limits)
    return PlaneCalibration(
        plane=plane,
        roi=roi,
        noise_std_m=_depth_std(np.stack([xyz[..., 2] for xyz in clouds]), valid),
        rms_m=rms,
        inlier_ratio=inlier_ratio,
        clear_fraction=clear,
        valid_fraction=valid_fraction,
        n_frames=len(frames),
        n_points=int(valid.sum()),
    )


def _xyz(frame: Frame) -> np.ndarray:
    xyz = frame.xyz()
    if xyz is None:
        raise GeometryError(f"frame {frame.frame_number} has no depth (or no intrinsics): a depth camera is needed")
    return xyz


def _pooled_fit(clouds: list[np.ndarray], valid: np.ndarray, limits: PlaneLimits, seed: int) -> Plane:
    rng = np.random.default_rng(seed)
    per_frame = max(1, POOLED_POINTS // len(clouds))
    parts = []
    for xyz, ok in zip(clouds, valid, strict=True):
        points = xyz[ok]
        if len(points) > per_frame:
            points = points[rng.choice(len(points), size=per_frame, replace=False)]
        parts.append(points)
    fit = fit_plane(
        np.concatenate(parts).astype(np.float64),
        inlier_threshold_m=limits.inlier_m,
        min_inlier_ratio=0.5,  # the stricter ratio is checked inside the ROI below
        max_points=POOLED_POINTS,
        seed=seed,
    )
    return fit.plane


def _check_flat(inlier_ratio: float, rms: float, clear: float, limits: PlaneLimits) -> None:
    if clear > limits.max_clear_fraction:
        raise PlaneFitError(
            f"something stands on the belt: {clear:.2%} of the belt's points lie more than "
            f"{limits.clear_m * 1000:.1f} mm above the fitted plane (allowed {limits.max_clear_fraction:.2%}); "
            "clear the belt and calibrate again"
        )
    if inlier_ratio < limits.min_inlier_ratio:
        raise PlaneFitError(
            f"belt not flat: only {inlier_ratio:.1%} of its points lie within {limits.inlier_m * 1000:.1f} mm "
            f"of the fitted plane, need >= {limits.min_inlier_ratio:.0%} (warped belt, or a part on it?)"
        )
    max_rms = limits.max_rms_m if limits.max_rms_m is not None else limits.inlier_m / 2.0
    if rms > max_rms:
        raise PlaneFitError(
            f"belt not flat enough: RMS distance to the plane {rms * 1000:.2f} mm, allowed {max_rms * 1000:.2f} mm"
        )


def _belt_roi(belt: np.ndarray, limits: PlaneLimits) -> tuple[float, float, float, float]:
    """Trim the image border inward, worst line first, until every border line is mostly belt."""
    h, w = belt.shape
    rows = np.concatenate([np.zeros((h, 1)), np.cumsum(belt, axis=1)], axis=1)  # rows[y, x]: belt pixels left of x
    cols = np.concatenate([np.zeros((1, w)), np.cumsum(belt, axis=0)], axis=0)  # cols[y, x]: belt pixels above y
    x0, y0, x1, y1 = 0, 0, w, h
    while x1 - x0 > 1 and y1 - y0 > 1:
        shares = {
            "top": (rows[y0, x1] - rows[y0, x0]) / (x1 - x0),
            "bottom": (rows[y1 - 1, x1] - rows[y1 - 1, x0]) / (x1 - x0),
            "left": (cols[y1, x0] - cols[y0, x0]) / (y1 - y0),
            "right": (cols[y1, x1 - 1] - cols[y0, x1 - 1]) / (y1 - y0),
        }
        worst = min(shares, key=shares.__getitem__)
        if shares[worst] >= limits.roi_line_share:
            break
        if worst == "top":
            y0 += 1
        elif worst == "bottom":
            y1 -= 1
        elif worst == "left":
            x0 += 1
        else:
            x1 -= 1
    area = (x1 - x0) * (y1 - y0) / (w * h)
    if area < limits.min_roi_fraction:
        raise GeometryError(
            f"belt not visible: the belt fills only {area:.1%} of the image as a box "
            f"(need >= {limits.min_roi_fraction:.0%}); check the camera's view and the depth range"
        )
    # Rounded inward so that the stored box never grows past the belt.
    return (
        math.ceil(x0 / w * 1e4) / 1e4,
        math.ceil(y0 / h * 1e4) / 1e4,
        math.floor(x1 / w * 1e4) / 1e4,
        math.floor(y1 / h * 1e4) / 1e4,
    )


def _depth_std(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel sample std of ``z`` (N, H, W) over the frames where it is valid; NaN below 2 samples."""
    n = valid.sum(axis=0)
    zv = np.where(valid, z, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = zv.sum(axis=0) / n
        var = (np.where(valid, z - mean, 0.0) ** 2).sum(axis=0) / (n - 1)
    return np.where(n >= 2, np.sqrt(var), np.nan).astype(np.float32)


def limits_for_station(station: StationConfig) -> PlaneLimits:
    """PlaneLimits from the station's geometry: its depth range, belt inlier distance and part height."""
    geometry = station.geometry
    return PlaneLimits(
        z_min_m=geometry.z_min_m,
        z_max_m=geometry.z_max_m,
        inlier_m=geometry.plane_inlier_m,
        clear_m=max(geometry.threshold_m, 2.0 * geometry.plane_inlier_m),
    )


def noise_file_name(station_path: Path) -> str:
    """``<station stem>.belt_noise.npy``, next to the station file."""
    return f"{Path(station_path).stem}.belt_noise.npy"


def store_plane_calibration(
    station_path: Path, calibration: PlaneCalibration, *, set_method: bool = True
) -> StationConfig:
    """Write the noise ``.npy`` next to the station file and the plane, ROI and noise file into it.

    ``set_method`` switches ``geometry.method`` to ``calibrated`` (the runtime then uses this
    plane instead of fitting one per frame). Both files are replaced atomically; the station file
    is checked before it is replaced (ConfigError leaves it unchanged).
    """
    station_path = Path(station_path)
    name = noise_file_name(station_path)
    _save_npy_atomic(station_path.parent / name, calibration.noise_std_m)
    plane = calibration.plane
    updates: dict[str, object] = {
        "geometry.plane": {"normal": [round(v, 8) for v in plane.normal], "d": round(plane.d, 8)},
        "geometry.roi": list(calibration.roi),
        "geometry.noise_file": name,
    }
    if set_method:
        updates["geometry.method"] = "calibrated"
    return update_station_file(station_path, updates)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_bytes_atomic(path, buffer.getvalue())
