"""Part shapes of the synthetic line: analytic heightfields over the belt, plus procedural textures.

A part is described in its own frame (``a``, ``b`` in metres from its centre, rotated by its yaw
on the belt) by the height of its top surface above the belt. Every shape is "top profile minus a
rounded rim": ``edge_distance`` says how far inside the footprint a point is, and the rim rounds
the last ``round_m`` of it, leaving a vertical wall of ``height - round_m`` that makes the depth
discontinuity a real sensor sees at a part's silhouette.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_ad.synth_config import SynthConfig

# Colours of typical machined or moulded parts (RGB 0..255): aluminium, brass, red, blue and
# white plastic, green anodised. A dataset picks one product colour, parts jitter around it.
PART_PALETTE = np.array(
    [[170, 172, 178], [181, 150, 80], [185, 52, 45], [55, 95, 170], [215, 212, 200], [70, 140, 90]],
    dtype=np.float64,
)
TEXTURE_SIZE = 256
# Exponent of the box's superellipse footprint: a rectangle with rounded corners.
BOX_EXPONENT = 6.0


@dataclass(frozen=True, eq=False)
class PartSpec:
    """One part: shape, size, pose on the belt and look. Sample it once per part and reuse it across frames.

    ``radius_m`` is the outer radius (box: half length); ``aspect`` is the box's width/length or
    the ring's inner/outer radius ratio. ``texture`` is a (T, T) brightness multiplier laid over
    the part at ``texture_res_m`` metres per texel.
    """

    shape: str
    radius_m: float
    aspect: float
    height_m: float
    round_m: float
    dome_m: float
    yaw_rad: float
    colour: np.ndarray
    specular: float
    texture: np.ndarray
    texture_res_m: float

    @property
    def max_height_m(self) -> float:
        """Highest point of the part above the belt."""
        return self.height_m + self.dome_m

    @property
    def bound_radius_m(self) -> float:
        """Radius of a circle around the centre that contains the whole footprint."""
        if self.shape == "box":
            return self.radius_m * math.hypot(1.0, self.aspect)
        return self.radius_m

    @property
    def flat_width_m(self) -> float:
        """Largest edge distance on the footprint (how far a defect can sit from every edge)."""
        if self.shape == "ring":
            return 0.5 * self.radius_m * (1.0 - self.aspect)
        if self.shape == "box":
            return self.radius_m * self.aspect
        return self.radius_m

    def edge_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Approximate distance inside the footprint's nearest edge (metres; negative outside)."""
        if self.shape == "box":
            half_w = self.radius_m * self.aspect
            rho = (np.abs(a / self.radius_m) ** BOX_EXPONENT + np.abs(b / half_w) ** BOX_EXPONENT) ** (
                1.0 / BOX_EXPONENT
            )
            return (1.0 - rho) * half_w
        r = np.hypot(a, b)
        if self.shape == "ring":
            return np.minimum(self.radius_m - r, r - self.aspect * self.radius_m)
        return self.radius_m - r

    def height(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Height of the top surface above the belt at part coordinates (a, b); 0 off the part."""
        e = self.edge_distance(a, b)
        top = np.full(np.shape(e), self.height_m)
        if self.dome_m > 0:
            top = top + self.dome_m * np.clip(1.0 - (a * a + b * b) / self.radius_m**2, 0.0, 1.0)
        # Quarter-circle rim of radius round_m: full height from round_m inwards.
        inset = np.clip(self.round_m - e, 0.0, self.round_m)
        rim = self.round_m - np.sqrt(np.maximum(self.round_m**2 - inset * inset, 0.0))
        return np.where(e >= 0, top - rim, 0.0)

    def to_local(
        self, s: np.ndarray, t: np.ndarray, centre: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Belt coordinates (s along the belt, t across) to part coordinates for a part at ``centre``."""
        c, sn = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        ds, dt = s - centre[0], t - centre[1]
        return c * ds + sn * dt, -sn * ds + c * dt

    def gradient_to_belt(self, grad_a: np.ndarray, grad_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rotate a height gradient from part axes to belt axes."""
        c, sn = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        return c * grad_a - sn * grad_b, sn * grad_a + c * grad_b

    def describe(self) -> dict[str, object]:
        """JSON-safe summary (no texture) for dataset metadata."""
        return {
            "shape": self.shape,
            "radius_m": round(self.radius_m, 6),
            "aspect": round(self.aspect, 4),
            "height_m": round(self.height_m, 6),
            "yaw_deg": round(math.degrees(self.yaw_rad), 3),
            "colour": [round(float(c), 1) for c in self.colour],
        }


def sample_part(rng: np.random.Generator, config: SynthConfig, base_colour: np.ndarray) -> PartSpec:
    """Draw a part: shape from ``config.part_shapes``, size and height from the config ranges,
    random yaw, colour jittered around the dataset's ``base_colour``, and its own texture."""
    shape = str(config.part_shapes[int(rng.integers(len(config.part_shapes)))])
    radius = 0.5 * rng.uniform(*config.part_diameter_m)
    height = rng.uniform(*config.part_height_m)
    aspect = {"box": rng.uniform(0.55, 0.9), "ring": rng.uniform(0.3, 0.5)}.get(shape, 1.0)
    round_m = min(0.35 * height, rng.uniform(0.0015, 0.004))
    dome = rng.uniform(0.0005, 0.002) if shape == "puck" else 0.0
    colour = np.clip(base_colour * rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=3), 0.0, 255.0)
    texture_res = 1.3 * 2.0 * radius * math.hypot(1.0, aspect if shape == "box" else 0.0) / TEXTURE_SIZE
    return PartSpec(
        shape=shape,
        radius_m=radius,
        aspect=aspect,
        height_m=height,
        round_m=round_m,
        dome_m=dome,
        yaw_rad=rng.uniform(-math.pi, math.pi),
        colour=colour,
        specular=rng.uniform(0.05, 0.25),
        texture=part_texture(rng, TEXTURE_SIZE),
        texture_res_m=texture_res,
    )


def periodic_noise(rng: np.random.Generator, size: int, sigmas: tuple[float, float]) -> np.ndarray:
    """(size, size) float32 smooth noise with unit std that tiles seamlessly.

    Filtering white noise in the Fourier domain makes the texture periodic, so a moving belt can
    wrap it without a seam. ``sigmas`` is the Gaussian blur (rows, columns) in texels.
    """
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    gain = np.exp(-2.0 * math.pi**2 * ((fy * sigmas[0]) ** 2 + (fx * sigmas[1]) ** 2))
    smooth = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(size, size))
    return (smooth / max(float(smooth.std()), 1e-12)).astype(np.float32)


