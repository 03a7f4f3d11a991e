"""TensorRT backend (Jetson): a serialized engine behind the InferenceBackend protocol, pycuda buffers.

Engines are built on the device (``edge-ad build-engine``) and found by name in the bundle's
``engines/`` folder (:mod:`edge_ad.trt_engine_cache`). An engine for another TensorRT, GPU,
precision or model is refused *before* it is deserialized; one that TensorRT still cannot load
(``deserialize_cuda_engine`` returns None or logs an error) is refused too. Nothing falls back to
ONNX Runtime unless ``allow_fallback=True`` is passed, and then with a warning.

TensorRT 10 (JetPack 6) runs with name-based I/O (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_tensor_address``, ``execute_async_v3``); TensorRT 8.5/8.6 (JetPack 5)
with bindings (``get_binding_index``, ``execute_async_v2``). ``tensorrt`` and ``pycuda`` are imported
when a backend is opened, never when this module is.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge_ad.backends import InferenceBackend, register_backend
from edge_ad.backends.base import TensorSpec
from edge_ad.errors import BundleError, ConfigError, InferenceError
from edge_ad.manifest import ENGINE_DIR
from edge_ad.trt_engine_cache import (
    ENGINE_SUFFIX,
    EngineKey,
    build_engine_command,
    check_engine,
    find_engine,
    key_for,
    other_engines,
    read_sidecar_key,
    uses_name_based_io,
)

INSTALL_HINT = "TensorRT comes with JetPack (python3-libnvinfer); pycuda with the edge-ad 'jetson' extra"


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; ConfigError saying how to get it when absent."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise ConfigError(f"TensorRT is not importable here ({exc}); {INSTALL_HINT}") from exc


def import_cuda() -> ModuleType:
    """``pycuda.driver`` with a context on device 0 (``pycuda.autoinit``); ConfigError when absent."""
    try:
        importlib.import_module("pycuda.autoinit")
        return importlib.import_module("pycuda.driver")
    except ImportError as exc:
        raise ConfigError(f"pycuda is not importable here ({exc}); {INSTALL_HINT}") from exc


def compute_capability(cuda: ModuleType, device: int = 0) -> tuple[int, int]:
    """(major, minor) of CUDA ``device``, e.g. (8, 7) on Orin."""
    major, minor = cuda.Device(device).compute_capability()
    return int(major), int(minor)


def make_logger(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that prints warnings and keeps every error, so a failed load can say why."""

    class RecordingLogger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                warnings.warn(f"TensorRT: {msg}", RuntimeWarning, stacklevel=2)

    return RecordingLogger()


def engine_for_model(model_path: Path, precision: str, engine_dir: Path | None, trt_version: str, cc: tuple[int, int]) -> tuple[Path, EngineKey]:
    """The checked engine file for ``model_path`` (an ONNX file, or an engine itself) on this device."""
    model_path = Path(model_path)
    if model_path.suffix == ENGINE_SUFFIX:
        stored = read_sidecar_key(model_path)
        wanted = EngineKey(trt_version, "".join(map(str, cc)), stored.precision, stored.onnx_sha256)
        check_engine(model_path, wanted)
        return model_path, wanted
    if not model_path.is_file():
        raise BundleError(f"{model_path}: model file not found")
    directory = Path(engine_dir) if engine_dir is not None else model_path.parent / ENGINE_DIR
    wanted = key_for(model_path, trt_version, cc, precision)
    hint = f"run on this device: {build_engine_command(model_path.parent, precision)}"
    found = find_engine(directory, wanted)
    if found is None:
        others = other_engines(directory, wanted)
        seen = f"; engines present for other devices/models: {', '.join(others)}" if others else ""
        raise BundleError(f"{directory}: no engine {wanted.file_name} for this device{seen}; {hint}")
    check_engine(found, wanted, hint)
    return found, wanted


