"""Part presence: is there enough foreground inside the region of interest, and is it cut by the edge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ad.errors import ConfigError, GeometryError

FULL_ROI = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Presence:
    """Whether a part is in the region of interest.

    ``area_fraction``: share of ROI pixels in the mask; ``bbox``: (x0, y0, x1, y1) pixel box of the
    mask inside the ROI, end exclusive, None when empty; ``touches_roi_edge``: the part is cut by
    the ROI border (it is still entering or leaving).
    """

    present: bool
    area_fraction: float
    bbox: tuple[int, int, int, int] | None
    touches_roi_edge: bool


def part_presence(
    mask: np.ndarray, roi: tuple[float, ...] = FULL_ROI, min_area_fraction: float = 0.005
) -> Presence:
    """A part is present when at least ``min_area_fraction`` of the ROI is foreground."""
    if mask.ndim != 2:
        raise GeometryError(f"part_presence: expected a (H, W) mask, got shape {mask.shape}")
    x0, y0, x1, y1 = roi_to_pixels(roi, mask.shape[1], mask.shape[0])
    window = mask[y0:y1, x0:x1].astype(bool, copy=False)
    area = float(np.count_nonzero(window)) / window.size
    if not window.any():
        return Presence(False, 0.0, None, False)
    cols = np.flatnonzero(window.any(axis=0))
    rows = np.flatnonzero(window.any(axis=1))
    bbox = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
    touches = bbox[0] == x0 or bbox[1] == y0 or bbox[2] == x1 or bbox[3] == y1
    return Presence(area >= min_area_fraction, area, bbox, touches)


def roi_to_pixels(roi: tuple[float, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """Normalised (x0, y0, x1, y1) to a pixel box (end exclusive, at least one pixel wide)."""
    check_roi(roi)
    x0, y0 = int(np.floor(roi[0] * width)), int(np.floor(roi[1] * height))
    x1, y1 = int(np.ceil(roi[2] * width)), int(np.ceil(roi[3] * height))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def check_roi(roi: tuple[float, ...]) -> None:
    """Raise ConfigError unless ``roi`` is a normalised (x0, y0, x1, y1) box with x0 < x1, y0 < y1."""
    if len(roi) != 4:
        raise ConfigError(f"roi: expected 4 numbers (x0, y0, x1, y1), got {roi!r}")
    x0, y0, x1, y1 = roi
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError(f"roi: expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (normalised), got {roi!r}")
