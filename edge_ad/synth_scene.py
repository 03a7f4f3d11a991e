"""Camera, belt and ray casting of the synthetic line.

The camera sits at the origin (x right, y down, z forward) above a slightly tilted belt plane. A
pixel's ray meets the belt at belt coordinates (s, t); a point ``h`` above the belt on the same
ray has belt coordinates (s, t) * (1 - h / d) (d = the camera's distance to the belt), so a part
given as a heightfield is hit by marching h down from the part's top and bisecting the crossing.
Everything is vectorised over the pixels near the part; the per-pixel belt geometry is computed
once per :class:`Rig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_ad.frame import Intrinsics
from edge_ad.plane import Plane
from edge_ad.synth_config import SynthConfig
from edge_ad.synth_parts import PART_PALETTE, PartSpec, belt_texture, sample_texture

BELT_TEXTURE_SIZE = 512
BELT_TEXEL_M = 0.0005
MARCH_STEPS = 16
BISECT_STEPS = 8
AMBIENT = 0.35
DIFFUSE = 0.65


@dataclass(frozen=True, eq=False)
class Rig:
    """The fixed part of a dataset: camera, belt plane, projector, light, belt look and product colour.

    Belt positions are (s, t) metres along ``axis_s`` (the travel direction, image x) and
    ``axis_t`` (across, image y) from the point where the optical axis meets the belt. The
    per-pixel arrays (ray directions with z = 1, belt hit coordinates ``belt_s``/``belt_t``) are
    precomputed so that rendering a frame costs only the work near the part; they are measured
    from the foot of the camera's perpendicular on the belt, where the ray geometry is simplest
    (:meth:`foot_coords` converts).
    """

    intrinsics: Intrinsics
    plane: Plane
    axis_s: np.ndarray
    axis_t: np.ndarray
    projector: np.ndarray
    light: np.ndarray
    belt_colour: np.ndarray
    belt_texture: np.ndarray
    part_colour: np.ndarray
    rays: np.ndarray
    n_dot_ray: np.ndarray
    belt_s: np.ndarray
    belt_t: np.ndarray
    belt_z: np.ndarray
    view: np.ndarray
    vignette: np.ndarray
    belt_view_cos: np.ndarray
    belt_shade: np.ndarray
    belt_reach_m: float
    axis_origin: tuple[float, float]

    def foot_coords(self, part_xy_m: tuple[float, float]) -> tuple[float, float]:
        """Belt position as given by callers (metres from where the optical axis meets the belt, along
        ``axis_s`` and ``axis_t``) to the internal frame centred under the camera."""
        return (float(part_xy_m[0]) + self.axis_origin[0], float(part_xy_m[1]) + self.axis_origin[1])

    def depth_at_height(self, height: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Depth z of the points ``height`` above the belt along the rays of flat pixel indices ``index``."""
        return (height - self.plane.d) / self.n_dot_ray.reshape(-1)[index]

    def describe(self) -> dict[str, object]:
        """JSON-safe summary for dataset metadata."""
        k = self.intrinsics
        return {
            "intrinsics": {
                "width": k.width,
                "height": k.height,
                "fx": k.fx,
                "fy": k.fy,
                "cx": k.cx,
                "cy": k.cy,
            },
            "belt_plane": {"normal": list(self.plane.normal), "d": self.plane.d},
            "belt_tilt_deg": round(self.plane.tilt_deg(), 4),
            "belt_axes": {"s": self.axis_s.tolist(), "t": self.axis_t.tolist()},
            "belt_origin_m": [0.0, 0.0, -self.plane.d / self.plane.normal[2]],
            "projector_m": self.projector.tolist(),
            "part_colour": [round(float(c), 1) for c in self.part_colour],
        }


