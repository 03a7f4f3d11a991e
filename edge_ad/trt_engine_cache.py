"""TensorRT engine files of a bundle: names, sidecars, compatibility and the commands that build them.

A serialized engine only runs on the TensorRT version and GPU it was built with, so every engine in
``BUNDLE/engines/`` is named by what it depends on::

    trt10.3.0_sm87_fp16_<first 16 hex of the ONNX sha256>.engine   (+ .json sidecar with the full key)

The name and the sidecar are checked *before* the engine is deserialized: an engine for another
TensorRT, GPU, precision or model is refused with a BundleError that says which and how to rebuild,
instead of crashing or, worse, running the wrong model. No TensorRT import here (torch-free,
TensorRT-free): the backend and the builder pass in what they read from the library.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from edge_ad.errors import BundleError, ConfigError
from edge_ad.hashing import sha256_file
from edge_ad.manifest import Manifest

ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
CALIBRATION_CACHE_SUFFIX = ".calib"
# The symmetric QDQ model written for TensorRT explicit quantization (zero points 0).
TRT_INT8_FILE = "model.int8.tensorrt.onnx"
TRT_INT8_ROLE = "model_int8_tensorrt"
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
# TensorRT 10 removed the binding-index API; 8.5+ has the name-based one, but 8.x engines are run
# through bindings (execute_async_v2), the API JetPack 5 samples and users know.
NAME_BASED_IO_FROM = Version("10.0")
# Explicit quantization (Q/DQ layers parsed from ONNX) since TensorRT 8.0; older needs a calibrator.
EXPLICIT_QUANTIZATION_FROM = Version("8.0")
# trtexec took --workspace=N (MiB) until 8.4 introduced --memPoolSize=workspace:N.
MEMPOOL_FLAG_FROM = Version("8.4")
_HASH_CHARS = 16
_NAME = re.compile(
    r"^trt(?P<version>[0-9][0-9.]*)_sm(?P<cc>[0-9]+)_(?P<precision>fp32|fp16|int8)_(?P<hash>[0-9a-f]{16})\.engine$"
)


def parse_version(text: str, what: str = "TensorRT version") -> Version:
    """``packaging`` Version of ``text``; ConfigError naming ``what`` when it is not a version."""
    try:
        return Version(str(text))
    except InvalidVersion:
        raise ConfigError(f"{what}: not a version: {text!r}") from None


def same_engine_version(a: str, b: str) -> bool:
    """True when engines of TensorRT ``a`` load in ``b``: same major.minor.patch (builds may differ)."""
    return parse_version(a).release[:3] == parse_version(b).release[:3]


def uses_name_based_io(version: str) -> bool:
    """True for TensorRT >= 10 (tensor names + execute_async_v3); False for 8.x (bindings + v2)."""
    return parse_version(version) >= NAME_BASED_IO_FROM


def supports_explicit_quantization(version: str) -> bool:
    """True when TensorRT ``version`` builds INT8 from a Q/DQ ONNX model (no calibrator needed)."""
    return parse_version(version) >= EXPLICIT_QUANTIZATION_FROM


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on: TensorRT version, GPU compute capability, precision, ONNX hash."""

    tensorrt: str
    compute_capability: str  # "87" for sm_87 (Orin), "72" for Xavier
    precision: str
    onnx_sha256: str

    def __post_init__(self) -> None:
        parse_version(self.tensorrt)
        if not re.fullmatch(r"[0-9]+", self.compute_capability):
            raise ConfigError(f"compute capability must be digits like '87', got {self.compute_capability!r}")
        if self.precision not in ENGINE_PRECISIONS:
            raise ConfigError(f"engine precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ConfigError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")

    @property
    def file_name(self) -> str:
        """``trt<version>_sm<cc>_<precision>_<hash16>.engine``."""
        release = ".".join(str(p) for p in parse_version(self.tensorrt).release[:3])
        return f"trt{release}_sm{self.compute_capability}_{self.precision}_{self.onnx_sha256[:_HASH_CHARS]}{ENGINE_SUFFIX}"

    def differences(self, other: EngineKey) -> list[str]:
        """What differs between this (wanted) key and ``other`` (an engine's), in words."""
        problems = []
        if not same_engine_version(self.tensorrt, other.tensorrt):
            problems.append(f"built with TensorRT {other.tensorrt}, this device has {self.tensorrt}")
        if self.compute_capability != other.compute_capability:
            problems.append(f"built for GPU sm_{other.compute_capability}, this GPU is sm_{self.compute_capability}")
        if self.precision != other.precision:
            problems.append(f"precision {other.precision}, asked for {self.precision}")
        if self.onnx_sha256[:_HASH_CHARS] != other.onnx_sha256[:_HASH_CHARS]:
            problems.append("built from another ONNX model")
        return problems


def key_for(onnx_path: Path, tensorrt_version: str, compute_capability: tuple[int, int] | str, precision: str) -> EngineKey:
    """The engine key of ``onnx_path`` on this device (``compute_capability`` (8, 7) or "87")."""
    cc = "".join(str(v) for v in compute_capability) if isinstance(compute_capability, tuple) else str(compute_capability)
    return EngineKey(str(tensorrt_version), cc, precision, sha256_file(Path(onnx_path)))


def parse_engine_name(name: str) -> dict[str, str] | None:
    """The fields encoded in an engine file name (hash shortened), or None when it is not one of ours."""
    match = _NAME.match(Path(name).name)
    return None if match is None else match.groupdict()


