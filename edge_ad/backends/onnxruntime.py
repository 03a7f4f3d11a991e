"""ONNX Runtime backend: the embedded default (CPU everywhere; CUDA / TensorRT providers on request).

Session options are set explicitly rather than left to library defaults, because the defaults
(one intra-op thread per logical core, parallel execution) fight the camera and actuation threads
on a small Jetson. Inputs are checked before the session sees them, so a wrong dtype or a NaN is
reported by name instead of as an opaque runtime error or, worse, a plausible-looking score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from edge_ad.backends import register_backend
from edge_ad.backends.base import TensorSpec
from edge_ad.errors import InferenceError

CPU_PROVIDER = "CPUExecutionProvider"
# GPU providers are used only when asked for, never picked up silently.
OPTIONAL_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
MAX_DEFAULT_THREADS = 4

# Everything the onnxruntime C++ layer raises (Fail, InvalidArgument, InvalidProtobuf, ...).
_ORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    value
    for value in vars(_ort_state).values()
    if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == _ort_state.__name__
) + (RuntimeError, ValueError)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def physical_core_count() -> int:
    """Physical cores usable by this process (hyper-threads do not help convolution-heavy models)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical_id = value.strip()
                elif key == "core id":
                    core_id = value.strip()
                    cores.add((physical_id, core_id))
    except OSError:
        return max(1, usable)
    # ARM /proc/cpuinfo (Jetson) has no core ids: then every logical CPU is a core.
    return max(1, min(usable, len(cores))) if cores else max(1, usable)


def default_thread_count() -> int:
    """Physical cores, capped at MAX_DEFAULT_THREADS (more threads only add contention at batch 1)."""
    return min(MAX_DEFAULT_THREADS, physical_core_count())


def _spec_from_node(node: ort.NodeArg) -> TensorSpec:
    # Symbolic dims ("batch") and unknown dims (None) are dynamic.
    shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=_ORT_TYPES.get(node.type, node.type))


@register_backend("onnxruntime")
class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` behind the InferenceBackend protocol."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] | None = None,
        intra_op_num_threads: int | None = None,
        graph_optimization: str = "all",
    ) -> None:
        """Open ``model_path``; ``providers`` defaults to CPU, GPU providers only when asked and present."""
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InferenceError(f"{self.model_path}: model file not found")
        if graph_optimization not in _OPTIMIZATION_LEVELS:
            raise InferenceError(
                f"graph_optimization {graph_optimization!r} unknown (known: {', '.join(_OPTIMIZATION_LEVELS)})"
            )
        threads = default_thread_count() if intra_op_num_threads is None else int(intra_op_num_threads)
        if threads < 1:
            raise InferenceError(f"intra_op_num_threads must be >= 1, got {threads}")
        self.providers = self._choose_providers(providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[graph_optimization]
        self.intra_op_num_threads = threads
        try:
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=list(self.providers)
            )
        except _ORT_ERRORS as exc:
            raise InferenceError(f"{self.model_path}: onnxruntime cannot load the model: {exc}") from exc
        self._inputs = [_spec_from_node(node) for node in self._session.get_inputs()]
        self._outputs = [_spec_from_node(node) for node in self._session.get_outputs()]

    @staticmethod
    def _choose_providers(requested: Sequence[str] | None) -> tuple[str, ...]:
        available = ort.get_available_providers()
        wanted = [CPU_PROVIDER] if not requested else list(requested)
        missing = [name for name in wanted if name not in available]
        if missing:
            raise InferenceError(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"(available: {', '.join(available)})"
            )
        if CPU_PROVIDER not in wanted:
            wanted.append(CPU_PROVIDER)  # fallback for nodes a GPU provider does not support
        return tuple(wanted)

    def input_spec(self) -> list[TensorSpec]:
        """Inputs the model takes, in graph order."""
        return list(self._inputs)

    def output_spec(self) -> list[TensorSpec]:
        """Outputs the model returns, in graph order."""
        return list(self._outputs)

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise InferenceError unless ``inputs`` has exactly the model's names, dtypes, shapes, finite values."""
        expected = [spec.name for spec in self._inputs]
        missing = [name for name in expected if name not in inputs]
        extra = [name for name in inputs if name not in expected]
        if missing or extra:
            raise InferenceError(f"model inputs are {expected}; missing {missing}, unexpected {extra}")
        for spec in self._inputs:
            array = inputs[spec.name]
            if not isinstance(array, np.ndarray):
                raise InferenceError(
                    f"input {spec.name!r}: expected a numpy array, got {type(array).__name__}"
                )
            if not spec.matches(array):
                shape = [dim if dim is not None else "?" for dim in spec.shape]
                raise InferenceError(
                    f"input {spec.name!r}: expected {spec.dtype} {shape}, got {array.dtype} {list(array.shape)}"
                )
            _check_finite(array, f"input {spec.name!r}")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once on checked inputs; outputs are checked finite too."""
        if self._session is None:
            raise InferenceError(f"{self.model_path}: backend is closed")
        self.check_inputs(inputs)
        names = [spec.name for spec in self._outputs]
        try:
            values = self._session.run(names, dict(inputs))
        except _ORT_ERRORS as exc:
            raise InferenceError(f"{self.model_path}: onnxruntime failed: {exc}") from exc
        outputs = dict(zip(names, values, strict=True))
        for name, array in outputs.items():
            _check_finite(array, f"output {name!r}")
        return outputs

    def close(self) -> None:
        """Release the session (later ``infer`` calls raise InferenceError)."""
        self._session = None

    def __enter__(self) -> OnnxRuntimeBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_finite(array: np.ndarray, what: str) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise InferenceError(f"{what}: {bad} of {array.size} values are not finite (NaN or inf)")
