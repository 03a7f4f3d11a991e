"""Settings of the procedural RGB-D conveyor generator (:mod:`edge_ad.synth`).

Kept apart from the renderer so that the scene, defect and dataset modules can share one frozen
config without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge_ad.errors import ConfigError
from edge_ad.typed_data import load_dataclass, to_plain

# Which image each defect type changes. The split is what makes the synthetic data useful for
# testing RGB-only, depth-only and RGB-D models: a depth-only defect leaves rgb bit-identical.
DEPTH_ONLY_DEFECTS = ("dent", "bump")
RGB_ONLY_DEFECTS = ("stain",)
RGBD_DEFECTS = ("crack", "missing", "contamination")
DEFECT_TYPES = DEPTH_ONLY_DEFECTS + RGB_ONLY_DEFECTS + RGBD_DEFECTS
PART_SHAPES = ("puck", "box", "ring")

# (low, high); tuple[float, ...] so that typed_data can load it from a JSON list.
Range = tuple[float, ...]


@dataclass(frozen=True)
class SynthConfig:
    """Sizes, counts, camera and part ranges of a synthetic dataset; ranges are (low, high).

    Distances are metres, angles degrees. ``depth_noise_m`` is the depth noise sigma at 0.4 m;
    it grows with z squared as for a stereo camera. ``small_defect_fraction`` of the defects are
    2-4 mm across.
    """

    width: int = 256
    height: int = 256
    n_train: int = 60
    n_validation: int = 20
    n_test_good: int = 20
    n_test_per_defect: int = 10
    defect_types: tuple[str, ...] = DEFECT_TYPES
    part_shapes: tuple[str, ...] = PART_SHAPES
    hfov_deg: float = 24.0
    camera_height_m: Range = (0.35, 0.45)
    belt_tilt_deg: Range = (1.0, 5.0)
    part_diameter_m: Range = (0.05, 0.075)
    part_height_m: Range = (0.012, 0.035)
    part_position_jitter_m: float = 0.012
    depth_noise_m: float = 0.001
    projector_baseline_m: float = 0.05
    edge_jump_m: float = 0.004
    grazing_cos_min: float = 0.2
    rgb_noise: float = 1.5
    small_defect_fraction: float = 0.3

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            if not 32 <= getattr(self, name) <= 4096:
                raise ConfigError(f"SynthConfig.{name}: must be in [32, 4096], got {getattr(self, name)}")
        for name in ("n_train", "n_validation", "n_test_good", "n_test_per_defect"):
            if getattr(self, name) < 0:
                raise ConfigError(f"SynthConfig.{name}: must be >= 0, got {getattr(self, name)}")
        _check_names("defect_types", self.defect_types, DEFECT_TYPES)
        _check_names("part_shapes", self.part_shapes, PART_SHAPES)
        if not self.part_shapes:
            raise ConfigError("SynthConfig.part_shapes: needs at least one shape")
        if not 5.0 <= self.hfov_deg <= 120.0:
            raise ConfigError(f"SynthConfig.hfov_deg: must be in [5, 120], got {self.hfov_deg}")
        _check_range("camera_height_m", self.camera_height_m, 0.1, 3.0)
        _check_range("belt_tilt_deg", self.belt_tilt_deg, 0.0, 30.0)
        _check_range("part_diameter_m", self.part_diameter_m, 0.005, 1.0)
        _check_range("part_height_m", self.part_height_m, 0.002, 0.5)
        if self.part_height_m[1] >= 0.5 * self.camera_height_m[0]:
            raise ConfigError(
                f"SynthConfig.part_height_m: the tallest part ({self.part_height_m[1]} m) must stay "
                f"below half the lowest camera height ({self.camera_height_m[0]} m)"
            )
        for name in ("part_position_jitter_m", "depth_noise_m", "projector_baseline_m", "rgb_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"SynthConfig.{name}: must be a finite number >= 0, got {value}")
        if not self.edge_jump_m > 0:
            raise ConfigError(f"SynthConfig.edge_jump_m: must be > 0, got {self.edge_jump_m}")
        for name in ("grazing_cos_min", "small_defect_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"SynthConfig.{name}: must be in [0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (tuples become lists); :meth:`from_dict` reverses it."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: object) -> SynthConfig:
        """Build from :meth:`to_dict` output; unknown keys and wrong types raise ConfigError."""
        return load_dataclass(cls, data, error=ConfigError, path="synth")


def _check_names(field: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"SynthConfig.{field}: unknown {unknown[0]!r} (allowed: {', '.join(allowed)})")
    if len(set(values)) != len(values):
        raise ConfigError(f"SynthConfig.{field}: duplicate entries in {list(values)}")


def _check_range(field: str, value: Range, low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ConfigError(
            f"SynthConfig.{field}: expected (low, high) with {low} <= low <= high <= {high}, got {value}"
        )
