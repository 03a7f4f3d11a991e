"""The TensorRT backend on a stand-in ``tensorrt`` / ``pycuda`` (no GPU here): both I/O APIs, refusals, fallback.

The fakes implement only the documented calls the backend makes; the engine doubles its input.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_ad.backends import create_backend
from edge_ad.errors import BundleError, ConfigError
from edge_ad.trt_engine_cache import key_for, write_sidecar
from tests.helpers.bundles import make_tiny_bundle

SHAPES = {"x": (1, 2, 3), "y": (1, 2, 3)}


class FakeMemory:
    def __init__(self, nbytes: int) -> None:
        self.buffer = np.zeros(nbytes, np.uint8)
        self.freed = False

    def __int__(self) -> int:
        return id(self)

    def free(self) -> None:
        self.freed = True


def fake_cuda() -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")
    memories: dict[int, FakeMemory] = {}

    def mem_alloc(nbytes: int) -> FakeMemory:
        memory = FakeMemory(nbytes)
        memories[id(memory)] = memory
        return memory

    def htod(dst: FakeMemory, src: np.ndarray, stream: Any = None) -> None:
        dst.buffer[:] = np.frombuffer(np.ascontiguousarray(src).tobytes(), np.uint8)

    def dtoh(dst: np.ndarray, src: FakeMemory, stream: Any = None) -> None:
        dst[...] = np.frombuffer(src.buffer.tobytes(), dst.dtype).reshape(dst.shape)

    class Device:
        def __init__(self, index: int) -> None:
            pass

        def compute_capability(self) -> tuple[int, int]:
            return (8, 7)

    class Stream:
        handle = 0

        def synchronize(self) -> None:
            pass

    cuda.mem_alloc, cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = mem_alloc, htod, dtoh
    cuda.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    cuda.Device, cuda.Stream, cuda.Error = Device, Stream, RuntimeError
    cuda.memories = memories  # type: ignore[attr-defined]
    return cuda


def fake_tensorrt(version: str, calls: list[str], engine_ok: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    class ILogger:
        Severity = severity

        def __init__(self) -> None:
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "in", "out"

    class Context:
        def __init__(self, cuda: types.ModuleType) -> None:
            self.cuda, self.addresses = cuda, {}

        def set_tensor_address(self, name: str, address: int) -> None:
            self.addresses[name] = address

        def _run(self, x_addr: int, y_addr: int) -> bool:
            x, y = self.cuda.memories[x_addr], self.cuda.memories[y_addr]
            y.buffer[:] = np.frombuffer((np.frombuffer(x.buffer.tobytes(), np.float32) * 2).tobytes(), np.uint8)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            calls.append("execute_async_v3")
            return self._run(self.addresses["x"], self.addresses["y"])

        def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
            calls.append("execute_async_v2")
            return self._run(bindings[0], bindings[1])

    class Engine:
        num_io_tensors = num_bindings = 2

        def get_tensor_name(self, i: int) -> str:
            return ["x", "y"][i]

        get_binding_name = get_tensor_name

        def get_binding_index(self, name: str) -> int:
            return ["x", "y"].index(name)

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == "x" else TensorIOMode.OUTPUT

        def binding_is_input(self, i: int) -> bool:
            return i == 0

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return SHAPES[name]

        def get_binding_shape(self, i: int) -> tuple[int, ...]:
            return SHAPES[["x", "y"][i]]

        def get_tensor_dtype(self, name: str) -> str:
            return "float"

        def get_binding_dtype(self, i: int) -> str:
            return "float"

        def create_execution_context(self) -> Context:
            return Context(sys.modules["pycuda.driver"])

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            calls.append("deserialize")
            if not engine_ok:
                self.logger.log(severity.ERROR, "Serialization assertion: version tag mismatch")
                return None
            return Engine()

    trt.ILogger, trt.TensorIOMode, trt.Runtime = ILogger, TensorIOMode, Runtime
    trt.nptype = lambda dtype: np.float32
    return trt


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def install(monkeypatch: pytest.MonkeyPatch, version: str, engine_ok: bool = True) -> list[str]:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, calls, engine_ok))
    pycuda = types.ModuleType("pycuda")
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", types.ModuleType("pycuda.autoinit"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake_cuda())
    return calls


def build_fake_engine(bundle: Path, version: str, cc: tuple[int, int] = (8, 7), precision: str = "fp16") -> Path:
    key = key_for(bundle / "model.onnx", version, cc, precision)
    path = bundle / "engines" / key.file_name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"plan")
    write_sidecar(path, key)
    return path


@pytest.mark.parametrize(("version", "api"), [("10.3.0", "execute_async_v3"), ("8.5.2.2", "execute_async_v2")])
def test_both_io_apis_run_the_engine(monkeypatch: pytest.MonkeyPatch, bundle: Path, version: str, api: str) -> None:
    calls = install(monkeypatch, version)
    build_fake_engine(bundle, version)
    backend = create_backend("tensorrt", bundle / "model.onnx", precision="fp16")
    assert [s.name for s in backend.input_spec()] == ["x"] and backend.output_spec()[0].shape == (1, 2, 3)
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    np.testing.assert_array_equal(backend.infer({"x": x})["y"], 2 * x)
    assert calls == ["deserialize", api]
    backend.close()


def test_engine_for_another_gpu_is_refused_without_deserializing(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    calls = install(monkeypatch, "10.3.0")
    build_fake_engine(bundle, "10.3.0", cc=(7, 2))
    with pytest.raises(BundleError, match=r"no engine .* engines present for other devices/models: trt10\.3\.0_sm72.*build-engine"):
        create_backend("tensorrt", bundle / "model.onnx", precision="fp16")
    assert calls == []


def test_engine_tensorrt_cannot_load_is_refused(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0", engine_ok=False)
    build_fake_engine(bundle, "10.3.0")
    with pytest.raises(BundleError, match="engine incompatible.*version tag mismatch.*rebuild on target"):
        create_backend("tensorrt", bundle / "model.onnx", precision="fp16")


def test_fallback_only_when_asked(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    install(monkeypatch, "10.3.0")  # no engine built
    with pytest.raises(BundleError):
        create_backend("tensorrt", bundle / "model.onnx")
    with pytest.warns(RuntimeWarning, match="falling back to ONNX Runtime"):
        backend = create_backend("tensorrt", bundle / "model.onnx", allow_fallback=True)
    assert type(backend).__name__ == "OnnxRuntimeBackend"


def test_missing_tensorrt_is_a_config_error(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on a machine without TensorRT
    with pytest.raises(ConfigError, match="TensorRT is not importable"):
        create_backend("tensorrt", bundle / "model.onnx")


def test_build_engine_without_tensorrt_prints_the_trtexec_route(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    from typer.testing import CliRunner

    from edge_ad.cli import app

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = CliRunner().invoke(app, ["build-engine", str(bundle), "--precision", "fp16", "--workspace-mb", "256"])
    assert result.exit_code == ConfigError.exit_code
    output = " ".join(result.output.split())
    assert "TensorRT is not importable" in output and "--memPoolSize=workspace:256 --fp16" in output
    assert not (bundle / "engines").exists()
