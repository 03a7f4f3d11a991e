"""Engine building on a stand-in ``tensorrt`` / ``pycuda`` (no GPU here): 8.x and 10.x flags, FP32 pins, calibrator.

The fakes implement only the documented calls the builder makes (TensorRT Python API: Builder,
create_network, OnnxParser.parse_from_file, IBuilderConfig.set_memory_pool_limit / set_flag /
int8_calibrator, ILayer.precision / set_output_type, build_serialized_network; pycuda.driver
mem_alloc / memcpy_htod / Device.compute_capability). The fake builder drives an INT8 calibrator
the way IInt8Calibrator is documented: get_batch_size, read_calibration_cache, get_batch until it
returns None or [], then write_calibration_cache.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_ad.bundle import Bundle, load_bundle
from export.tensorrt import build_engine
from tests.helpers.bundles import make_tiny_bundle

INPUTS = ("image", "depth", "mask")
LAYERS = ("conv", "dist", "score")
FLOAT_NODES = ("dist", "score")


class FakeMemory:
    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.data = nbytes, b""

    def __int__(self) -> int:
        return id(self)


def fake_cuda() -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")

    def memcpy_htod(dest: FakeMemory, src: np.ndarray) -> None:
        assert src.nbytes == dest.nbytes
        dest.data = np.ascontiguousarray(src).tobytes()

    class Device:
        def __init__(self, index: int) -> None:
            pass

        def compute_capability(self) -> tuple[int, int]:
            return (8, 7)

    cuda.mem_alloc, cuda.memcpy_htod, cuda.Device = FakeMemory, memcpy_htod, Device
    return cuda


def fake_tensorrt(version: str, record: dict[str, Any]) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32 = "float32"
    ten = int(version.split(".")[0]) >= 10

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0  # TensorRT 10: still defined, deprecated and ignored

    class BuilderFlag(enum.Enum):
        FP16, INT8, OBEY_PRECISION_CONSTRAINTS = "fp16", "int8", "obey"

    class MemoryPoolType(enum.Enum):
        WORKSPACE = "workspace"

    class Tensor:
        def __init__(self, name: str) -> None:
            self.name = name

    class Layer:
        def __init__(self, name: str) -> None:
            self.name, self.num_outputs, self.precision, self.output_types = name, 2, None, {}

        def set_output_type(self, index: int, dtype: Any) -> None:
            self.output_types[index] = dtype

    class Network:
        def __init__(self) -> None:
            self.layers = [Layer(name) for name in LAYERS]
            self.num_layers, self.num_inputs = len(self.layers), len(INPUTS)

        def get_layer(self, index: int) -> Layer:
            return self.layers[index]

        def get_input(self, index: int) -> Tensor:
            return Tensor(INPUTS[index])

    class Config:
        def __init__(self) -> None:
            self.flags: set[BuilderFlag] = set()
            self.pools: dict[MemoryPoolType, int] = {}
            self.int8_calibrator: Any = None

        def set_flag(self, flag: BuilderFlag) -> None:
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self.pools[pool] = size

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "max_workspace_size" and ten:
                raise AttributeError("max_workspace_size was removed in TensorRT 10.0")
            object.__setattr__(self, name, value)

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            record["network_flags"] = flags
            record["network"] = Network()
            return record["network"]

        def create_builder_config(self) -> Config:
            record["config"] = Config()
            return record["config"]

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            calibrator = config.int8_calibrator
            if calibrator is not None:
                record["batch_size"] = calibrator.get_batch_size()
                if calibrator.read_calibration_cache() is None:
                    batches = []
                    while batch := calibrator.get_batch(list(INPUTS)):
                        assert all(isinstance(pointer, int) for pointer in batch)
                        batches.append(batch)
                    record["batches"] = len(batches)
                    calibrator.write_calibration_cache(memoryview(b"TRT-1000-EntropyCalibration2\n"))
            return b"serialized plan"

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            record["parsed"] = Path(path).name
            return True

        def get_error(self, index: int) -> str:
            raise IndexError(index)

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.ILogger, trt.Builder, trt.OnnxParser, trt.IInt8EntropyCalibrator2 = ILogger, Builder, OnnxParser, IInt8EntropyCalibrator2
    trt.NetworkDefinitionCreationFlag, trt.BuilderFlag, trt.MemoryPoolType = (
        NetworkDefinitionCreationFlag,
        BuilderFlag,
        MemoryPoolType,
    )
    return trt


def install(monkeypatch: pytest.MonkeyPatch, version: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, record))
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", types.ModuleType("pycuda.autoinit"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake_cuda())
    return record


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    loaded = load_bundle(make_tiny_bundle(tmp_path / "bundle"))
    return dataclasses.replace(loaded, manifest=dataclasses.replace(loaded.manifest, float_nodes=FLOAT_NODES))


@pytest.mark.parametrize(("version", "network_flags"), [("10.3.0", 0), ("8.5.2.2", 1)])
def test_fp16_build_pins_float_nodes_like_the_trtexec_fallback(
    monkeypatch: pytest.MonkeyPatch, bundle: Bundle, version: str, network_flags: int
) -> None:
    record = install(monkeypatch, version)
    result = build_engine(bundle, "fp16", workspace_mb=256)
    trt = sys.modules["tensorrt"]
    assert result.built and result.path.read_bytes() == b"serialized plan"
    assert json.loads(result.path.with_suffix(".json").read_text())["key"]["tensorrt"] == version
    assert record["network_flags"] == network_flags  # EXPLICIT_BATCH set on 8.x only
    config = record["config"]
    assert config.pools == {trt.MemoryPoolType.WORKSPACE: 256 << 20}
    assert config.flags == {trt.BuilderFlag.FP16, trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS}
    layers = {layer.name: layer for layer in record["network"].layers}
    assert all(layers[n].precision == trt.float32 and layers[n].output_types == {0: trt.float32, 1: trt.float32} for n in FLOAT_NODES)
    assert layers["conv"].precision is None and not layers["conv"].output_types
    # The printed trtexec route pins the same layers.
    assert result.trtexec[-4:] == [
        "--fp16",
        "--precisionConstraints=obey",
        "--layerPrecisions=dist:fp32,score:fp32",
        "--layerOutputTypes=dist:fp32,score:fp32",
    ]
    again = build_engine(bundle, "fp16", workspace_mb=256)
    assert not again.built and again.path == result.path


def test_int8_calibrator_follows_the_documented_protocol(monkeypatch: pytest.MonkeyPatch, bundle: Bundle) -> None:
    record = install(monkeypatch, "10.3.0")
    samples = [
        {"image": np.full((1, 3, 32, 32), i, np.float32), "depth": np.zeros((1, 1, 32, 32), np.float32),
         "mask": np.ones((1, 1, 32, 32), np.float32)}
        for i in range(3)
    ]
    result = build_engine(bundle, "int8", calibration=samples)
    assert record["parsed"] == "model.onnx"  # no Q/DQ model in this bundle: FP32 model + calibrator
    assert record["batch_size"] == 1 and record["batches"] == 3
    cache = result.path.with_name(result.path.name.replace(".engine", ".calib"))
    assert cache.read_bytes() == b"TRT-1000-EntropyCalibration2\n"
    assert f"--calib={cache}" in result.trtexec and "--int8" in result.trtexec and "--fp16" not in result.trtexec
    # A rebuild reads the cache instead of calibrating again.
    record.clear()
    build_engine(bundle, "int8", calibration=samples, rebuild=True)
    assert "batches" not in record
