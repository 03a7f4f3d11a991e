"""Build a TensorRT engine on the target from a bundle's ONNX: FP16, or INT8 (Q/DQ model or calibrator).

Three INT8 routes, by what the device's TensorRT can do:

* explicit quantization (TensorRT >= 8.0): parse the bundle's symmetric Q/DQ model
  (``model.int8.tensorrt.onnx``) and set the INT8 flag; the scales come from the export's
  calibration on good parts;
* implicit quantization: parse the FP32 model and calibrate with ``IInt8EntropyCalibrator2``,
  fed good parts through THE preprocessing into pycuda buffers, with a calibration cache so a
  rebuild does not recalibrate;
* ``trtexec`` (printed by :func:`edge_ad.trt_engine_cache.trtexec_command`) when the Python
  bindings are missing or broken.

Layers named in the manifest's ``float_nodes`` are pinned to FP32 (distances stay in FP32 even
in an FP16 engine). Engines are named by TensorRT version, GPU, precision and ONNX hash, built
once and reused. ``tensorrt``, ``pycuda`` and ``torch_tensorrt`` are imported inside functions only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge_ad.backends.tensorrt import compute_capability, import_cuda, import_tensorrt, make_logger
from edge_ad.bundle import Bundle
from edge_ad.errors import ConfigError, ExportError
from edge_ad.manifest import ENGINE_DIR
from edge_ad.trt_engine_cache import (
    CALIBRATION_CACHE_SUFFIX,
    MEMPOOL_FLAG_FROM,
    EngineKey,
    check_engine,
    find_engine,
    key_for,
    parse_version,
    supports_explicit_quantization,
    tensorrt_onnx,
    trtexec_command,
    uses_name_based_io,
    write_sidecar,
)

DEFAULT_WORKSPACE_MB = 1024


class CalibrationFeeder:
    """Hands out calibration batches in the engine's input order; reads and writes the cache.

    The TensorRT-independent half of the entropy calibrator (tested without a GPU): ``samples``
    are batch-of-one input dicts from :func:`edge_ad.preprocess.to_model_inputs`; batches of
    ``batch_size`` are stacked along axis 0 and an incomplete last batch is dropped (TensorRT
    needs full batches).
    """

    def __init__(self, samples: Sequence[dict[str, np.ndarray]], batch_size: int, cache_path: Path | None) -> None:
        """Validate the samples (same names and shapes) and the batch size."""
        if batch_size < 1:
            raise ConfigError(f"calibration batch size must be >= 1, got {batch_size}")
        if len(samples) < batch_size:
            raise ExportError(f"calibration needs at least {batch_size} samples, got {len(samples)}")
        names = sorted(samples[0])
        for i, sample in enumerate(samples):
            if sorted(sample) != names:
                raise ExportError(f"calibration sample {i} has inputs {sorted(sample)}, expected {names}")
        self.samples = list(samples)
        self.batch_size = batch_size
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._next = 0

    def __len__(self) -> int:
        """Number of full batches."""
        return len(self.samples) // self.batch_size

    def next_batch(self, names: Sequence[str]) -> list[np.ndarray] | None:
        """The next batch as contiguous float32 arrays in ``names`` order, or None when done."""
        start = self._next
        if start + self.batch_size > len(self.samples):
            return None
        self._next = start + self.batch_size
        chunk = self.samples[start : self._next]
        missing = [name for name in names if name not in chunk[0]]
        if missing:
            raise ExportError(f"calibration samples lack engine inputs {missing}")
        return [np.ascontiguousarray(np.concatenate([s[name] for s in chunk]), dtype=np.float32) for name in names]

    def read_cache(self) -> bytes | None:
        """Cached calibration scales from an earlier build, or None (then TensorRT calibrates)."""
        if self.cache_path is not None and self.cache_path.is_file() and self.cache_path.stat().st_size:
            return self.cache_path.read_bytes()
        return None

    def write_cache(self, data: bytes | memoryview) -> None:
        """Keep TensorRT's calibration table for the next build (written atomically)."""
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(self.cache_path.suffix + ".tmp")
        tmp.write_bytes(bytes(data))
        tmp.replace(self.cache_path)


