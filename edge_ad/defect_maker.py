"""DefectMaker (REB, digest 5.1): synthetic defects = shape x fill, fused into a good image.

Shapes (all start from a random Bezier curve centred on a point of the location mask):

* ``bezier``: the curve drawn as a stroke of random thickness;
* ``scar``: a thick curve clipped to a long thin rotated rectangle (CutPaste-scar's "scar");
* ``clump``: a thick curve eroded with a random ellipse and cut by random lines into pieces.

Fills: ``noise`` (per-channel mean in [0, 255] plus uniform noise of a random range) and
``cutpaste`` (the same shape's region, shifted, from another good image, or from this one).
The fill gets a colour jitter (brightness, contrast, per-channel gain), then is fused by pasting
or by blending with a weight in [blend_min, 1] (the REB code's [0.5, 1]).

Location: the shape is intersected with a location mask. REB uses an unsupervised saliency
model (EDN), which we do not have; the part's foreground from the depth (``edge_ad.geometry``) is
our saliency, and without depth the whole image is (REB's rule for textures); see
:func:`defect_location`.

The returned mask is exactly the set of pixels whose value changed (a blended or noise pixel that
happens to round to its old value is not in it); the label indexes :data:`CLASSES` (0 = normal).
Everything is drawn from the numpy Generator given, so a seed reproduces the defect. numpy and
OpenCV only: the device side (``edge-ad calibrate threshold``) uses this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_ad.errors import DataError
from edge_ad.geometry import ForegroundConfig, extract_foreground

SHAPES = ("bezier", "scar", "clump")
FILLS = ("noise", "cutpaste")
# Class 0 is the normal image; classes 1..6 are shape x fill in this order (the 7-class SSL task).
CLASSES = ("normal", *(f"{shape}-{fill}" for shape in SHAPES for fill in FILLS))
_TRIES = 20


@dataclass(frozen=True)
class DefectMakerConfig:
    """Sizes relative to the image's shorter side; ranges are (low, high) drawn uniformly."""

    extent: tuple[float, float] = (0.08, 0.3)  # side of the box holding the curve's control points
    thickness: tuple[float, float] = (0.01, 0.04)  # bezier stroke
    clump_thickness: tuple[float, float] = (0.05, 0.1)
    scar_width: tuple[float, float] = (0.02, 0.05)  # the thin rectangle of a scar
    noise_range: tuple[float, float] = (10.0, 60.0)  # +- fluctuation around the noise mean
    blend_min: float = 0.5  # fusion weight in [blend_min, 1]; REB's code: 0.5
    paste_probability: float = 0.5  # pasting (weight 1) vs blending
    jitter: float = 0.1  # colour jitter of the fill (REB: 0.1)

    def __post_init__(self) -> None:
        for name in ("extent", "thickness", "clump_thickness", "scar_width", "noise_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise DataError(f"DefectMakerConfig.{name}: need 0 < low <= high, got {(low, high)}")
        if not 0.0 < self.blend_min <= 1.0:
            raise DataError(f"DefectMakerConfig.blend_min: must be in (0, 1], got {self.blend_min}")
        if not 0.0 <= self.paste_probability <= 1.0 or not 0.0 <= self.jitter < 1.0:
            raise DataError("DefectMakerConfig: paste_probability in [0, 1] and jitter in [0, 1) expected")


@dataclass(frozen=True, eq=False)
class SyntheticDefect:
    """The defective image (uint8 H x W x 3), the bool mask of changed pixels and the class."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    shape: str
    fill: str

    @property
    def name(self) -> str:
        """The class name, e.g. ``scar-cutpaste``."""
        return CLASSES[self.label]


def class_label(shape: str, fill: str) -> int:
    """Index of ``shape``-``fill`` in :data:`CLASSES`; DataError for unknown names."""
    name = f"{shape}-{fill}"
    if name not in CLASSES:
        raise DataError(f"unknown defect class {name!r}; shapes {', '.join(SHAPES)}, fills {', '.join(FILLS)}")
    return CLASSES.index(name)


def defect_location(xyz: np.ndarray | None, foreground: ForegroundConfig | None) -> np.ndarray | None:
    """Where defects may go: the part's (ungrown) foreground from the point cloud, or None (whole image).

    None also when the frame shows no part: a defect on the empty belt would teach nothing.
    """
    if xyz is None or foreground is None:
        return None
    mask = extract_foreground(xyz, foreground).raw_mask
    return mask if mask.any() else None


def bezier_points(control: np.ndarray, samples: int = 64) -> np.ndarray:
    """Points (samples, 2) on the Bezier curve of ``control`` (k, 2) by de Casteljau's algorithm."""
    t = np.linspace(0.0, 1.0, samples)[:, None, None]
    points = np.broadcast_to(control[None], (samples, *control.shape)).astype(np.float64)
    while points.shape[1] > 1:
        points = (1.0 - t) * points[:, :-1] + t * points[:, 1:]
    return points[:, 0]


def make_defect(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    location: np.ndarray | None = None,
    source: np.ndarray | None = None,
    shape: str | None = None,
    fill: str | None = None,
    config: DefectMakerConfig | None = None,
) -> SyntheticDefect:
    """A random defect of ``shape`` x ``fill`` (None: drawn uniformly) inside ``location`` of ``image``.

    ``source``: the good image CutPaste fills are cut from (another part; default ``image``
    itself), resized to ``image`` when its size differs. DataError for a malformed image or an
    empty location, or when no visible defect could be made.
    """
    config = config or DefectMakerConfig()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"make_defect: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if location is not None:
        location = np.asarray(location, bool)
        if location.shape != (height, width):
            raise DataError(f"make_defect: location {location.shape} does not match the image {(height, width)}")
        if not location.any():
            raise DataError("make_defect: the location mask is empty")
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    fill = fill or FILLS[int(rng.integers(len(FILLS)))]
    label = class_label(shape, fill)
    source = image if source is None else _fit_source(source, (height, width))
    for _ in range(_TRIES):
        region = _shape_mask(shape, (height, width), rng, location, config)
        if location is not None:
            region &= location
        if not region.any():
            continue
        fused = _fuse(image, _fill(fill, image, source, region, rng, config), region, rng, config)
        changed = np.any(fused != image, axis=2)
        if changed.any():
            return SyntheticDefect(fused, changed, label, shape, fill)
    raise DataError(f"make_defect: no visible {shape}-{fill} defect after {_TRIES} tries (location too small?)")


def random_defect_or_normal(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    location: np.ndarray | None = None,
    source: np.ndarray | None = None,
    config: DefectMakerConfig | None = None,
) -> SyntheticDefect:
    """One sample of the 7-class task: each class (normal included) with probability 1/7."""
    label = int(rng.integers(len(CLASSES)))
    if label == 0:
        return SyntheticDefect(image.copy(), np.zeros(image.shape[:2], bool), 0, "none", "none")
    shape, fill = CLASSES[label].split("-")
    return make_defect(image, rng, location=location, source=source, shape=shape, fill=fill, config=config)


def _fit_source(source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
        raise DataError(f"make_defect: source must be uint8 (H, W, 3), got {source.dtype} {source.shape}")
    if source.shape[:2] == size:
        return source
    return cv2.resize(source, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], scale: float = 1.0) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) * scale


