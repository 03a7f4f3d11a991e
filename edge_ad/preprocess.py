"""THE preprocessing path: one implementation for training, INT8 calibration, evaluation and the line.

A sample (rgb uint8 (H, W, 3) and, when there is depth, xyz float32 (H, W, 3) metres) becomes the
model's three inputs, following AST (Sec. 4.2.2):

- ``image`` (3, S, S): RGB resized (area when shrinking, bilinear otherwise), /255, mean/std.
- ``mask`` (1, D, D): the undilated foreground of ``geometry.extract_foreground`` resized
  bilinearly to D and binarised with "> 0" (AST), then grown by a ``mask_dilate_px`` square
  (AST: 8x8 at 192). Growing once, at D, keeps the margin independent of the camera resolution.
- ``depth`` (1, D, D): the dense hole-filled depth, optionally median-filtered at full resolution
  (``depth_median_px``: removes sensor speckle before it is averaged into the grid, keeps the
  part's edges), resized to D (area when shrinking: it averages sensor noise where AST's
  bilinear would alias), 0 outside ``mask``, times ``depth_unit_scale`` (100: centimetres, as
  in AST). ``depth_reference`` says what the depth is measured from:

  * ``foreground_mean`` (AST): camera z minus its mean over ``mask``. A tilted belt or camera
    adds a ramp across the part, and the belt ring inside the grown mask sits far below it.
  * ``background``: height above the foreground method's background (the fitted belt plane,
    the calibrated plane or AST's corner surface), camera side positive. Tilt-free, and the belt
    ring reads 0 like everything outside ``mask``.
  * ``part_top``: that height minus the part's top level (median height of the ungrown
    foreground), softly saturated at ``depth_clip_m`` (c * tanh(h / c)) and not zeroed outside
    ``mask`` (the belt reads about -c there, as inside). Flat tops read 0 and walls a step of
    about c whatever the part's height, so the model learns surface detail (dents, bumps)
    instead of the spread of part heights, which otherwise dominates its anomaly score.

Without xyz (RGB-only data) the depth is 0 and the mask is 1 everywhere with ``has_mask`` False;
that is only allowed in mode "rgb", so a depth model never runs on silent zeros.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from edge_ad._fields import check_range, coerce_fields
from edge_ad.errors import ConfigError, DataError, GeometryError
from edge_ad.geometry import (
    ForegroundConfig,
    ForegroundResult,
    dilate_mask,
    extract_foreground,
    fill_holes,
    valid_mask,
)
from edge_ad.typed_data import load_dataclass, to_plain

PreprocessMode = Literal["rgb", "depth", "rgbd"]
DepthReference = Literal["foreground_mean", "background", "part_top"]
# cv2.medianBlur filters float32 images only with these apertures (0: no filtering).
MEDIAN_SIZES = (0, 3, 5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """Every parameter of the preprocessing; stored in run configs and bundle manifests.

    ``depth_size`` is the feature grid times the pixel-unshuffle factor (e.g. 16 x 8 = 128);
    ``foreground`` None treats the whole image as foreground (no mask aggregation). ``mode`` names
    the inputs the model uses; all three arrays are produced either way, but "depth" and "rgbd"
    refuse a sample without xyz. ``mask_dilate_px`` is the side of the growing square at D.
    ``depth_reference`` "background" needs a ``foreground``; ``depth_median_px`` is 0, 3 or 5.
    The defaults are AST's (MVTec 3D-AD compatible); ``ast-edge`` sets its own.
    """

    image_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    mode: PreprocessMode = "rgbd"
    depth_size: int = 128
    mask_dilate_px: int = 8
    foreground: ForegroundConfig | None = field(default_factory=ForegroundConfig)
    depth_unit_scale: float = 100.0
    depth_reference: DepthReference = "foreground_mean"
    depth_median_px: int = 0
    depth_clip_m: float = 0.0

    def __post_init__(self) -> None:
        coerce_fields(self)
        owner = "PreprocessConfig"
        check_range(owner, "image_size", self.image_size, low=1)
        check_range(owner, "depth_size", self.depth_size, low=1)
        check_range(owner, "mask_dilate_px", self.mask_dilate_px, low=0)
        check_range(owner, "depth_unit_scale", self.depth_unit_scale, low=0.0, low_open=True)
        if self.depth_median_px not in MEDIAN_SIZES:
            raise ConfigError(
                f"{owner}.depth_median_px: expected one of {list(MEDIAN_SIZES)}, got {self.depth_median_px}"
            )
        check_range(owner, "depth_clip_m", self.depth_clip_m, low=0.0)
        if self.depth_reference != "foreground_mean" and self.foreground is None:
            raise ConfigError(
                f"{owner}.depth_reference: {self.depth_reference!r} needs a foreground config "
                "(a background to measure from)"
            )
        for name in ("mean", "std"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"{owner}.{name}: expected 3 values (R, G, B), got {getattr(self, name)!r}")
        for channel, value in enumerate(self.std):
            check_range(owner, f"std[{channel}]", value, low=0.0, low_open=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (lists, nested foreground dict or None)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: object, path: str = "preprocess") -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types raise ConfigError naming ``path``."""
        return load_dataclass(cls, data, error=ConfigError, path=path)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (a cache key for extracted features)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """Model inputs for one sample: image (3, S, S), depth (1, D, D), mask (1, D, D), all float32.

    ``has_mask`` is False when the whole image counts as foreground (no xyz, or no foreground
    config); ``foreground`` keeps the full-resolution geometry for heatmaps and part presence.
    """

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    has_mask: bool
    foreground: ForegroundResult | None


