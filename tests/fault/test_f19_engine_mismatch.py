"""F19: an engine built for another TensorRT version or GPU (manifest/sidecar trt 8.6.1 sm_87, device 10.3 sm_72).

Pass: refused before ``deserialize_cuda_engine`` when the key mismatches; a deserialize that returns None
(or logs an error) is BundleError("engine incompatible ... rebuild on target"); nothing falls back silently
to another backend. TensorRT and pycuda are replaced by stubs, so no GPU is needed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import edge_ad.backends.tensorrt as trt_backend
from edge_ad.backends import create_backend
from edge_ad.errors import BundleError
from edge_ad.inspector import Inspector
from edge_ad.trt_engine_cache import key_for, write_sidecar
from tests.helpers.bundles import make_tiny_bundle


class StubTensorRT:
    """What the backend touches of ``tensorrt``: version, ILogger, Runtime.deserialize_cuda_engine."""

    def __init__(self, version: str, engine: Any = None, error: str | None = None) -> None:
        self.__version__ = version
        self.deserialized: list[int] = []
        stub = self

        class ILogger:
            Severity = SimpleNamespace(ERROR="E", INTERNAL_ERROR="IE", WARNING="W")

            def __init__(self) -> None:
                pass

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.logger = logger

            def deserialize_cuda_engine(self, data: bytes) -> Any:
                stub.deserialized.append(len(data))
                if error is not None:
                    self.logger.log(ILogger.Severity.ERROR, error)
                return engine

        self.ILogger, self.Runtime = ILogger, Runtime


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle with an fp16 engine (and sidecar) built for TensorRT 8.6.1 on sm_87."""
    root = make_tiny_bundle(tmp_path / "bundle")
    key = key_for(root / "model.onnx", "8.6.1", "87", "fp16")
    (root / "engines").mkdir()
    engine = root / "engines" / key.file_name
    engine.write_bytes(b"serialized plan")
    write_sidecar(engine, key)
    return root


def device(monkeypatch: pytest.MonkeyPatch, trt: StubTensorRT, cc: tuple[int, int]) -> None:
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_backend, "import_cuda", lambda: SimpleNamespace())
    monkeypatch.setattr(trt_backend, "compute_capability", lambda cuda, device=0: cc)


@pytest.mark.parametrize(
    ("version", "cc", "message"),
    [
        ("10.3.0", (8, 7), "no engine trt10.3.0_sm87_fp16_"),
        ("8.6.1", (7, 2), "no engine trt8.6.1_sm72_fp16_"),
    ],
    ids=["other-tensorrt", "other-gpu"],
)
def test_f19_a_mismatched_engine_is_refused_before_deserializing(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, version: str, cc: tuple[int, int], message: str
) -> None:
    trt = StubTensorRT(version, engine=object())
    device(monkeypatch, trt, cc)
    with pytest.raises(BundleError) as info:
        create_backend("tensorrt", bundle / "model.onnx", precision="fp16")
    text = str(info.value)
    assert message in text and "engines present for other devices/models: trt8.6.1_sm87_fp16_" in text
    assert "edge-ad build-engine" in text  # says how to rebuild on the target
    assert trt.deserialized == []


def test_f19_a_renamed_engine_is_caught_by_its_sidecar(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = next((bundle / "engines").glob("*.engine"))
    key = key_for(bundle / "model.onnx", "10.3.0", "72", "fp16")
    engine.rename(engine.with_name(key.file_name))
    engine.with_suffix(".json").rename(engine.with_name(key.file_name).with_suffix(".json"))
    trt = StubTensorRT("10.3.0", engine=object())
    device(monkeypatch, trt, (7, 2))
    with pytest.raises(BundleError, match=r"built with TensorRT 8.6.1, this device has 10.3.0; built for GPU sm_87"):
        create_backend("tensorrt", bundle / "model.onnx", precision="fp16")
    assert trt.deserialized == []


@pytest.mark.parametrize(("engine", "error"), [(None, None), (object(), "Serialization assertion stdVersionRead failed")])
def test_f19_deserialize_failure_is_engine_incompatible(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, engine: Any, error: str | None
) -> None:
    trt = StubTensorRT("8.6.1", engine=engine, error=error)
    device(monkeypatch, trt, (8, 7))
    with pytest.raises(BundleError, match=r"engine incompatible \((.*)\); rebuild on target") as info:
        create_backend("tensorrt", bundle / "model.onnx", precision="fp16")
    assert (error or "deserialize_cuda_engine returned None") in str(info.value)
    assert len(trt.deserialized) == 1


def test_f19_no_silent_fallback_to_onnxruntime(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device(monkeypatch, StubTensorRT("10.3.0"), (7, 2))
    with pytest.raises(BundleError, match="no engine"):
        Inspector.from_bundle(bundle, backend="tensorrt", precision="fp16")
