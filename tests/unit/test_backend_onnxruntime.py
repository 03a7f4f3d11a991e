"""ONNX Runtime backend: specs, numerics against numpy, input/output checks, registry."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_ad import backends
from edge_ad.backends import available_backends, create_backend, register_backend
from edge_ad.backends.base import InferenceBackend, TensorSpec
from edge_ad.backends.onnxruntime import MAX_DEFAULT_THREADS, OnnxRuntimeBackend, physical_core_count
from edge_ad.errors import ConfigError, InferenceError
from tests.helpers.bundles import make_tiny_bundle, tiny_model_reference


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny")) / "model.onnx"


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(tiny_model, intra_op_num_threads=1)


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(1, 3, 32, 32)).astype(np.float32),
        "depth": rng.normal(scale=2.0, size=(1, 1, 32, 32)).astype(np.float32),
        "mask": (rng.random((1, 1, 32, 32)) > 0.7).astype(np.float32),
    }


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_specs_come_from_the_session(backend: OnnxRuntimeBackend) -> None:
    assert isinstance(backend, InferenceBackend)
    assert backend.input_spec() == [
        TensorSpec("image", (1, 3, 32, 32), "float32"),
        TensorSpec("depth", (1, 1, 32, 32), "float32"),
        TensorSpec("mask", (1, 1, 32, 32), "float32"),
    ]
    assert backend.output_spec() == [
        TensorSpec("anomaly_map", (1, 1, 4, 4), "float32"),
        TensorSpec("score", (1,), "float32"),
    ]
    assert backend.providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_outputs_equal_numpy_reference(tmp_path: Path, aggregation: str) -> None:
    model = make_tiny_bundle(tmp_path, aggregation=aggregation) / "model.onnx"
    with OnnxRuntimeBackend(model, intra_op_num_threads=1) as engine:
        for seed in range(3):
            inputs = _inputs(seed)
            out = engine.infer(inputs)
            ref_map, ref_score = tiny_model_reference(
                inputs["image"], inputs["depth"], inputs["mask"], aggregation
            )
            assert out["anomaly_map"].shape == (1, 1, 4, 4) and out["score"].shape == (1,)
            np.testing.assert_allclose(out["anomaly_map"], ref_map, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out["score"], ref_score, rtol=1e-5, atol=1e-6)
            assert float(out["score"][0]) > 0  # the masked map is not all zero for these inputs


def test_default_threads_are_physical_cores_capped(tiny_model: Path) -> None:
    engine = OnnxRuntimeBackend(tiny_model)
    assert engine.intra_op_num_threads == min(MAX_DEFAULT_THREADS, physical_core_count())
    assert OnnxRuntimeBackend(tiny_model, intra_op_num_threads=2).intra_op_num_threads == 2
    with pytest.raises(InferenceError, match="intra_op_num_threads must be >= 1"):
        OnnxRuntimeBackend(tiny_model, intra_op_num_threads=0)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("mask"), "missing ['mask']"),
        (lambda d: d.update(extra=np.zeros(1, np.float32)), "unexpected ['extra']"),
        (
            lambda d: d.update(image=d["image"].astype(np.float64)),
            "input 'image': expected float32 [1, 3, 32, 32], got float64",
        ),
        (
            lambda d: d.update(depth=d["depth"][:, :, :16]),
            "input 'depth': expected float32 [1, 1, 32, 32], got float32 [1, 1, 16, 32]",
        ),
        (
            lambda d: d["depth"].__setitem__((0, 0, 3, 4), np.nan),
            "input 'depth': 1 of 1024 values are not finite",
        ),
        (
            lambda d: d["image"].__setitem__((0, 1, 0, 0), np.inf),
            "input 'image': 1 of 3072 values are not finite",
        ),
        (lambda d: d.update(mask=d["mask"].tolist()), "input 'mask': expected a numpy array, got list"),
    ],
)
def test_bad_inputs_are_refused_before_the_session(
    backend: OnnxRuntimeBackend, mutate, fragment: str
) -> None:
    inputs = _inputs()
    mutate(inputs)
    with pytest.raises(InferenceError) as info:
        backend.infer(inputs)
    assert fragment in str(info.value)


def test_non_finite_output_is_an_error(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["x"], ["y"])],
        "sqrt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    path = _save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "sqrt.onnx"
    )
    engine = OnnxRuntimeBackend(path, intra_op_num_threads=1)
    np.testing.assert_allclose(engine.infer({"x": np.array([1, 4, 9], np.float32)})["y"], [1, 2, 3])
    with pytest.raises(InferenceError, match="output 'y': 1 of 3 values are not finite"):
        engine.infer({"x": np.array([1, -4, 9], np.float32)})


def test_runtime_failure_is_wrapped(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n" + n]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [None])],
    )
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "add.onnx")
    engine = OnnxRuntimeBackend(path, intra_op_num_threads=1)
    assert engine.input_spec()[0].shape == (None,)  # symbolic dims are dynamic
    with pytest.raises(InferenceError, match="onnxruntime failed"):
        engine.infer({"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)})


def test_unloadable_model_and_missing_provider(tmp_path: Path, tiny_model: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot onnx" * 10)
    with pytest.raises(InferenceError, match="INVALID_PROTOBUF"):
        OnnxRuntimeBackend(garbage)
    with pytest.raises(InferenceError, match="model file not found"):
        OnnxRuntimeBackend(tmp_path / "absent.onnx")
    with pytest.raises(
        InferenceError, match="execution provider\\(s\\) NoSuchExecutionProvider not available"
    ):
        OnnxRuntimeBackend(tiny_model, providers=["NoSuchExecutionProvider"])


def test_closed_backend_refuses(tiny_model: Path) -> None:
    engine = OnnxRuntimeBackend(tiny_model, intra_op_num_threads=1)
    engine.close()
    with pytest.raises(InferenceError, match="backend is closed"):
        engine.infer(_inputs())


def test_registry(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_REGISTRY", backends._REGISTRY.copy())  # keep the test's entries local
    assert {"onnxruntime", "tensorrt"} <= set(available_backends())
    engine = create_backend("onnxruntime", tiny_model, intra_op_num_threads=1)
    assert isinstance(engine, OnnxRuntimeBackend)
    with pytest.raises(ConfigError, match="unknown backend 'openvino'"):
        create_backend("openvino", tiny_model)

    @register_backend("test-double")
    class Double(OnnxRuntimeBackend):
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_backend("test-double")(OnnxRuntimeBackend)
    assert any("registered twice" in str(w.message) for w in caught)
    assert type(create_backend("test-double", tiny_model)) is OnnxRuntimeBackend