def part_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Brightness multiplier around 1: fine grain, brushed streaks and soft blotches."""
    grain = periodic_noise(rng, size, (0.7, 0.7))
    brushed = periodic_noise(rng, size, (0.6, 14.0))
    blotch = periodic_noise(rng, size, (24.0, 24.0))
    return (1.0 + 0.03 * grain + 0.04 * brushed + 0.04 * blotch).astype(np.float32)


def belt_texture(rng: np.random.Generator, size: int, texel_m: float) -> np.ndarray:
    """Brightness multiplier of the belt: rubber grain, blotches and a fine weave across the belt."""
    grain = periodic_noise(rng, size, (0.8, 0.8))
    blotch = periodic_noise(rng, size, (20.0, 20.0))
    # Weave: stripes every ~2 mm across the belt (rows = belt t); an integer count keeps it periodic.
    stripes = max(1, round(size * texel_m / 0.002))
    weave = np.sin(2.0 * math.pi * stripes * np.arange(size) / size)[:, None]
    return (1.0 + 0.05 * grain + 0.06 * blotch + 0.025 * weave).astype(np.float32)


def sample_texture(texture: np.ndarray, col: np.ndarray, row: np.ndarray, border: int) -> np.ndarray:
    """Bilinear lookup of a 2-D texture at fractional texel coordinates (any array shape)."""
    shape = np.shape(col)
    count = int(np.prod(shape))
    # cv2.remap needs both map sides below 32767, so lay the lookups out as rows of 1024.
    rows = max(1, -(-count // 1024))
    map_x = np.zeros(rows * 1024, dtype=np.float32)
    map_y = np.zeros(rows * 1024, dtype=np.float32)
    map_x[:count] = np.ravel(col)
    map_y[:count] = np.ravel(row)
    out = cv2.remap(
        texture, map_x.reshape(rows, 1024), map_y.reshape(rows, 1024), cv2.INTER_LINEAR, borderMode=border
    )
    return out.reshape(-1)[:count].reshape(shape).astype(np.float64)