def sample_rig(rng: np.random.Generator, config: SynthConfig) -> Rig:
    """Draw the camera height, belt tilt (random direction), light, belt look and product colour."""
    w, h = config.width, config.height
    f = 0.5 * w / math.tan(math.radians(config.hfov_deg) / 2.0)
    intrinsics = Intrinsics(width=w, height=h, fx=f, fy=f, cx=(w - 1) / 2.0, cy=(h - 1) / 2.0)
    tilt = math.radians(rng.uniform(*config.belt_tilt_deg))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    normal = np.array(
        [math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), -math.cos(tilt)]
    )
    plane = Plane(
        normal=(float(normal[0]), float(normal[1]), float(normal[2])), d=rng.uniform(*config.camera_height_m)
    )
    # Belt axes: s along the image x direction (the travel direction), t = s x normal (image y).
    axis_s = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    axis_s /= np.linalg.norm(axis_s)
    axis_t = np.cross(axis_s, normal)
    light = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.6, -0.2), -1.0])
    grey = rng.uniform(55.0, 95.0)
    belt_colour = grey * rng.uniform(0.92, 1.08, size=3)
    part_colour = PART_PALETTE[int(rng.integers(len(PART_PALETTE)))] * rng.uniform(0.95, 1.05, size=3)
    texture = belt_texture(rng, BELT_TEXTURE_SIZE, BELT_TEXEL_M)

    u = (np.arange(w) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(h) - intrinsics.cy) / intrinsics.fy
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), axis=2)
    n_dot_ray = rays @ normal
    belt_z = -plane.d / n_dot_ray
    belt_points = rays * belt_z[..., None]
    belt_s, belt_t = belt_points @ axis_s, belt_points @ axis_t
    view = -rays / np.linalg.norm(rays, axis=2, keepdims=True)
    light = light / np.linalg.norm(light)
    radius = np.hypot(u[None, :] * intrinsics.fx / w, v[:, None] * intrinsics.fy / h)
    vignette = 1.0 - 0.25 * radius**2
    # Callers place parts relative to where the optical axis meets the belt (the image centre).
    axis_point = np.array([0.0, 0.0, -plane.d / normal[2]])
    return Rig(
        intrinsics=intrinsics,
        plane=plane,
        axis_s=axis_s,
        axis_t=axis_t,
        projector=np.array([config.projector_baseline_m, 0.0, 0.0]),
        light=light,
        belt_colour=belt_colour,
        belt_texture=texture,
        part_colour=part_colour,
        rays=rays,
        n_dot_ray=n_dot_ray,
        belt_s=belt_s,
        belt_t=belt_t,
        belt_z=belt_z,
        view=view,
        vignette=vignette,
        belt_view_cos=np.abs(view @ normal),
        belt_shade=(AMBIENT + DIFFUSE * max(0.0, float(normal @ light))) * vignette,
        belt_reach_m=float(np.hypot(belt_s, belt_t).max()),
        axis_origin=(float(axis_point @ axis_s), float(axis_point @ axis_t)),
    )


@dataclass(eq=False)
class Surface:
    """The defect-free scene before noise: what each pixel sees, in float64.

    ``albedo`` (H, W, 3) 0..255, ``shade`` (H, W) diffuse light times vignetting, ``glint``
    (H, W) additive specular, ``z`` depth, ``height`` above the belt, ``part`` the silhouette,
    ``a``/``b`` part coordinates of the hit (NaN on the belt), ``view_cos`` |cos| between the
    surface normal and the ray (small = grazing, where a depth sensor returns nothing).
    """

    albedo: np.ndarray
    shade: np.ndarray
    glint: np.ndarray
    z: np.ndarray
    height: np.ndarray
    part: np.ndarray
    a: np.ndarray
    b: np.ndarray
    view_cos: np.ndarray

    def rgb(self) -> np.ndarray:
        """Linear colour 0..255 (float64, unclipped)."""
        return self.albedo * self.shade[..., None] + self.glint[..., None]


def render_surface(
    rig: Rig, part: PartSpec | None, part_xy_m: tuple[float, float] | None, belt_offset_m: float = 0.0
) -> Surface:
    """Ray-cast the belt and (when given) the part at belt position ``part_xy_m``; no noise, no dropout.

    ``belt_offset_m`` is how far the belt has travelled along ``axis_s``: its texture moves with it.
    """
    centre = None if part_xy_m is None else rig.foot_coords(part_xy_m)
    shape = rig.belt_s.shape
    z, view_cos, shade = rig.belt_z.copy(), rig.belt_view_cos.copy(), rig.belt_shade.copy()
    height, glint = np.zeros(shape), np.zeros(shape)
    is_part = np.zeros(shape, dtype=bool)
    a, b = np.full(shape, np.nan), np.full(shape, np.nan)
    albedo = (
        rig.belt_colour
        * sample_texture(
            rig.belt_texture,
            (rig.belt_s - belt_offset_m) / BELT_TEXEL_M,
            rig.belt_t / BELT_TEXEL_M,
            cv2.BORDER_WRAP,
        )[..., None]
    )
    if part is not None and centre is not None:
        idx, hit_h, hit_a, hit_b = _cast_part(rig, part, centre)
        flat = np.unravel_index(idx, shape)
        is_part[flat], height[flat], a[flat], b[flat] = True, hit_h, hit_a, hit_b
        z[flat] = rig.depth_at_height(hit_h, idx)
        normals = _part_normals(rig, part, hit_a, hit_b)
        view = rig.view.reshape(-1, 3)[idx]
        vignette = rig.vignette.reshape(-1)[idx]
        view_cos[flat] = np.abs(np.einsum("nc,nc->n", normals, view))
        shade[flat] = (AMBIENT + DIFFUSE * np.clip(normals @ rig.light, 0.0, None)) * vignette
        half = rig.light + view
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        highlight = np.clip(np.einsum("nc,nc->n", normals, half), 0.0, None) ** 30
        glint[flat] = 255.0 * part.specular * highlight * vignette
        tex = sample_texture(
            part.texture,
            hit_a / part.texture_res_m + part.texture.shape[1] / 2,
            hit_b / part.texture_res_m + part.texture.shape[0] / 2,
            cv2.BORDER_REFLECT,
        )
        albedo[flat] = part.colour * tex[:, None]
    return Surface(albedo, shade, glint, z, height, is_part, a, b, view_cos)


