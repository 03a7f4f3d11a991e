"""The bundle manifest (``manifest.yaml``): what a model needs around it to be used safely.

Schema version 1 (every key required unless noted; ``null`` allowed where the type says so)::

    schema_version: 1
    model: {name, family, preset, mode: rgb|depth|rgbd, source_run (run name, never absolute), created (ISO 8601)}
    inputs / outputs: [{name, shape: [1, 3, 256, 256] (null = dynamic), dtype: float32}, ...]
    preprocess: PreprocessConfig.to_dict()   (checked by edge_ad.bundle through PreprocessConfig.from_dict)
    scoring:
      aggregation: max|mean                   (what the graph's score output computes over the map)
      normalization: {method: threshold, threshold: t} | {method: robust, median, scale, threshold} | {method: none}
      threshold: {value, target_frr, achieved_frr, frr_upper_95, n_good, data_hash}   (stats may be null)
    files: {relative/posix/name: {sha256, bytes, role}}   every bundle file but manifest.yaml and engines/
    versions: {edge_ad, torch, onnx, opset, onnxruntime, tensorrt}                (null when not involved)
    precision: fp32|fp16|int8                 (selects the model file by role, see MODEL_ROLES)
    float_nodes: [node names kept in float]   (optional, default [])

Unknown keys, wrong types and missing fields raise BundleError with the dotted path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np
import yaml

from edge_ad import __version__
from edge_ad.backends.base import TensorSpec
from edge_ad.errors import BundleError
from edge_ad.hashing import digest_file
from edge_ad.scoring import Normalization, ScoringSpec, ThresholdSpec
from edge_ad.typed_data import field_error, join_path, load_dataclass, to_plain

__all__ = [
    "FileEntry",
    "Manifest",
    "ModelInfo",
    "Normalization",
    "ScoringSpec",
    "ThresholdSpec",
    "Versions",
    "describe_files",
    "load_manifest",
    "write_manifest",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.yaml"
# TensorRT plans are built on the target after export, so they cannot be in the export-time hashes;
# the TensorRT backend checks them by name (TensorRT version, GPU, precision, ONNX hash).
ENGINE_DIR = "engines"
# Which file role holds the model for each precision.
MODEL_ROLES = {"fp32": "model", "fp16": "model_fp16", "int8": "model_int8"}

Precision = Literal["fp32", "fp16", "int8"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_absolute_anywhere(text: str) -> bool:
    """True for absolute POSIX or Windows paths (neither may leak into a bundle)."""
    return (
        PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or bool(PureWindowsPath(text).drive)
    )


@dataclass(frozen=True)
class ModelInfo:
    """Which model this is and where it came from."""

    name: str
    family: str
    preset: str
    mode: Literal["rgb", "depth", "rgbd"]
    source_run: str
    created: str

    def validate(self, path: str) -> None:
        """Reject empty names, absolute run paths and unparseable times."""
        for key in ("name", "family"):
            if not getattr(self, key).strip():
                raise field_error(BundleError, join_path(path, key), "must not be empty")
        if is_absolute_anywhere(self.source_run):
            raise field_error(
                BundleError,
                join_path(path, "source_run"),
                f"must be a run name or relative path, got {self.source_run!r}",
            )
        try:
            # Python 3.10's fromisoformat does not take the "Z" suffix.
            datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            raise field_error(
                BundleError, join_path(path, "created"), f"not an ISO 8601 time: {self.created!r}"
            ) from None


@dataclass(frozen=True)
class FileEntry:
    """Digest and role of one bundle file."""

    sha256: str
    bytes: int
    role: str

    def validate(self, path: str) -> None:
        """A lowercase hex SHA-256, a size, a role."""
        if not _SHA256.match(self.sha256):
            raise field_error(
                BundleError,
                join_path(path, "sha256"),
                f"expected 64 lowercase hex digits, got {self.sha256!r}",
            )
        if self.bytes < 0:
            raise field_error(BundleError, join_path(path, "bytes"), f"must be >= 0, got {self.bytes}")
        if not self.role.strip():
            raise field_error(BundleError, join_path(path, "role"), "must not be empty")


@dataclass(frozen=True)
class Versions:
    """Library versions the bundle was produced with (null when not involved)."""

    edge_ad: str
    torch: str | None
    onnx: str | None
    opset: int | None
    onnxruntime: str | None
    tensorrt: str | None

    @classmethod
    def current(
        cls, *, torch: str | None = None, opset: int | None = None, tensorrt: str | None = None
    ) -> Versions:
        """This environment's edge_ad / onnx / onnxruntime versions (read from package metadata, no imports)."""
        return cls(
            edge_ad=__version__,
            torch=torch,
            onnx=_installed_version("onnx"),
            opset=opset,
            onnxruntime=_installed_version("onnxruntime"),
            tensorrt=tensorrt,
        )


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _check_specs(specs: tuple[TensorSpec, ...], path: str) -> None:
    if not specs:
        raise field_error(BundleError, path, "must list at least one tensor")
    names = [spec.name for spec in specs]
    for i, spec in enumerate(specs):
        where = join_path(path, i)
        if not spec.name:
            raise field_error(BundleError, join_path(where, "name"), "must not be empty")
        if names.count(spec.name) > 1:
            raise field_error(BundleError, join_path(where, "name"), f"duplicate tensor name {spec.name!r}")
        if any(dim is not None and dim < 1 for dim in spec.shape):
            raise field_error(
                BundleError, join_path(where, "shape"), f"dims must be >= 1 or null, got {list(spec.shape)}"
            )
        try:
            canonical = str(np.dtype(spec.dtype))
        except TypeError:
            canonical = None
        if canonical != spec.dtype:
            raise field_error(
                BundleError, join_path(where, "dtype"), f"not a numpy dtype name: {spec.dtype!r}"
            )


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.yaml`` (see the module docstring for the schema)."""

    schema_version: int
    model: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: dict[str, Any]
    scoring: ScoringSpec
    files: dict[str, FileEntry]
    versions: Versions
    precision: Precision
    float_nodes: tuple[str, ...] = field(default=())

    def validate(self, path: str) -> None:
        """Cross-field rules: supported schema, unique tensor names, safe file names, a model file."""
        check_schema_version(self.schema_version)
        _check_specs(self.inputs, join_path(path, "inputs"))
        _check_specs(self.outputs, join_path(path, "outputs"))
        for name in self.files:
            where = join_path(join_path(path, "files"), name)
            pure = PurePosixPath(name)
            if is_absolute_anywhere(name) or ".." in pure.parts or "\\" in name or not name:
                raise field_error(
                    BundleError, where, "file names must be relative POSIX paths inside the bundle"
                )
            if name == MANIFEST_NAME or pure.parts[0] == ENGINE_DIR:
                raise field_error(
                    BundleError, where, f"{MANIFEST_NAME} and {ENGINE_DIR}/ are not hashed in the manifest"
                )
        self.model_file()  # raises when the precision's model file is not listed

    def model_file(self, precision: str | None = None) -> str:
        """Relative name of the model file for ``precision`` (default: the manifest's precision)."""
        precision = precision or self.precision
        role = MODEL_ROLES.get(precision)
        if role is None:
            raise BundleError(f"precision: unknown precision {precision!r} (known: {', '.join(MODEL_ROLES)})")
        names = [name for name, entry in self.files.items() if entry.role == role]
        if len(names) != 1:
            raise BundleError(
                f"files: expected exactly one file with role {role!r} for precision {precision}, found {names or 'none'}"
            )
        return names[0]

    def input(self, name: str) -> TensorSpec:
        """The input spec called ``name``."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise BundleError(f"inputs: no input named {name!r} (have {[s.name for s in self.inputs]})")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) ready for ``yaml.safe_dump``."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: object, *, source: str = MANIFEST_NAME) -> Manifest:
        """Parse plain data; errors name ``source`` and the dotted path."""
        try:
            if isinstance(data, dict) and isinstance(data.get("schema_version"), int):
                # Checked first: a newer schema may well have keys this version calls unknown.
                check_schema_version(data["schema_version"])
            return load_dataclass(cls, data, error=BundleError)
        except BundleError as exc:
            raise BundleError(f"{source}: {exc}") from None


def check_schema_version(version: int) -> None:
    """Refuse manifests written by a newer edge-ad (or nonsense versions)."""
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"schema_version {version} is newer than supported ({SCHEMA_VERSION}); upgrade edge-ad to use this bundle"
        )
    if version < 1:
        raise BundleError(f"schema_version must be >= 1, got {version}")


def manifest_path(path: Path) -> Path:
    """``path`` itself when it is a file, else ``path/manifest.yaml``."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest (``path`` = the YAML file or its bundle directory)."""
    file = manifest_path(path)
    if not file.is_file():
        raise BundleError(f"{file}: manifest not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: malformed manifest (not valid YAML): {exc}") from None
    return Manifest.from_dict(data, source=str(file))


class _ManifestDumper(yaml.SafeDumper):
    """Safe YAML with short scalar lists inline (``shape: [1, 3, 256, 256]``) so the file reads well."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    inline = all(isinstance(item, (int, float, str, type(None))) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)


_ManifestDumper.add_representer(list, _represent_list)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Validate ``manifest`` and write it as ``bundle_dir/manifest.yaml``; returns the file path."""
    Manifest.from_dict(manifest.to_dict(), source="manifest to write")  # never write what cannot be read back
    file = Path(bundle_dir) / MANIFEST_NAME
    text = yaml.dump(manifest.to_dict(), Dumper=_ManifestDumper, sort_keys=False)
    file.write_text(text, encoding="utf-8")
    return file


def describe_files(
    bundle_dir: Path, roles: dict[str, str], default_role: str = "other"
) -> dict[str, FileEntry]:
    """Hash every file under ``bundle_dir`` (but manifest.yaml and engines/) for the manifest's ``files``.

    ``roles`` maps relative names to roles (e.g. ``{"model.onnx": "model"}``); a name in ``roles``
    that does not exist raises BundleError, other files get ``default_role``.
    """
    root = Path(bundle_dir)
    entries: dict[str, FileEntry] = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        name = file.relative_to(root).as_posix()
        if name == MANIFEST_NAME or name.split("/")[0] == ENGINE_DIR:
            continue
        digest = digest_file(file)
        entries[name] = FileEntry(
            sha256=digest.sha256, bytes=digest.bytes, role=roles.get(name, default_role)
        )
    missing = sorted(set(roles) - set(entries))
    if missing:
        raise BundleError(f"{root}: files named in roles do not exist: {', '.join(missing)}")
    return entries


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, for ``model.created``."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
