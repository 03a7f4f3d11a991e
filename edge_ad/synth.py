"""Procedural RGB-D conveyor generator: single scenes and whole MVTec 3D-AD style datasets.

:func:`render_scene` draws one camera frame of a part on a tilted belt (or the empty belt) with
depth noise that grows with distance, dropouts at depth jumps, grazing surfaces and the
projector's shadow, and optionally a defect with its exact ground-truth mask.
:func:`generate_dataset` writes ``<out>/<category>/{train,validation}/good`` and
``test/<type>`` through :func:`edge_ad.dataset.write_sample`, plus ``meta.json`` (seed, config,
camera intrinsics and the true belt plane).

Randomness is split into independent streams (rig, part, sensor noise, defect) derived from one
seed, so a scene rendered with and without a defect is identical outside the defect. There is no
global state: the same seed and config give bit-identical output.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.dataset import GOOD, write_sample
from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Intrinsics
from edge_ad.plane import Plane
from edge_ad.progress import track
from edge_ad.synth_config import DEFECT_TYPES, DEPTH_ONLY_DEFECTS, PART_SHAPES, RGB_ONLY_DEFECTS, SynthConfig
from edge_ad.synth_defects import DefectSpec, apply_defect, sample_defect
from edge_ad.synth_parts import PartSpec, sample_part
from edge_ad.synth_scene import Rig, render_surface, sample_rig
from edge_ad.synth_sensor import invalid_mask, sense

__all__ = [
    "DEFECT_TYPES",
    "DEPTH_ONLY_DEFECTS",
    "GENERATOR_VERSION",
    "PART_SHAPES",
    "RGB_ONLY_DEFECTS",
    "DefectSpec",
    "PartSpec",
    "Rig",
    "SynthConfig",
    "SynthScene",
    "SynthSummary",
    "generate_dataset",
    "load_meta",
    "render_scene",
    "sample_defect",
    "sample_part",
    "sample_rig",
    "dataset_rig",
]

GENERATOR_VERSION = "1"
META_FILE = "meta.json"
# A defect must change at least this many pixels; otherwise another placement is drawn.
MIN_DEFECT_PIXELS = 3
DEFECT_ATTEMPTS = 20
_SPLIT_KEYS = {"train": 0, "validation": 1, "test": 2}
DEFAULT_CONFIG = SynthConfig()


@dataclass(frozen=True, eq=False)
class SynthScene:
    """One rendered frame with its ground truth.

    ``rgb`` (H, W, 3) uint8; ``xyz`` (H, W, 3) float32 metres, missing = (0, 0, 0);
    ``object_mask`` the part's true silhouette (before dropout); ``gt`` the defect pixels
    (exactly those that differ from the defect-free render); ``plane`` the true belt plane.
    """

    rgb: np.ndarray
    xyz: np.ndarray
    object_mask: np.ndarray
    gt: np.ndarray
    intrinsics: Intrinsics
    plane: Plane
    part_shape: str | None
    defect: str | None
    part_xy_m: tuple[float, float] | None = None
    part: PartSpec | None = None
    defect_spec: DefectSpec | None = None

    @property
    def depth(self) -> np.ndarray:
        """(H, W) float32 depth in metres, 0 where missing (the camera's view of ``xyz``)."""
        return self.xyz[..., 2]

    @property
    def valid(self) -> np.ndarray:
        """(H, W) bool: pixels with a depth measurement."""
        return self.xyz[..., 2] > 0


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` wrote: ``counts[split][type]``, wall time and the category folder."""

    out: Path
    seed: int
    counts: dict[str, dict[str, int]]
    seconds: float
    total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum(n for split in self.counts.values() for n in split.values()))


def render_scene(
    rng: np.random.Generator | int,
    config: SynthConfig = DEFAULT_CONFIG,
    part_xy_m: tuple[float, float] | None = (0.0, 0.0),
    defect: str | None = None,
    *,
    rig: Rig | None = None,
    part: PartSpec | None = None,
    defect_spec: DefectSpec | None = None,
    belt_offset_m: float = 0.0,
) -> SynthScene:
    """Render one frame: a part centred at ``part_xy_m`` on the belt (None = empty belt).

    ``part_xy_m`` is in belt coordinates: metres along ``Rig.axis_s`` (image x, the travel
    direction) and ``Rig.axis_t`` from where the optical axis meets the belt (the image centre).
    ``rig`` (camera + belt), ``part`` and the defect's placement are drawn from ``rng`` when not
    given; a moving-line source passes one rig, one part (and ``defect_spec``, e.g. a previous
    scene's) per passing object and the belt's travel along ``axis_s`` in ``belt_offset_m``.
    ``defect`` (one of DEFECT_TYPES) needs a part; a drawn defect always changes at least a few
    pixels, a given ``defect_spec`` is used as is (its gt is empty when it is out of view).
    """
    if defect_spec is not None:
        defect = defect_spec.kind
    if defect is not None and defect not in DEFECT_TYPES:
        raise ConfigError(f"render_scene: unknown defect {defect!r} (known: {', '.join(DEFECT_TYPES)})")
    if defect is not None and part_xy_m is None:
        raise ConfigError(f"render_scene: defect {defect!r} needs a part (part_xy_m is None)")
    rig_rng, part_rng, noise_rng, defect_rng = _streams(rng)
    rig = sample_rig(rig_rng, config) if rig is None else rig
    if (rig.intrinsics.width, rig.intrinsics.height) != (config.width, config.height):
        raise ConfigError(
            f"render_scene: rig is {rig.intrinsics.width}x{rig.intrinsics.height} but config asks for "
            f"{config.width}x{config.height}"
        )
    if part_xy_m is None:
        part = None
    elif part is None:
        part = sample_part(part_rng, config, rig.part_colour)
    centre = None if part_xy_m is None else (float(part_xy_m[0]), float(part_xy_m[1]))
    surface = render_surface(rig, part, centre, belt_offset_m)
    invalid = invalid_mask(rig, surface, part, centre, config)
    # Noise is drawn before (and independently of) the defect so both renders share it.
    depth_noise = noise_rng.standard_normal(surface.z.shape)
    rgb_noise = noise_rng.standard_normal(surface.albedo.shape)
    rgb, xyz = sense(rig, surface, invalid, depth_noise, rgb_noise, config)
    gt = np.zeros(surface.part.shape, dtype=bool)
    spec = defect_spec
    if defect is not None and part is not None:
        for _ in range(DEFECT_ATTEMPTS):
            if defect_spec is None:
                spec = sample_defect(defect_rng, defect, part, config.small_defect_fraction)
            broken, footprint = apply_defect(rig, surface, spec)  # type: ignore[arg-type]
            rgb_d, xyz_d = sense(rig, broken, invalid, depth_noise, rgb_noise, config)
            gt = footprint & ((rgb_d != rgb).any(axis=2) | (xyz_d != xyz).any(axis=2))
            # A given spec is used as is; a drawn one must be visible.
            if defect_spec is not None or np.count_nonzero(gt) >= MIN_DEFECT_PIXELS:
                break
        else:
            raise DataError(
                f"render_scene: could not place a visible {defect!r} on the {part.shape} at {part_xy_m} "
                f"in {DEFECT_ATTEMPTS} attempts (is the part in view?)"
            )
        rgb, xyz = rgb_d, xyz_d
    return SynthScene(
        rgb=rgb,
        xyz=xyz,
        object_mask=surface.part,
        gt=gt,
        intrinsics=rig.intrinsics,
        plane=rig.plane,
        part_shape=None if part is None else part.shape,
        defect=defect,
        part_xy_m=centre,
        part=part,
        defect_spec=spec,
    )


def dataset_rig(seed: int, config: SynthConfig = DEFAULT_CONFIG) -> Rig:
    """The camera, belt and light of the dataset :func:`generate_dataset` writes for ``seed``.

    A synthetic line built on this rig is the same station the dataset was recorded at, as a real
    line is the station its training parts were recorded at.
    """
    return sample_rig(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(99,))), config)


def generate_dataset(
    out_root: Path,
    category: str,
    seed: int,
    config: SynthConfig = DEFAULT_CONFIG,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic category in the MVTec 3D-AD layout under ``out_root/category``.

    One rig (camera height, belt tilt, look) per dataset; every sample draws its own part pose,
    size and colour. Test good samples get an all-empty gt, as in MVTec 3D-AD. An existing
    non-empty category folder is refused unless ``overwrite`` is set and it holds an earlier
    synth output (its ``meta.json`` says so), which is then replaced.
    """
    if not category or category in (".", "..") or "/" in category or "\\" in category:
        raise ConfigError(f"category: {category!r} is not a valid folder name")
    start = time.perf_counter()
    root = Path(out_root) / category
    _prepare_folder(root, overwrite)
    rig = dataset_rig(seed, config)
    jobs = [("train", GOOD, i) for i in range(config.n_train)]
    jobs += [("validation", GOOD, i) for i in range(config.n_validation)]
    jobs += [("test", GOOD, i) for i in range(config.n_test_good)]
    jobs += [("test", kind, i) for kind in config.defect_types for i in range(config.n_test_per_defect)]
    counts: dict[str, dict[str, int]] = {}
    samples: list[dict[str, Any]] = []
    for split, kind, index in track(jobs, f"synth {category}", enabled=progress):
        type_key = 0 if kind == GOOD else 1 + DEFECT_TYPES.index(kind)
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEYS[split], type_key, index))
        )
        xy = rng.uniform(-config.part_position_jitter_m, config.part_position_jitter_m, size=2)
        scene = render_scene(
            rng, config, (float(xy[0]), float(xy[1])), None if kind == GOOD else kind, rig=rig
        )
        gt = scene.gt if split == "test" else None
        write_sample(root, split, kind, index, scene.rgb, scene.xyz, gt)
        counts.setdefault(split, {}).setdefault(kind, 0)
        counts[split][kind] += 1
        samples.append(_sample_meta(f"{split}/{kind}/{index:03d}", scene))
    meta = {
        "generator": "edge_ad.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "category": category,
        "config": config.to_dict(),
        "rig": rig.describe(),
        "counts": counts,
        "samples": samples,
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return SynthSummary(out=root, seed=seed, counts=counts, seconds=time.perf_counter() - start)


def load_meta(category_root: Path) -> dict[str, Any]:
    """Read the ``meta.json`` a synthetic dataset carries (seed, config, intrinsics, belt plane)."""
    path = Path(category_root) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: not found (not a dataset written by edge-ad synth?)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("generator") != "edge_ad.synth":
        raise DataError(f"{path}: not an edge-ad synth metadata file (generator field missing or different)")
    return meta


def _streams(rng: np.random.Generator | int) -> list[np.random.Generator]:
    """Four independent generators (rig, part, noise, defect) from a seed or a caller's generator."""
    if isinstance(rng, np.random.Generator):
        seq = np.random.SeedSequence(int(rng.integers(2**63)))
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        seq = np.random.SeedSequence(int(rng))
    else:
        raise ConfigError(
            f"render_scene: rng must be a numpy Generator or an int seed, got {type(rng).__name__}"
        )
    return [np.random.default_rng(child) for child in seq.spawn(4)]


def _prepare_folder(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"output {root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output {root} already exists and is not empty (pass overwrite/--force to replace it)"
            )
        # Only ever delete a folder this generator wrote.
        try:
            load_meta(root)
        except DataError as exc:
            raise ConfigError(
                f"output {root} is not empty and not an edge-ad synth dataset; not replacing it ({exc})"
            ) from exc
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def _sample_meta(name: str, scene: SynthScene) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "part_xy_m": [round(v, 6) for v in scene.part_xy_m] if scene.part_xy_m else None,
        "part": scene.part.describe() if scene.part else None,
        "valid_fraction": round(float(np.count_nonzero(scene.valid)) / scene.valid.size, 5),
    }
    if scene.defect_spec is not None:
        entry["defect"] = scene.defect_spec.describe()
        entry["defect_pixels"] = int(np.count_nonzero(scene.gt))
    return entry