def _centre(rng: np.random.Generator, location: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """A random pixel (x, y) of the location mask (anywhere without one)."""
    if location is None:
        return np.array([rng.uniform(0, size[1]), rng.uniform(0, size[0])])
    ys, xs = np.nonzero(location)
    pick = int(rng.integers(len(xs)))
    return np.array([xs[pick] + 0.5, ys[pick] + 0.5])


def _curve(rng: np.random.Generator, centre: np.ndarray, extent: float) -> np.ndarray:
    """Integer polyline (samples, 1, 2) of a cubic Bezier with control points in a box around ``centre``."""
    control = centre + rng.uniform(-0.5, 0.5, (4, 2)) * extent
    return np.round(bezier_points(control)).astype(np.int32)[:, None, :]


def _stroke(size: tuple[int, int], curve: np.ndarray, thickness: float) -> np.ndarray:
    canvas = np.zeros(size, np.uint8)
    cv2.polylines(canvas, [curve], isClosed=False, color=1, thickness=max(1, round(thickness)))
    return canvas.astype(bool)


def _shape_mask(
    shape: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    location: np.ndarray | None,
    config: DefectMakerConfig,
) -> np.ndarray:
    side = float(min(size))
    centre = _centre(rng, location, size)
    extent = _uniform(rng, config.extent, side)
    if shape == "bezier":
        return _stroke(size, _curve(rng, centre, extent), _uniform(rng, config.thickness, side))
    thick = _uniform(rng, config.clump_thickness, side)
    region = _stroke(size, _curve(rng, centre, extent), thick)
    if shape == "scar":
        # The thin rectangle: long side = extent, short side = scar width, random angle, same centre.
        width = _uniform(rng, config.scar_width, side)
        angle = float(rng.uniform(0.0, 180.0))
        box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (extent, width), angle))
        rect = np.zeros(size, np.uint8)
        cv2.fillPoly(rect, [np.round(box).astype(np.int32)], 1)
        return region & rect.astype(bool)
    # clump: erode with a random ellipse, then cut into pieces by a few random thin lines.
    radius = max(1, round(thick * rng.uniform(0.1, 0.3)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    eroded = cv2.erode(region.astype(np.uint8), kernel)
    if not eroded.any():
        eroded = region.astype(np.uint8)
    cuts = np.zeros(size, np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        angle = rng.uniform(0.0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)]) * extent
        point = centre + rng.uniform(-0.4, 0.4, 2) * extent
        ends = np.round([point - direction, point + direction]).astype(np.int32)
        cv2.line(cuts, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[1]), 1, max(2, round(side / 50)))
    return eroded.astype(bool) & ~cuts.astype(bool)


