"""The unit of data on the line: one aligned RGB-D capture."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the colour image (depth is aligned to it)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def deproject(self, depth: np.ndarray) -> np.ndarray:
        """Turn a depth map in metres (0 = missing) into an organized point cloud (H, W, 3).

        Missing depth gives the point (0, 0, 0), the MVTec 3D-AD convention.
        """
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth shape {depth.shape} does not match intrinsics {self.height}x{self.width}")
        z = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
        xyz = np.empty((self.height, self.width, 3), dtype=np.float32)
        xyz[..., 0] = z * u[None, :]
        xyz[..., 1] = z * v[:, None]
        xyz[..., 2] = z
        return xyz

    def scaled(self, width: int, height: int) -> Intrinsics:
        """Intrinsics of the same camera after resizing the image to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


@dataclass(frozen=True, eq=False)
class Frame:
    """One capture: colour uint8 (H, W, 3) RGB and depth float32 metres (H, W) aligned to it.

    ``depth`` uses 0 for missing pixels; it is None for RGB-only sources. ``device_timestamp_ms``
    comes from the camera clock, ``arrival_ns`` from the runtime's monotonic clock. ``truth``
    carries ground truth when the source knows it (synthetic line, recorded datasets).
    """

    color: np.ndarray
    depth: np.ndarray | None
    intrinsics: Intrinsics | None
    frame_number: int
    device_timestamp_ms: float
    arrival_ns: int
    truth: Mapping[str, Any] = field(default_factory=dict)

    def xyz(self) -> np.ndarray | None:
        """Organized point cloud in metres from depth and intrinsics, or None without depth."""
        if self.depth is None or self.intrinsics is None:
            return None
        return self.intrinsics.deproject(self.depth)