class TensorRTBackend:
    """A deserialized TensorRT engine with pinned host and device buffers for every I/O tensor."""

    def __init__(self, model_path: Path, *, precision: str = "fp16", engine_dir: Path | None = None, device: int = 0) -> None:
        """Open the engine for ``model_path`` (ONNX in a bundle, or a ``.engine``); BundleError when incompatible."""
        self._trt = trt = import_tensorrt()
        self._cuda = cuda = import_cuda()
        self.version = str(trt.__version__)
        self.engine_path, self.key = engine_for_model(
            Path(model_path), precision, engine_dir, self.version, compute_capability(cuda, device)
        )
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None or self._logger.errors:
            detail = "; ".join(self._logger.errors) or "deserialize_cuda_engine returned None"
            raise BundleError(f"{self.engine_path}: engine incompatible ({detail}); rebuild on target")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._named_io = uses_name_based_io(self.version)
        self._inputs, self._outputs = self._read_specs()
        self._stream = cuda.Stream()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        for spec in self._inputs + self._outputs:
            shape = tuple(int(d) for d in spec.shape)  # engines are built for batch 1, static shapes
            self._host[spec.name] = cuda.pagelocked_empty(shape, np.dtype(spec.dtype))
            self._device[spec.name] = cuda.mem_alloc(self._host[spec.name].nbytes)
        if self._named_io:
            for name, memory in self._device.items():
                self._context.set_tensor_address(name, int(memory))
        else:
            order = sorted(self._device, key=engine.get_binding_index)
            self._bindings = [int(self._device[name]) for name in order]

    def _read_specs(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        trt, engine = self._trt, self._engine
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        if self._named_io:
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                spec = TensorSpec(name, tuple(engine.get_tensor_shape(name)), str(np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
                (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        else:
            for i in range(engine.num_bindings):
                name = engine.get_binding_name(i)
                spec = TensorSpec(name, tuple(engine.get_binding_shape(i)), str(np.dtype(trt.nptype(engine.get_binding_dtype(i)))))
                (inputs if engine.binding_is_input(i) else outputs).append(spec)
        return inputs, outputs

    def input_spec(self) -> list[TensorSpec]:
        """Inputs the engine takes."""
        return list(self._inputs)

    def output_spec(self) -> list[TensorSpec]:
        """Outputs the engine returns."""
        return list(self._outputs)

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """The same checks as the ONNX Runtime backend (names, dtypes, shapes, finite values)."""
        from edge_ad.backends.onnxruntime import OnnxRuntimeBackend

        # One implementation of the input contract: it only reads ``self._inputs``.
        OnnxRuntimeBackend.check_inputs(self, inputs)  # type: ignore[arg-type]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, run the engine on its stream, copy outputs out."""
        if self._context is None:
            raise InferenceError(f"{self.engine_path}: backend is closed")
        self.check_inputs(inputs)
        cuda, stream = self._cuda, self._stream
        try:
            for spec in self._inputs:
                np.copyto(self._host[spec.name], inputs[spec.name])
                cuda.memcpy_htod_async(self._device[spec.name], self._host[spec.name], stream)
            if self._named_io:
                ok = self._context.execute_async_v3(stream_handle=stream.handle)
            else:
                ok = self._context.execute_async_v2(bindings=self._bindings, stream_handle=stream.handle)
            for spec in self._outputs:
                cuda.memcpy_dtoh_async(self._host[spec.name], self._device[spec.name], stream)
            stream.synchronize()
        except (RuntimeError, cuda.Error) as exc:
            raise InferenceError(f"{self.engine_path}: TensorRT execution failed: {exc}") from exc
        if not ok:
            raise InferenceError(f"{self.engine_path}: TensorRT execution reported failure")
        outputs = {spec.name: self._host[spec.name].copy() for spec in self._outputs}
        for name, array in outputs.items():
            if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
                raise InferenceError(f"output {name!r}: values are not finite (NaN or inf)")
        return outputs

    def close(self) -> None:
        """Free device buffers and the engine (later ``infer`` calls raise InferenceError)."""
        for memory in self._device.values():
            memory.free()
        self._device.clear()
        self._context = None
        self._engine = None


@register_backend("tensorrt")
def open_tensorrt(
    model_path: Path, *, allow_fallback: bool = False, fallback_model: Path | None = None, **options: Any
) -> InferenceBackend:
    """Open a TensorRT engine; with ``allow_fallback`` an unusable engine warns and opens ONNX Runtime instead."""
    try:
        return TensorRTBackend(Path(model_path), **options)
    except (BundleError, ConfigError) as exc:
        if not allow_fallback:
            raise
        onnx_model = Path(fallback_model or model_path)
        warnings.warn(f"TensorRT unusable ({exc}); falling back to ONNX Runtime on {onnx_model}", RuntimeWarning, stacklevel=2)
        from edge_ad.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_model)