def _fill(
    fill: str,
    image: np.ndarray,
    source: np.ndarray,
    region: np.ndarray,
    rng: np.random.Generator,
    config: DefectMakerConfig,
) -> np.ndarray:
    """The fill colour of every pixel (H, W, 3) float32 (only ``region`` is used), colour-jittered."""
    height, width = image.shape[:2]
    if fill == "noise":
        mean = rng.uniform(0.0, 255.0, 3)
        spread = _uniform(rng, config.noise_range)
        values = mean + rng.uniform(-spread, spread, (height, width, 3))
    else:
        # Shift the source so the region's box lands on another place of it (never on itself).
        ys, xs = np.nonzero(region)
        box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        for _ in range(_TRIES):
            top = int(rng.integers(0, max(1, height - box_h + 1)))
            left = int(rng.integers(0, max(1, width - box_w + 1)))
            dy, dx = top - ys.min(), left - xs.min()
            if dy or dx or source is not image:
                break
        values = np.roll(source.astype(np.float32), (-dy, -dx), axis=(0, 1))
    return _jitter(values.astype(np.float32), rng, config.jitter)


def _jitter(values: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and per-channel gain, each within +-amount."""
    if amount <= 0:
        return values
    brightness = 1.0 + rng.uniform(-amount, amount)
    contrast = 1.0 + rng.uniform(-amount, amount)
    gain = 1.0 + rng.uniform(-amount, amount, 3)
    mean = values.mean()
    return ((values - mean) * contrast + mean) * brightness * gain.astype(np.float32)


def _fuse(
    image: np.ndarray,
    fill: np.ndarray,
    region: np.ndarray,
    rng: np.random.Generator,
    config: DefectMakerConfig,
) -> np.ndarray:
    """Paste (weight 1) or blend (weight in [blend_min, 1]) the fill into ``region``."""
    weight = 1.0 if rng.uniform() < config.paste_probability else float(rng.uniform(config.blend_min, 1.0))
    out = image.astype(np.float32)
    out[region] = weight * fill[region] + (1.0 - weight) * out[region]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
