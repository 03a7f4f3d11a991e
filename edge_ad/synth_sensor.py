"""What the depth camera makes of a rendered :class:`~edge_ad.synth_scene.Surface`.

A stereo / structured-light sensor returns nothing where the surface is seen at a grazing angle,
on the far side of depth jumps (flying pixels are dropped) and where the part hides the surface
from the projector (a band on the side away from it). Depth noise grows with z squared; the
colour camera adds a little noise and quantises to 8 bits.
"""

from __future__ import annotations

import math

import numpy as np

from edge_ad.synth_config import SynthConfig
from edge_ad.synth_parts import PartSpec
from edge_ad.synth_scene import Rig, Surface, pixels_near, segment_near

SHADOW_STEPS = 16
# Depth noise is sigma = k * z^2 with sigma = config.depth_noise_m at this distance.
NOISE_REFERENCE_Z_M = 0.4


def sense(
    rig: Rig,
    surface: Surface,
    invalid: np.ndarray,
    depth_noise: np.ndarray,
    rgb_noise: np.ndarray,
    config: SynthConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The camera's output: (H, W, 3) uint8 RGB and (H, W, 3) float32 xyz with dropouts at (0, 0, 0).

    ``depth_noise`` (H, W) and ``rgb_noise`` (H, W, 3) are standard normal draws, passed in so that
    a scene rendered with and without a defect gets the very same noise.
    """
    k = config.depth_noise_m / NOISE_REFERENCE_Z_M**2
    z = surface.z + k * surface.z**2 * depth_noise
    z[invalid] = 0.0
    xyz = rig.intrinsics.deproject(z.astype(np.float32))
    rgb = np.clip(np.rint(surface.rgb() + config.rgb_noise * rgb_noise), 0, 255).astype(np.uint8)
    return rgb, xyz


def invalid_mask(
    rig: Rig,
    surface: Surface,
    part: PartSpec | None,
    part_xy_m: tuple[float, float] | None,
    config: SynthConfig,
) -> np.ndarray:
    """Pixels a structured-light/stereo sensor leaves empty: grazing surfaces, the far side of
    depth jumps (flying pixels are dropped) and the projector's shadow next to the part."""
    centre = None if part_xy_m is None else rig.foot_coords(part_xy_m)
    z = surface.z
    invalid = surface.view_cos < config.grazing_cos_min
    jump = config.edge_jump_m
    invalid[1:, :] |= z[1:, :] - z[:-1, :] > jump
    invalid[:-1, :] |= z[:-1, :] - z[1:, :] > jump
    invalid[:, 1:] |= z[:, 1:] - z[:, :-1] > jump
    invalid[:, :-1] |= z[:, :-1] - z[:, 1:] > jump
    if part is not None and centre is not None and config.projector_baseline_m > 0:
        invalid.reshape(-1)[_projector_shadow(rig, surface, part, centre)] = True
    return invalid


def _projector_shadow(rig: Rig, surface: Surface, part: PartSpec, centre: tuple[float, float]) -> np.ndarray:
    """Flat indices of surface points the part hides from the projector (``centre``: rig foot coordinates)."""
    top = part.max_height_m * 1.01 + 1e-4
    proj_s, proj_t = float(rig.projector @ rig.axis_s), float(rig.projector @ rig.axis_t)
    proj_h = float(rig.plane.signed_distance(rig.projector))
    # A belt point's line of sight to the projector rises to the part's top within a fraction
    # `reach` of the way; only points whose sight line passes over the part can be shadowed.
    reach = top / proj_h
    idx = pixels_near(
        rig, centre, part.bound_radius_m + reach * (math.hypot(proj_s, proj_t) + rig.belt_reach_m)
    )
    s0, t0 = rig.belt_s.reshape(-1)[idx], rig.belt_t.reshape(-1)[idx]
    near = segment_near(
        s0, t0, s0 + reach * (proj_s - s0), t0 + reach * (proj_t - t0), centre, part.bound_radius_m
    )
    idx = np.union1d(idx[near], np.flatnonzero(surface.part))
    points = rig.rays.reshape(-1, 3)[idx] * surface.z.reshape(-1)[idx, None]
    ps, pt = points @ rig.axis_s, points @ rig.axis_t
    ph = surface.height.reshape(-1)[idx]
    t_max = np.clip((top - ph) / (proj_h - ph), 0.0, 1.0)
    frac = (np.arange(1, SHADOW_STEPS + 1) / SHADOW_STEPS)[:, None] * t_max
    pa, pb = part.to_local(ps, pt, centre)
    da, db = part.to_local(proj_s - ps, proj_t - pt, (0.0, 0.0))
    # 0.2 mm of slack keeps a surface point from shadowing itself through rounding.
    blocked = part.height(pa + frac * da, pb + frac * db) > ph + frac * (proj_h - ph) + 2e-4
    return idx[blocked.any(axis=0)]
