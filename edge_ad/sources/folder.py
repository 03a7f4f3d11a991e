"""``folder:DIR``: replay an MVTec 3D-AD-layout category folder as a stream of frames, one part each.

Frames carry depth (the z channel of the sample's xyz) and pinhole intrinsics estimated from
the xyz grid by least squares (see :func:`estimate_intrinsics`), so ``Frame.xyz()`` gives back
the recorded point cloud up to the pinhole model. RGB-only folders give frames without depth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.dataset import DatasetSplit, Sample, open_split
from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Frame, Intrinsics
from edge_ad.sources.base import SourceBase, SourceExhausted, SourceInfo, real_sleep, register_source

# Fewer valid points than this cannot pin down four intrinsics robustly.
MIN_POINTS_FOR_INTRINSICS = 100


def estimate_intrinsics(xyz: np.ndarray) -> Intrinsics | None:
    """Pinhole intrinsics that best explain an organized point cloud, or None if too few points.

    For a pinhole camera ``x / z = (u - cx) / fx``: a straight line in the column ``u`` with slope
    ``1 / fx`` and intercept ``-cx / fx``; the same holds for ``y / z`` against the row ``v``. Both
    lines are fitted by least squares over the valid points (z > 0).
    """
    height, width = xyz.shape[:2]
    z = xyz[..., 2]
    valid = np.isfinite(z) & (z > 0)
    if int(valid.sum()) < MIN_POINTS_FOR_INTRINSICS:
        return None
    rows, cols = np.nonzero(valid)
    zv = z[valid].astype(np.float64)
    fit_u = _fit_line(cols.astype(np.float64), xyz[..., 0][valid] / zv)
    fit_v = _fit_line(rows.astype(np.float64), xyz[..., 1][valid] / zv)
    if fit_u is None or fit_v is None:
        return None
    (slope_u, icpt_u), (slope_v, icpt_v) = fit_u, fit_v
    return Intrinsics(width, height, 1.0 / slope_u, 1.0 / slope_v, -icpt_u / slope_u, -icpt_v / slope_v)


def _fit_line(t: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Least-squares ``y = a t + b``; None when ``t`` has no spread or the slope is not positive."""
    if np.ptp(t) == 0:
        return None
    a, b = np.polyfit(t, y, 1)
    return (float(a), float(b)) if a > 0 else None


def nominal_intrinsics(width: int, height: int) -> Intrinsics:
    """A 90-degree pinhole; only used for frames whose depth is entirely missing (xyz stays all zero)."""
    return Intrinsics(width, height, width / 2.0, width / 2.0, (width - 1) / 2.0, (height - 1) / 2.0)


class FolderSource(SourceBase):
    """Replays a dataset split in order; each sample becomes one frame showing one part.

    ``fps`` > 0 paces frames on ``clock`` (frame k is due ``k / fps`` s after the first read);
    0 delivers them as fast as they are read. ``sleep`` waits out the pacing (tests pass one
    that advances a FakeClock).
    """

    def __init__(
        self,
        root: Path,
        split: str = "test",
        fps: float = 0.0,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if fps < 0:
            raise ConfigError(f"folder source {root}: fps must be >= 0, got {fps}")
        self.root = Path(root)
        self.split_name = split
        self.fps = float(fps)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._sleep = sleep if sleep is not None else real_sleep
        self._split: DatasetSplit | None = None
        self._index = 0
        self._start_ns: int | None = None
        self._intrinsics: Intrinsics | None = None

    def _open(self) -> DatasetSplit:
        if self._split is None:
            split = open_split(self.root, self.split_name)
            if len(split) == 0:
                raise DataError(f"folder source: no samples in {self.root / self.split_name}")
            self._split = split
        return self._split

    def start(self) -> None:
        """Open the split and rewind to its first sample."""
        self._open()
        self._index = 0
        self._start_ns = None

    def stop(self) -> None:
        """Nothing to release: samples are read lazily one at a time."""

    def __len__(self) -> int:
        return len(self._open())

    def info(self) -> SourceInfo:
        """Resolution of the first sample; every frame is its own part."""
        height, width = self._open()[0].rgb.shape[:2]
        return SourceInfo(f"folder:{self.root}/{self.split_name}", width, height, self.fps, frame_is_part=True)

    def read(self, timeout_s: float) -> Frame | None:
        """The next sample as a frame; None if pacing makes it due later than ``timeout_s``."""
        split = self._open()
        if self._index >= len(split):
            raise SourceExhausted(f"folder source {self.root}: all {len(split)} samples delivered")
        if self.fps > 0:
            now = self.clock.now_ns()
            if self._start_ns is None:
                self._start_ns = now
            due = self._start_ns + round(self._index * 1e9 / self.fps)
            wait_s = (due - now) / 1e9
            if wait_s > timeout_s:
                self._sleep(timeout_s)
                return None
            self._sleep(wait_s)
        index = self._index
        self._index += 1
        return self._frame(index, split[index])

    def _frame(self, index: int, sample: Sample) -> Frame:
        depth, intrinsics = None, None
        if sample.xyz is not None:
            xyz = sample.xyz  # the reader guarantees it is aligned to (same size as) the colour image
            height, width = sample.rgb.shape[:2]
            depth = np.ascontiguousarray(xyz[..., 2], dtype=np.float32)
            estimate = estimate_intrinsics(xyz)
            # The camera does not change within a dataset: reuse the last good estimate for a
            # sample with too few points (its depth is mostly missing anyway).
            self._intrinsics = estimate or self._intrinsics or nominal_intrinsics(width, height)
            intrinsics = self._intrinsics
        device_ms = index * 1000.0 / self.fps if self.fps > 0 else 0.0
        truth = {
            "part_id": index,
            "label": sample.label,
            "defective": bool(sample.label),
            "defect_type": sample.defect_type,
            "name": sample.name,
            "part_present": True,
        }
        return Frame(sample.rgb, depth, intrinsics, index, device_ms, self.clock.now_ns(), truth)


@register_source("folder")
def open_folder(
    argument: str | None,
    split: str = "test",
    fps: float = 0.0,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
) -> FolderSource:
    """``folder:DIR`` -> FolderSource over DIR's ``split`` (default "test")."""
    if not argument:
        raise ConfigError("camera URI 'folder': expected folder:DIR (an MVTec 3D-AD category folder)")
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise DataError(f"folder source: {root} is not a directory")
    return FolderSource(root, split=split, fps=fps, clock=clock, sleep=sleep)