def sidecar_path(engine_path: Path) -> Path:
    """``X.engine`` -> ``X.json``."""
    return Path(engine_path).with_suffix(SIDECAR_SUFFIX)


def write_sidecar(engine_path: Path, key: EngineKey, extra: dict[str, Any] | None = None) -> Path:
    """Record the full key (and build settings) next to an engine."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps({"key": asdict(key), **(extra or {})}, indent=2) + "\n", encoding="utf-8")
    return path


def read_sidecar_key(engine_path: Path) -> EngineKey:
    """The key stored next to ``engine_path``; BundleError when missing or malformed."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise BundleError(f"{engine_path}: no sidecar {path.name}; cannot tell what it was built for; rebuild on target")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return EngineKey(**data["key"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise BundleError(f"{path}: malformed engine sidecar ({exc}); rebuild on target") from None


def check_engine(engine_path: Path, wanted: EngineKey, rebuild_hint: str = "") -> None:
    """Refuse ``engine_path`` unless its name and sidecar match ``wanted`` (checked before deserializing)."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise BundleError(f"{engine_path}: engine file not found{_hint(rebuild_hint)}")
    fields = parse_engine_name(engine_path.name)
    if fields is None:
        raise BundleError(
            f"{engine_path}: not an edge-ad engine name (expected trt<ver>_sm<cc>_<precision>_<hash>.engine){_hint(rebuild_hint)}"
        )
    problems = wanted.differences(read_sidecar_key(engine_path))
    named = EngineKey(fields["version"], fields["cc"], fields["precision"], fields["hash"] * 4)
    if not problems:
        problems = wanted.differences(named)  # a renamed file must not pass on its sidecar alone
    if problems:
        raise BundleError(
            f"{engine_path}: engine incompatible with this device: {'; '.join(problems)}; rebuild on target{_hint(rebuild_hint)}"
        )


def find_engine(engine_dir: Path, wanted: EngineKey) -> Path | None:
    """The engine for ``wanted`` in ``engine_dir`` when it exists (not yet checked: see :func:`check_engine`)."""
    path = Path(engine_dir) / wanted.file_name
    return path if path.is_file() else None


def other_engines(engine_dir: Path, wanted: EngineKey) -> list[str]:
    """Names of engines in ``engine_dir`` built for something else (for the 'why not' message)."""
    directory = Path(engine_dir)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob(f"*{ENGINE_SUFFIX}") if p.name != wanted.file_name)


def tensorrt_onnx(bundle_dir: Path, manifest: Manifest, precision: str) -> Path:
    """The bundle ONNX an engine of ``precision`` is built from (and keyed by).

    INT8: the symmetric Q/DQ model for TensorRT when the bundle has one; otherwise (and for
    fp16 / fp32) the FP32 model, calibrated on the device for INT8.
    """
    if precision == "int8":
        names = [name for name, entry in manifest.files.items() if entry.role == TRT_INT8_ROLE]
        if names:
            return Path(bundle_dir) / names[0]
    return Path(bundle_dir) / manifest.model_file("fp32")


def build_engine_command(bundle_dir: Path, precision: str, workspace_mb: int | None = None) -> str:
    """The on-device command that builds (or reuses) the bundle's engine."""
    if precision not in ENGINE_PRECISIONS:
        raise ConfigError(f"engine precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {precision!r}")
    parts = ["edge-ad", "build-engine", str(bundle_dir), "--precision", precision]
    if workspace_mb is not None:
        parts += ["--workspace-mb", str(int(workspace_mb))]
    return shlex.join(parts)


def trtexec_command(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    tensorrt_version: str | None = None,
    workspace_mb: int = 1024,
    calibration_cache: Path | None = None,
    float_nodes: Sequence[str] = (),
) -> list[str]:
    """The ``trtexec`` command line that builds the same engine (fallback when Python bindings fail).

    ``tensorrt_version`` None (unknown here) writes the flags of TensorRT >= 8.4.

    INT8 gets ``--int8`` only: adding ``--fp16`` would let the float nodes (distances) drop to half
    precision. A calibration cache (implicit quantization) is passed as ``--calib``. ``float_nodes``
    (the manifest's) are pinned to FP32 as the Python build pins them: ``--precisionConstraints=obey``
    with ``--layerPrecisions`` and ``--layerOutputTypes`` (``name:fp32``, comma-separated; the
    ONNX parser names layers after the nodes).
    """
    if precision not in ENGINE_PRECISIONS:
        raise ConfigError(f"engine precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {precision!r}")
    if workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be >= 1, got {workspace_mb}")
    command = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if tensorrt_version is None or parse_version(tensorrt_version) >= MEMPOOL_FLAG_FROM:
        command.append(f"--memPoolSize=workspace:{int(workspace_mb)}")
    else:
        command.append(f"--workspace={int(workspace_mb)}")
    if precision == "fp16":
        command.append("--fp16")
    elif precision == "int8":
        command.append("--int8")
        if calibration_cache is not None:
            command.append(f"--calib={calibration_cache}")
    if float_nodes and precision != "fp32":
        spec = ",".join(f"{name}:fp32" for name in dict.fromkeys(float_nodes))
        command += ["--precisionConstraints=obey", f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}"]
    return command


def _hint(text: str) -> str:
    return f" ({text})" if text else ""
