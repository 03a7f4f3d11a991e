"""Defects of the synthetic line, placed on the part and applied to a defect-free :class:`Surface`.

A defect lives in part coordinates (so it travels with the part) and changes only the pixels
whose ray hits it: depth-only kinds (dent, bump) move the hit point along the ray and leave the
colour alone, the RGB-only stain changes only the albedo, and crack, missing piece and
contamination change both. Every change has a floor (a dent is at least 40 % of its depth at its
rim, a stain at least 45 % opaque) so that each pixel of the footprint really differs; the
ground truth is then exactly "the pixels that differ from the defect-free render".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_ad.errors import ConfigError
from edge_ad.synth_config import DEFECT_TYPES
from edge_ad.synth_parts import PartSpec
from edge_ad.synth_scene import AMBIENT, DIFFUSE, Rig, Surface

# Stain and contaminant colours (RGB 0..255); the one farthest from the part colour is used so
# that the change is always visible.
STAIN_COLOURS = np.array([[60, 42, 28], [150, 75, 35], [225, 222, 205], [35, 35, 40]], dtype=np.float64)
CONTAMINANT_COLOURS = np.array(
    [[25, 25, 28], [40, 85, 205], [235, 125, 30], [235, 235, 235]], dtype=np.float64
)
MM = 1e-3


@dataclass(frozen=True)
class DefectSpec:
    """One defect in part coordinates: ``centre``, size ``radius_m`` (crack: length), outline and effect.

    ``amplitude_m`` is the height change (negative = into the part); ``colour``/``alpha`` the new
    albedo (``alpha`` is the darkening factor for crack and missing piece); ``harmonics`` shape a
    blob outline; ``path`` is the crack polyline (a0, b0, a1, b1, ...); ``floor_m`` the height a
    missing piece is broken down to.
    """

    kind: str
    small: bool
    centre: tuple[float, float]
    radius_m: float
    aspect: float = 1.0
    angle_rad: float = 0.0
    amplitude_m: float = 0.0
    colour: tuple[float, float, float] | None = None
    alpha: float = 1.0
    harmonics: tuple[float, ...] = ()
    path: tuple[float, ...] = ()
    width_m: float = 0.0
    floor_m: float = 0.0

    def describe(self) -> dict[str, object]:
        """JSON-safe summary for dataset metadata."""
        return {
            "kind": self.kind,
            "small": self.small,
            "centre_m": [round(c, 6) for c in self.centre],
            "size_m": round(2 * self.radius_m if self.kind != "crack" else self.radius_m, 6),
        }


def sample_defect(rng: np.random.Generator, kind: str, part: PartSpec, small_fraction: float) -> DefectSpec:
    """Draw a defect of ``kind`` on ``part``; ``small_fraction`` of them are 2-4 mm across."""
    if kind not in DEFECT_TYPES:
        raise ConfigError(f"unknown defect type {kind!r} (known: {', '.join(DEFECT_TYPES)})")
    small = bool(rng.random() < small_fraction)
    cap = 0.6 * part.flat_width_m
    if kind == "crack":
        length = rng.uniform(2 * MM, 4 * MM) if small else rng.uniform(8 * MM, 22 * MM)
        start = _place(rng, part, lambda e: e >= part.round_m + 1 * MM)
        heading = rng.uniform(-math.pi, math.pi)
        points = [start]
        segments = int(rng.integers(3, 7))
        for _ in range(segments):
            heading += rng.normal(0.0, 0.5)
            last = points[-1]
            points.append(
                (
                    last[0] + length / segments * math.cos(heading),
                    last[1] + length / segments * math.sin(heading),
                )
            )
        return DefectSpec(
            kind,
            small,
            start,
            length,
            amplitude_m=-rng.uniform(1 * MM, 3 * MM),
            alpha=rng.uniform(0.25, 0.45),
            path=tuple(v for p in points for v in p),
            width_m=rng.uniform(0.8 * MM, 1.3 * MM),
        )
    if kind == "missing":
        radius = rng.uniform(1 * MM, 2 * MM) if small else rng.uniform(4 * MM, 9 * MM)
        centre = _place(rng, part, lambda e: (e >= -0.2 * radius) & (e <= 0.3 * radius))
        return DefectSpec(
            kind,
            small,
            centre,
            radius,
            floor_m=part.height_m * rng.uniform(0.3, 0.65),
            alpha=rng.uniform(0.5, 0.65),
        )
    radius = rng.uniform(1 * MM, 2 * MM) if small else min(rng.uniform(2.5 * MM, 7 * MM), max(cap, 2 * MM))
    margin = min(radius + part.round_m + 0.5 * MM, 0.9 * part.flat_width_m)
    centre = _place(rng, part, lambda e: e >= margin)
    angle = rng.uniform(-math.pi, math.pi)
    if kind in ("dent", "bump"):
        depth = rng.uniform(1.5 * MM, 3 * MM) if small else rng.uniform(1.5 * MM, 4 * MM)
        return DefectSpec(
            kind,
            small,
            centre,
            radius,
            aspect=rng.uniform(0.85, 1.0) if small else rng.uniform(0.6, 1.0),
            angle_rad=angle,
            amplitude_m=depth if kind == "bump" else -depth,
        )
    harmonics = tuple(v for _ in range(3) for v in (rng.uniform(0.0, 0.15), rng.uniform(0.0, 2 * math.pi)))
    palette = STAIN_COLOURS if kind == "stain" else CONTAMINANT_COLOURS
    colour = palette[int(np.argmax(np.linalg.norm(palette - part.colour, axis=1)))]
    return DefectSpec(
        kind,
        small,
        centre,
        radius,
        angle_rad=angle,
        amplitude_m=rng.uniform(0.8 * MM, 2.5 * MM) if kind == "contamination" else 0.0,
        colour=(float(colour[0]), float(colour[1]), float(colour[2])),
        alpha=rng.uniform(0.45, 0.75) if kind == "stain" else 1.0,
        harmonics=harmonics,
    )


def apply_defect(rig: Rig, surface: Surface, spec: DefectSpec) -> tuple[Surface, np.ndarray]:
    """A copy of ``surface`` with the defect applied, and the (H, W) bool footprint it changed.

    Only pixels on the part inside the defect's outline change.
    """
    idx = np.flatnonzero(surface.part)
    a, b = surface.a.reshape(-1)[idx], surface.b.reshape(-1)[idx]
    height = surface.height.reshape(-1)[idx]
    inside, dh = _footprint_and_lift(spec, a, b, height)
    idx, dh = idx[inside], dh[inside]
    z, albedo, shade = surface.z.copy(), surface.albedo.copy(), surface.shade.copy()
    # Moving a hit point by dh along the belt normal moves it along its ray by dh / (n . ray).
    z.reshape(-1)[idx] += dh / rig.n_dot_ray.reshape(-1)[idx]
    flat_albedo = albedo.reshape(-1, 3)
    if spec.kind == "stain" and spec.colour is not None:
        flat_albedo[idx] = (1 - spec.alpha) * flat_albedo[idx] + spec.alpha * np.asarray(spec.colour)
    elif spec.kind == "contamination" and spec.colour is not None:
        flat_albedo[idx] = np.asarray(spec.colour)
    elif spec.kind in ("crack", "missing"):
        flat_albedo[idx] *= spec.alpha
    if spec.kind == "missing":
        # The broken face is flat (parallel to the belt), so it takes the belt's shading.
        flat_shade = AMBIENT + DIFFUSE * max(0.0, float(np.asarray(rig.plane.normal) @ rig.light))
        shade.reshape(-1)[idx] = flat_shade * rig.vignette.reshape(-1)[idx]
    footprint = np.zeros(surface.part.shape, dtype=bool)
    footprint.reshape(-1)[idx] = True
    return Surface(
        albedo, shade, surface.glint, z, surface.height, surface.part, surface.a, surface.b, surface.view_cos
    ), footprint


def _footprint_and_lift(
    spec: DefectSpec, a: np.ndarray, b: np.ndarray, height: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which part pixels the defect covers, and the height change there (metres)."""
    da, db = a - spec.centre[0], b - spec.centre[1]
    c, s = math.cos(spec.angle_rad), math.sin(spec.angle_rad)
    u, v = c * da + s * db, -s * da + c * db
    if spec.kind in ("dent", "bump"):
        rho2 = (u / spec.radius_m) ** 2 + (v / (spec.radius_m * spec.aspect)) ** 2
        return rho2 < 1.0, spec.amplitude_m * (1.0 - 0.6 * rho2)
    if spec.kind in ("stain", "contamination"):
        theta = np.arctan2(v, u)
        outline = np.ones_like(theta)
        for k, (amp, phase) in enumerate(
            zip(spec.harmonics[::2], spec.harmonics[1::2], strict=True), start=2
        ):
            outline += amp * np.cos(k * theta + phase)
        rel2 = (u * u + v * v) / (spec.radius_m * outline) ** 2
        return rel2 < 1.0, spec.amplitude_m * (1.0 - 0.5 * rel2)
    if spec.kind == "crack":
        dist = np.full(a.shape, np.inf)
        pts = np.asarray(spec.path).reshape(-1, 2)
        for (a0, b0), (a1, b1) in zip(pts[:-1], pts[1:], strict=True):
            ea, eb = a1 - a0, b1 - b0
            k = np.clip(((a - a0) * ea + (b - b0) * eb) / max(ea * ea + eb * eb, 1e-18), 0.0, 1.0)
            dist = np.minimum(dist, np.hypot(a - a0 - k * ea, b - b0 - k * eb))
        return dist < 0.5 * spec.width_m, np.full(a.shape, spec.amplitude_m)
    # missing: everything above the break height inside the disc is gone.
    inside = (da * da + db * db < spec.radius_m**2) & (height > spec.floor_m + 0.3 * MM)
    return inside, spec.floor_m - height


def _place(
    rng: np.random.Generator, part: PartSpec, accept: Callable[[np.ndarray], np.ndarray]
) -> tuple[float, float]:
    """A point on the part where ``accept(edge_distance)`` holds (the deepest candidate if none does)."""
    for _ in range(8):
        radius = part.bound_radius_m * np.sqrt(rng.random(256))
        angle = rng.uniform(-math.pi, math.pi, 256)
        a, b = radius * np.cos(angle), radius * np.sin(angle)
        e = part.edge_distance(a, b)
        ok = np.flatnonzero(accept(e))
        if ok.size:
            return float(a[ok[0]]), float(b[ok[0]])
    best = int(np.argmax(e))
    return float(a[best]), float(b[best])
