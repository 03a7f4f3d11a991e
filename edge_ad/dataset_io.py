"""Decode and encode the three dataset file kinds: RGB PNG, xyz float TIFF and gt mask PNG.

Every reader returns arrays in the house convention (RGB uint8, xyz float32 metres with missing
points at (0, 0, 0), gt bool) or raises :class:`DataError` naming the file and what was wrong.
The writers are the exact inverse for arrays already in that convention, so a sample written
with :func:`edge_ad.dataset.write_sample` reads back bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from edge_ad.errors import DataError


def read_rgb(path: Path) -> np.ndarray:
    """Read an 8-bit colour image as (H, W, 3) uint8 RGB.

    Conversions (documented behaviour): a grey image is replicated into three channels; an RGBA
    image loses its alpha channel (no compositing: the stored colour is kept as is). Images with
    more than 8 bits per channel are refused rather than silently rescaled, because the
    normalisation statistics of the model assume 0..255.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"cannot read image {path}: missing, truncated or not an image file")
    if image.dtype != np.uint8:
        raise DataError(
            f"image {path}: expected 8-bit channels, got dtype {image.dtype} (convert it to 8-bit)"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.ascontiguousarray(np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DataError(f"image {path}: unsupported shape {image.shape}, expected grey, RGB or RGBA")


def read_xyz(path: Path) -> np.ndarray:
    """Read an organized point cloud TIFF as (H, W, 3) float32 metres.

    float64 is narrowed to float32. A point with any non-finite coordinate becomes (0, 0, 0), the
    dataset's marker for a missing point, so downstream code has one convention to handle.
    """
    try:
        xyz = tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise DataError(f"cannot read point cloud {path}: {exc}") from exc
    if xyz.size == 0:
        # tifffile returns an empty array (with only a logged warning) when no page can be found.
        raise DataError(
            f"cannot read point cloud {path}: the file holds no image data (truncated or not a TIFF?)"
        )
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise DataError(f"point cloud {path}: expected shape (H, W, 3), got {xyz.shape}")
    if xyz.dtype not in (np.float32, np.float64):
        raise DataError(f"point cloud {path}: expected float32 or float64 coordinates, got {xyz.dtype}")
    return sanitize_xyz(xyz)


def sanitize_xyz(xyz: np.ndarray) -> np.ndarray:
    """Return ``xyz`` as contiguous float32 with non-finite points set to the missing marker (0, 0, 0)."""
    out = np.ascontiguousarray(xyz, dtype=np.float32)
    bad = ~np.isfinite(out).all(axis=2)
    if bad.any():
        out = out.copy() if out is xyz else out
        out[bad] = 0.0
    return out


def read_gt(path: Path) -> np.ndarray:
    """Read a ground-truth mask as (H, W) bool; any non-zero value (in any channel) is a defect.

    MVTec 3D-AD encodes the defect class in the value (e.g. 253/254/255 for the tire), MVTec AD
    uses 255; both become True.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"cannot read mask {path}: missing, truncated or not an image file")
    if mask.ndim == 3:
        return np.ascontiguousarray((mask != 0).any(axis=2))
    return mask != 0


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB as a lossless PNG."""
    _imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_xyz(path: Path, xyz: np.ndarray) -> None:
    """Write (H, W, 3) float32 as a 3-sample float TIFF, the MVTec 3D-AD xyz format."""
    try:
        # photometric="rgb" keeps the three coordinates as contiguous samples of one page, as in
        # MVTec 3D-AD; tifffile would otherwise warn and later default to separate pages.
        tifffile.imwrite(path, xyz, photometric="rgb")
    except OSError as exc:
        raise DataError(f"cannot write point cloud {path}: {exc}") from exc


def write_gt(path: Path, gt: np.ndarray) -> None:
    """Write a bool (or integer, non-zero = defect) mask as an 8-bit PNG with values 0/255."""
    _imwrite(path, np.where(gt != 0, 255, 0).astype(np.uint8))


def _imwrite(path: Path, image: np.ndarray) -> None:
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error as exc:
        raise DataError(f"cannot write image {path}: {exc}") from exc
    if not ok:
        raise DataError(
            f"cannot write image {path}: OpenCV refused the file (check the directory and suffix)"
        )