def make_entropy_calibrator(trt: ModuleType, cuda: ModuleType, feeder: CalibrationFeeder) -> Any:
    """An ``IInt8EntropyCalibrator2`` that copies the feeder's batches into pycuda device buffers."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            arrays = feeder.next_batch(names)
            if arrays is None:
                return None
            for name, array in zip(names, arrays, strict=True):
                if name not in self.device:
                    self.device[name] = cuda.mem_alloc(array.nbytes)
                cuda.memcpy_htod(self.device[name], array)
            return [int(self.device[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return feeder.read_cache()

        def write_calibration_cache(self, cache: memoryview) -> None:
            feeder.write_cache(cache)

    return EntropyCalibrator()


@dataclass(frozen=True)
class EngineBuild:
    """The engine file, its key, and whether this call built it (False: reused)."""

    path: Path
    key: EngineKey
    built: bool
    trtexec: list[str]


def onnx_for_engine(bundle: Bundle, precision: str) -> Path:
    """The bundle's ONNX to build from: the symmetric Q/DQ model for INT8 when present, else FP32."""
    return tensorrt_onnx(bundle.root, bundle.manifest, precision)


def _pin_float_layers(trt: ModuleType, network: Any, names: set[str]) -> int:
    """Force FP32 on layers named in the manifest's float_nodes (the parser names layers after ONNX nodes)."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in names:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(
    bundle: Bundle,
    precision: str = "fp16",
    *,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    calibration: Sequence[dict[str, np.ndarray]] | None = None,
    rebuild: bool = False,
) -> EngineBuild:
    """Build (or reuse) the engine for ``bundle`` on this device in ``BUNDLE/engines/``.

    INT8 uses the Q/DQ model when the bundle has one and TensorRT supports explicit quantization;
    otherwise ``calibration`` (good parts as model inputs) feeds an entropy calibrator. Raises
    ConfigError when TensorRT/pycuda are missing, ExportError when parsing or building fails (the
    message carries the equivalent ``trtexec`` command).
    """
    trt, cuda = import_tensorrt(), import_cuda()
    version = str(trt.__version__)
    onnx_path = onnx_for_engine(bundle, precision)
    key = key_for(onnx_path, version, compute_capability(cuda), precision)
    engine_dir = bundle.root / ENGINE_DIR
    engine_path = engine_dir / key.file_name
    cache = engine_dir / f"{key.file_name[: -len('.engine')]}{CALIBRATION_CACHE_SUFFIX}"
    explicit = precision == "int8" and onnx_path != bundle.model_path("fp32")
    fallback = trtexec_command(
        onnx_path, engine_path, precision, version, workspace_mb, None if explicit else cache, bundle.manifest.float_nodes
    )
    existing = find_engine(engine_dir, key)
    if existing is not None and not rebuild:
        check_engine(existing, key)
        return EngineBuild(existing, key, False, fallback)
    if precision == "int8" and not explicit and calibration is None:
        raise ConfigError(
            "INT8 without a Q/DQ model needs calibration data: pass --calibration-data with good parts "
            "(or re-export with --target tensorrt)"
        )
    if explicit and not supports_explicit_quantization(version):
        raise ConfigError(f"TensorRT {version} cannot read Q/DQ models; pass --calibration-data to calibrate instead")
    serialized = _build_serialized(trt, cuda, onnx_path, precision, workspace_mb, version, calibration, cache, explicit, bundle)
    engine_dir.mkdir(parents=True, exist_ok=True)
    # Write beside, then rename: a half-written engine must never carry the final name.
    handle, tmp_name = tempfile.mkstemp(prefix=".engine.", dir=engine_dir)
    with os.fdopen(handle, "wb") as out:
        out.write(serialized)
    Path(tmp_name).replace(engine_path)
    write_sidecar(
        engine_path,
        key,
        {"onnx": onnx_path.name, "workspace_mb": workspace_mb, "built": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    )
    return EngineBuild(engine_path, key, True, fallback)


def _build_serialized(
    trt: ModuleType,
    cuda: ModuleType,
    onnx_path: Path,
    precision: str,
    workspace_mb: int,
    version: str,
    calibration: Sequence[dict[str, np.ndarray]] | None,
    cache: Path,
    explicit: bool,
    bundle: Bundle,
) -> bytes:
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch (the flag is deprecated); 8.x needs it set.
    flags = 0 if uses_name_based_io(version) else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    float_nodes = bundle.manifest.float_nodes
    command = " ".join(
        trtexec_command(onnx_path, Path("model.engine"), precision, version, workspace_mb, float_nodes=float_nodes)
    )
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}. Fallback: {command}")
    config = builder.create_builder_config()
    if parse_version(version) >= MEMPOOL_FLAG_FROM:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not explicit:
            names = [network.get_input(i).name for i in range(network.num_inputs)]
            feeder = CalibrationFeeder(calibration or [], 1, cache)
            feeder.next_batch(names)  # fail now, not inside TensorRT's callback, when inputs are missing
            feeder = CalibrationFeeder(calibration or [], 1, cache)
            config.int8_calibrator = make_entropy_calibrator(trt, cuda, feeder)
    if float_nodes and precision != "fp32":
        if _pin_float_layers(trt, network, set(float_nodes)):
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = "; ".join(logger.errors) or "build_serialized_network returned None"
        raise ExportError(f"TensorRT could not build {onnx_path} ({precision}): {errors}. Fallback: {command}")
    return bytes(serialized)


def iter_calibration_inputs(bundle: Bundle, data_root: Path, limit: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """Good training parts of ``data_root`` as model inputs through THE preprocessing (for the calibrator)."""
    from edge_ad.dataset import open_split
    from edge_ad.preprocess import preprocess, to_model_inputs

    config = bundle.preprocess_config
    use_xyz = config.mode != "rgb"
    split = open_split(Path(data_root), "train")
    step = max(1, len(split) // max(1, limit))
    for sample in split[::step][:limit]:
        if sample.label == 0:
            yield to_model_inputs([preprocess(sample.rgb, sample.xyz if use_xyz else None, config)])


def compile_with_torch_tensorrt(run_dir: Path, precision: str = "fp16", out_path: Path | None = None) -> Path:
    """Workstation route: compile a trained run with torch-tensorrt (needs torch, CUDA and torch_tensorrt).

    Produces a TorchScript module for benchmarking on the workstation GPU; the line still uses
    engines built on the Jetson from the bundle. ConfigError when torch_tensorrt is missing.
    """
    try:
        import torch
        import torch_tensorrt
    except ImportError as exc:
        raise ConfigError(f"torch-tensorrt route needs torch and torch_tensorrt ({exc})") from exc
    from export.onnx_graph import example_inputs
    from trainer.run_io import load_detector

    dtypes = {"fp32": {torch.float32}, "fp16": {torch.float32, torch.half}}
    if precision not in dtypes:
        raise ConfigError(f"torch-tensorrt route supports fp32 / fp16, got {precision!r}")
    loaded = load_detector(Path(run_dir), device="cuda")
    inputs = [t.cuda() for t in example_inputs(loaded.preprocess_config)]
    module = torch_tensorrt.compile(
        loaded.detector.eval(), ir="ts", inputs=inputs, enabled_precisions=dtypes[precision]
    )
    target = Path(out_path or Path(run_dir) / f"model.trt_{precision}.ts")
    torch.jit.save(module, str(target))
    return target