def preprocess(
    rgb: np.ndarray, xyz: np.ndarray | None, config: PreprocessConfig, foreground: ForegroundResult | None = None
) -> Preprocessed:
    """Turn one RGB(-D) sample into model inputs (see the module docstring for each step).

    ``foreground``: :func:`extract_foreground` of this ``xyz`` with ``config.foreground``, when the
    caller already has it (the line finds parts on every frame but models only the best one).
    Raises DataError for malformed inputs, GeometryError / PlaneFitError for unusable depth.
    An empty foreground (no part in view) gives an all-zero mask and depth with ``has_mask`` True.
    """
    _check_rgb(rgb)
    # Resize in float so area averaging is not rounded back to 8 bits.
    image = _normalise(_resize(rgb.astype(np.float32), config.image_size), config)
    size = config.depth_size
    if xyz is None:
        if config.mode != "rgb":
            raise DataError(f"preprocess: mode {config.mode!r} needs xyz depth, but the sample has none")
        depth = np.zeros((1, size, size), np.float32)
        return Preprocessed(image, depth, np.ones((1, size, size), np.float32), False, None)
    _check_xyz(xyz, rgb.shape[:2])

    if config.foreground is None:
        result = None
        z_dense = _dense_depth_without_foreground(xyz)
        mask = np.ones((size, size), bool)
    else:
        result = foreground if foreground is not None else extract_foreground(xyz, config.foreground)
        z_dense = result.z_filled
        # AST: bilinear downsampling, then any overlap with the part counts, then an 8x8 growth.
        overlap = cv2.resize(result.raw_mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        mask = dilate_mask(overlap > 0, config.mask_dilate_px)

    if config.depth_reference != "foreground_mean" and result is not None:
        z_dense = _height_from_reference(result, config)
    if config.depth_median_px:
        z_dense = cv2.medianBlur(np.ascontiguousarray(z_dense, dtype=np.float32), config.depth_median_px)
    depth = _resize(z_dense, size)
    if mask.any():
        if config.depth_reference == "foreground_mean":
            depth = depth - depth[mask].mean()
        depth = depth * np.float32(config.depth_unit_scale)
        if config.depth_reference != "part_top":
            # AST zeroes the outside; relative to the part's top the belt is not 0 but about
            # -depth_clip_m, and zeroing it would put a false step at the mask border.
            depth[~mask] = 0.0
    else:
        depth = np.zeros_like(depth)
    if not np.all(np.isfinite(depth)):
        raise GeometryError(f"preprocess: depth has {int((~np.isfinite(depth)).sum())} non-finite values")
    return Preprocessed(
        image=image,
        depth=np.ascontiguousarray(depth[None], dtype=np.float32),
        mask=np.ascontiguousarray(mask[None], dtype=np.float32),
        has_mask=result is not None,
        foreground=result,
    )


def to_model_inputs(items: list[Preprocessed]) -> dict[str, np.ndarray]:
    """Stack samples into the model's batch: {"image": (N,3,S,S), "depth": (N,1,D,D), "mask": (N,1,D,D)}."""
    if not items:
        raise DataError("to_model_inputs: no samples to stack")
    batch = {}
    for name in ("image", "depth", "mask"):
        shapes = {getattr(item, name).shape for item in items}
        if len(shapes) != 1:
            raise DataError(f"to_model_inputs: {name} shapes differ across samples: {sorted(shapes)}")
        batch[name] = np.ascontiguousarray(
            np.stack([getattr(item, name) for item in items]), dtype=np.float32
        )
    return batch


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize an (h, w) map to ``size`` = (H, W), float32; for pixel metrics and heatmaps."""
    if anomaly_map.ndim != 2:
        raise DataError(f"resize_map: expected an (h, w) map, got shape {anomaly_map.shape}")
    height, width = size
    if height < 1 or width < 1:
        raise DataError(f"resize_map: target size must be positive, got {size}")
    out = cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out, dtype=np.float32)


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """Square resize: area averaging when shrinking (no aliasing), bilinear when enlarging."""
    shrinking = size <= array.shape[0] and size <= array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(array, (size, size), interpolation=interpolation)


def _height_from_reference(result: ForegroundResult, config: PreprocessConfig) -> np.ndarray:
    """Height above the background ("background") or above the part's top level ("part_top").

    The top level is the median height of the ungrown foreground, so the flat top reads 0 whatever
    the part's height. ``depth_clip_m`` then saturates softly (c * tanh(h / c)): a wall or the
    belt around a tall part reads about -c, like around a low one, instead of scaling with height.
    """
    height = result.height_m
    if config.depth_reference == "part_top" and result.raw_mask.any():
        height = height - np.float32(np.median(height[result.raw_mask]))
    if config.depth_clip_m > 0:
        clip = np.float32(config.depth_clip_m)
        height = clip * np.tanh(height / clip)
    return height.astype(np.float32)


def _normalise(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    scaled = rgb / np.float32(255.0)
    scaled = (scaled - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)


def _dense_depth_without_foreground(xyz: np.ndarray) -> np.ndarray:
    """Hole-filled z for whole-image foreground; what the passes cannot reach gets the mean depth."""
    valid = valid_mask(xyz)
    if not valid.any():
        raise GeometryError(f"preprocess: no valid depth in the {xyz.shape[1]}x{xyz.shape[0]} point cloud")
    z = fill_holes(xyz[..., 2], valid)
    z[z <= 0] = z[valid].mean()
    return z


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise DataError(f"preprocess: rgb must be uint8 (H, W, 3), got {dtype} with shape {shape}")


def _check_xyz(xyz: np.ndarray, rgb_hw: tuple[int, ...]) -> None:
    if not isinstance(xyz, np.ndarray) or xyz.ndim != 3 or xyz.shape[2] != 3 or xyz.dtype.kind != "f":
        shape = getattr(xyz, "shape", None)
        dtype = getattr(xyz, "dtype", type(xyz).__name__)
        raise DataError(f"preprocess: xyz must be float (H, W, 3) metres, got {dtype} with shape {shape}")
    if xyz.shape[:2] != rgb_hw:
        raise DataError(
            f"preprocess: xyz is {xyz.shape[1]}x{xyz.shape[0]} but rgb is {rgb_hw[1]}x{rgb_hw[0]}"
        )
