"""Presets (YAML, by name or path) and the resolved training settings.

A preset holds everything a run needs except the data: model family, mode, backbone, the
preprocessing fields of :class:`edge_ad.preprocess.PreprocessConfig` (image size, mean/std,
depth scaling, mask dilation, foreground method), the family's network sizes (``model``), the
optimiser (``train``) and ``when_no_xyz``: overrides applied when the dataset has no point clouds
(e.g. the AST paper's MVTec AD settings). Resolution order: preset, then ``when_no_xyz`` (if
applicable), then command-line overrides; the result is checked strictly (unknown keys, wrong
types fail with the dotted path).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_ad.errors import ConfigError
from edge_ad.typed_data import load_dataclass, to_plain

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "ast-edge"

Mode = Literal["rgb", "depth", "rgbd"]


@dataclass(frozen=True)
class BackboneSettings:
    """Which frozen feature extractor, cut after which block, with which weights file (None: packaged)."""

    name: str
    block: int | None = None
    weights: str | None = None


@dataclass(frozen=True)
class PreprocessSettings:
    """Preset part of the preprocessing; mean/std None = the backbone's own normalisation."""

    image_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    depth_unit_scale: float = 100.0
    mask_dilate_px: int = 8
    foreground: dict[str, Any] | None = None
    # How depth is measured (edge_ad.preprocess.PreprocessConfig checks the values); the defaults are AST's.
    depth_reference: str = "foreground_mean"
    depth_median_px: int = 0
    depth_clip_m: float = 0.0


@dataclass(frozen=True)
class OptimSettings:
    """Adam settings and epochs (teacher; student_epochs None = same as the teacher)."""

    epochs: int
    student_epochs: int | None = None
    lr: float = 2e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 1e-5
    batch_size: int = 8
    cpu_threads: int | None = None  # None: all cores (max 8); tiny models train faster on 1

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if self.epochs < 1 or (self.student_epochs is not None and self.student_epochs < 1):
            raise ConfigError(f"{path}.epochs: must be >= 1")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"{path}.cpu_threads: must be >= 1 or null, got {self.cpu_threads}")
        if self.batch_size < 1:
            raise ConfigError(f"{path}.batch_size: must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"{path}.lr: must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{path}.betas: expected two values in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class TrainSettings:
    """A preset after overrides: everything except the data and the output folder."""

    backbone: BackboneSettings
    preprocess: PreprocessSettings
    train: OptimSettings
    model: dict[str, Any]
    family: str = "ast"
    mode: Mode = "rgbd"
    aggregation: Literal["auto", "max", "mean"] = "auto"
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.1
    preset: str = ""

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{path}.val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"{path}.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-safe)."""
        return to_plain(self)


def list_presets() -> list[str]:
    """Names of the presets shipped in trainer/presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """The YAML file of a preset given by name (``ast-edge``) or as a path to a YAML file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"preset file not found: {candidate}")
        return candidate
    path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown preset {name_or_path!r}; known: {', '.join(list_presets())} (or a path to a .yaml)"
        )
    return path


def load_preset(name_or_path: str) -> dict[str, Any]:
    """The raw preset mapping (not yet checked), with ``preset`` set to its name."""
    path = preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path}: invalid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"preset {path}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("preset", path.stem)
    return data


def choose_preset(model: str | None, preset: str | None) -> str:
    """The preset to train: ``preset`` if given, else ``MODEL-edge`` for ``--model``, else ast-edge.

    ConfigError when ``model`` has no ``-edge`` preset or ``preset`` belongs to another family.
    """
    if preset is None:
        if model is None:
            return DEFAULT_PRESET
        if not (PRESET_DIR / f"{model}-edge.yaml").is_file():
            families = sorted({name.rsplit("-", 1)[0] for name in list_presets()})
            raise ConfigError(f"unknown model {model!r}; known: {', '.join(families)}")
        return f"{model}-edge"
    if model is not None:
        family = load_preset(preset).get("family", "ast")
        if family != model:
            raise ConfigError(
                f"--model {model} does not match preset {preset!r}, which trains {family!r}; "
                f"drop one of the two (--model {model} alone uses {model}-edge)"
            )
    return preset


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``, recursively for nested mappings (neither is modified)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_settings(preset: str, has_xyz: bool, overrides: Mapping[str, Any] | None = None) -> TrainSettings:
    """Preset + ``when_no_xyz`` (when ``has_xyz`` is False) + ``overrides`` (nested dict), checked.

    An explicit ``mode`` override that needs depth on data without xyz raises ConfigError.
    """
    raw = load_preset(preset)
    when_no_xyz = raw.pop("when_no_xyz", None) or {}
    if not has_xyz:
        raw = deep_merge(raw, when_no_xyz)
    raw = deep_merge(raw, _drop_none(overrides or {}))
    settings = load_dataclass(TrainSettings, raw, error=ConfigError, path=f"preset {raw['preset']}")
    if not has_xyz and settings.mode in ("depth", "rgbd"):
        raise ConfigError(
            f"mode {settings.mode!r} needs depth, but the dataset has no point clouds (no xyz folders); "
            "use --mode rgb or a dataset recorded with depth"
        )
    return settings


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    # Command-line options left unset arrive as None and must not override the preset.
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out