def _cast_part(
    rig: Rig, part: PartSpec, centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the pixels whose ray hits the part, with hit height and part coordinates."""
    d = rig.plane.d
    top = part.max_height_m * 1.01 + 1e-4
    # A ray's trace over the belt runs radially from (s0, t0) at h = 0 to (s0, t0) * (1 - top / d).
    idx = pixels_near(rig, centre, part.bound_radius_m + rig.belt_reach_m * top / d)
    s0, t0 = rig.belt_s.reshape(-1)[idx], rig.belt_t.reshape(-1)[idx]
    near = segment_near(s0, t0, s0 * (1 - top / d), t0 * (1 - top / d), centre, part.bound_radius_m)
    idx, s0, t0 = idx[near], s0[near], t0[near]
    # Part coordinates are affine in the ray's scale factor: local = scale * R q0 - R c.
    ra, rb = part.to_local(s0, t0, (0.0, 0.0))
    rca, rcb = part.to_local(np.float64(centre[0]), np.float64(centre[1]), (0.0, 0.0))
    levels = np.linspace(top, 0.0, MARCH_STEPS)
    scale = (1.0 - levels / d)[:, None]
    heights = part.height(scale * ra - rca, scale * rb - rcb)
    inside = (heights > 0) & (heights >= levels[:, None])
    hit = inside.any(axis=0)
    first = np.argmax(inside, axis=0)[hit]
    idx, ra, rb = idx[hit], ra[hit], rb[hit]
    # Bisect between the last level above the surface and the first one inside the part.
    h_in, h_out = levels[first], levels[first - 1]
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (h_in + h_out)
        mh = part.height((1 - mid / d) * ra - rca, (1 - mid / d) * rb - rcb)
        below = (mh > 0) & (mh >= mid)
        h_in = np.where(below, mid, h_in)
        h_out = np.where(below, h_out, mid)
    return idx, h_in, (1 - h_in / d) * ra - rca, (1 - h_in / d) * rb - rcb


def _part_normals(rig: Rig, part: PartSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unit surface normals (N, 3) in the camera frame from central differences of the heightfield."""
    eps = 2e-4
    grad_a = (part.height(a + eps, b) - part.height(a - eps, b)) / (2 * eps)
    grad_b = (part.height(a, b + eps) - part.height(a, b - eps)) / (2 * eps)
    gs, gt = part.gradient_to_belt(grad_a, grad_b)
    normals = np.asarray(rig.plane.normal)[None, :] - gs[:, None] * rig.axis_s - gt[:, None] * rig.axis_t
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


def segment_near(
    s0: np.ndarray, t0: np.ndarray, s1: np.ndarray, t1: np.ndarray, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """True where segment (s0, t0)-(s1, t1) passes within ``radius`` + 2 mm of ``centre``."""
    ds, dt = s1 - s0, t1 - t0
    length2 = np.maximum(ds * ds + dt * dt, 1e-18)
    k = np.clip(((centre[0] - s0) * ds + (centre[1] - t0) * dt) / length2, 0.0, 1.0)
    return np.hypot(s0 + k * ds - centre[0], t0 + k * dt - centre[1]) < radius + 0.002


def pixels_near(rig: Rig, centre: tuple[float, float], reach: float) -> np.ndarray:
    """Flat indices of pixels whose belt point lies within ``reach`` + 2 mm of ``centre`` (a square test)."""
    reach += 0.002
    inside = (np.abs(rig.belt_s - centre[0]) < reach) & (np.abs(rig.belt_t - centre[1]) < reach)
    return np.flatnonzero(inside)
