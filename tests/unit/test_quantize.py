"""INT8 quantization: which nodes stay float, Pad folding, and the QDQ models ONNX Runtime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_ad.dataset import open_split
from edge_ad.errors import ExportError
from edge_ad.preprocess import PreprocessConfig
from export.float_nodes import (
    MAX_RETRY_LEVEL,
    float_node_plan,
    head_convs,
    module_nodes,
    scale_convs,
    soft_clamp_nodes,
    tail_nodes,
)
from export.int8_gate import score_all
from export.quantize import (
    PreprocessedReader,
    calibration_batches,
    fold_pads_into_convs,
    preserve_kernel_sums,
    quantize_model,
    round_keeping_sums,
)
from export.score_offset import (
    OFFSET_INITIALIZER,
    OFFSET_NODE_PREFIX,
    apply_score_offset,
    measure_score_offset,
    offset_node_names,
    subtract_score_offset,
)
from tests.helpers.datasets import make_mvtec3d


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32 if array.dtype.kind == "f" else array.dtype), name)


def mini_flow_model() -> onnx.ModelProto:
    """backbone conv (after a "same" Pad) -> one soft-clamped affine coupling + a student conv -> distance map."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Pad", ["image", "pads"], ["padded"], name="/backbone/Pad", mode="constant"),
        helper.make_node("Conv", ["padded", "w_b", "b_b"], ["conv_b"], name="/backbone/conv"),
        helper.make_node("Relu", ["conv_b"], ["h"], name="/backbone/relu"),
        helper.make_node("Conv", ["h", "w_t", "b_t"], ["r"], name="/teacher/s/conv2"),
        helper.make_node("Slice", ["r", "s0", "s4", "ax1"], ["s"], name="/teacher/slice_s"),
        helper.make_node("Slice", ["r", "s4", "s8", "ax1"], ["t"], name="/teacher/slice_t"),
        helper.make_node("Div", ["s", "alpha"], ["s_a"], name="/teacher/Div"),
        helper.make_node("Atan", ["s_a"], ["at"], name="/teacher/Atan"),
        helper.make_node("Mul", ["at", "gain"], ["log_e"], name="/teacher/Mul"),
        helper.make_node("Exp", ["log_e"], ["e"], name="/teacher/Exp"),
        helper.make_node("Slice", ["h", "s0", "s4", "ax1"], ["x1"], name="/teacher/slice_x"),
        helper.make_node("Mul", ["x1", "e"], ["xe"], name="/teacher/Mul_1"),
        helper.make_node("Add", ["xe", "t"], ["z"], name="/teacher/Add"),
        helper.make_node("Conv", ["h", "w_s", "b_s"], ["st"], name="/student/conv"),
        helper.make_node("Sub", ["st", "z"], ["diff"], name="/Sub"),
        helper.make_node("Pow", ["diff", "two"], ["sq"], name="/Pow"),
        helper.make_node("ReduceMean", ["sq"], ["anomaly_map"], name="/ReduceMean", axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], name="/ReduceMax", axes=[1, 2, 3], keepdims=0),
    ]
    inits = [
        _init("pads", np.array([0, 0, 0, 0, 0, 0, 2, 2], np.int64)),
        _init("w_b", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("b_b", rng.normal(0, 0.1, 8)),
        _init("w_t", rng.normal(0, 0.3, (8, 8, 1, 1))),
        _init("b_t", np.zeros(8)),
        _init("w_s", rng.normal(0, 0.3, (4, 8, 1, 1))),
        _init("b_s", np.zeros(4)),
        _init("s0", np.array([0], np.int64)),
        _init("s4", np.array([4], np.int64)),
        _init("s8", np.array([8], np.int64)),
        _init("ax1", np.array([1], np.int64)),
        _init("alpha", np.array(1.9)),
        _init("gain", np.array(1.9 * 0.636)),
        _init("two", np.array(2.0)),
    ]
    graph = helper.make_graph(
        nodes,
        "mini_flow",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 16, 16]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def _feeds(n: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"image": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_structural_groups_find_the_flow_and_the_tail() -> None:
    graph = mini_flow_model().graph
    assert set(soft_clamp_nodes(graph)) == {"/teacher/Div", "/teacher/Atan", "/teacher/Mul", "/teacher/Exp"}
    tail = set(tail_nodes(graph))
    assert {"/Sub", "/Pow", "/ReduceMean", "/ReduceMax", "/teacher/Add", "/teacher/Mul_1"} <= tail
    assert "/backbone/relu" not in tail and "/teacher/Atan" in tail  # relu feeds convs; atan only the tail
    assert scale_convs(graph) == ["/teacher/s/conv2"]
    assert head_convs(graph) == ["/teacher/s/conv2", "/student/conv"]


def test_retry_levels_only_ever_add_float_nodes() -> None:
    model = mini_flow_model()
    plans = [set(float_node_plan(model, level).nodes) for level in range(MAX_RETRY_LEVEL + 1)]
    assert all(a < b or a == b for a, b in zip(plans, plans[1:], strict=False))
    assert "/backbone/conv" not in plans[1] and "/backbone/conv" in plans[2]
    assert "/student/conv" in plans[1]
    with pytest.raises(ExportError, match="retry level"):
        float_node_plan(model, MAX_RETRY_LEVEL + 1)
    # Modules are path segments: a wrapper around the detector does not hide them.
    for node in model.graph.node:
        node.name = "/detector" + node.name
    assert "/detector/backbone/relu" in float_node_plan(model, 2).nodes
    assert "/detector/teacher/Add" in module_nodes(model.graph, "teacher")


def test_pad_folding_keeps_the_numbers(tmp_path: Path) -> None:
    model = mini_flow_model()
    onnx.save(model, str(tmp_path / "a.onnx"))
    assert fold_pads_into_convs(model) == 1
    assert not [n for n in model.graph.node if n.op_type == "Pad"]
    conv = next(n for n in model.graph.node if n.name == "/backbone/conv")
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [0, 0, 2, 2]
    onnx.save(model, str(tmp_path / "b.onnx"))
    feed = _feeds(1)[0]
    for a, b in zip(_run(tmp_path / "a.onnx", feed), _run(tmp_path / "b.onnx", feed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_onnxruntime_int8_model_is_uint8_qdq_with_float_nodes_untouched(tmp_path: Path) -> None:
    model = mini_flow_model()
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    plan = float_node_plan(model, 0)
    out = quantize_model(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", PreprocessedReader(_feeds(16)), plan)
    q = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    zero_points = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)
    produced_by_dq = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in q.graph.node}
    # Float nodes read float tensors straight from float producers (no DequantizeLinear in front).
    for name in ("/teacher/Atan", "/teacher/Exp", "/Pow", "/ReduceMean"):
        assert not set(by_name[name].input) & produced_by_dq, name
    assert by_name["/backbone/conv"].input[0] in produced_by_dq  # the conv did get quantized
    for feed in _feeds(3, seed=7):
        ref, got = _run(tmp_path / "fp32.onnx", feed)[1], _run(out, feed)[1]
        assert abs(got[0] - ref[0]) <= 0.1 * abs(ref[0])


def test_tensorrt_int8_model_is_symmetric(tmp_path: Path) -> None:
    model = mini_flow_model()
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    out = quantize_model(
        tmp_path / "fp32.onnx", tmp_path / "trt.onnx", PreprocessedReader(_feeds(8)), float_node_plan(model), for_tensorrt=True
    )
    q = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    zero_points = [inits[n.input[2]] for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    # int8 activations and weights (int32 for biases), every zero point 0: what TensorRT requires.
    assert zero_points and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points)
    assert any(z.dtype == np.int8 for z in zero_points)


def test_calibration_takes_good_parts_through_preprocess_and_hashes_them(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path / "data", n_train=3, size=(24, 24))
    config = PreprocessConfig(image_size=16, depth_size=16, mode="rgbd", mask_dilate_px=2, foreground=None)
    train = open_split(root, "train")
    batches, digest = calibration_batches(train, config, use_xyz=True)
    assert len(batches) == 3 and batches[0]["image"].shape == (1, 3, 16, 16) and batches[0]["depth"].any()
    assert calibration_batches(train, config, use_xyz=True)[1] == digest
    assert calibration_batches(train[:2], config, use_xyz=True)[1] != digest
    with pytest.raises(ExportError, match="good parts only"):
        calibration_batches([s for s in open_split(root, "test") if s.label == 1], config, use_xyz=True)
    reader = PreprocessedReader(batches)
    first = reader.get_next()
    while reader.get_next() is not None:
        pass
    reader.rewind()
    assert reader.get_next() is first
    with pytest.raises(ExportError, match="at least one good sample"):
        PreprocessedReader([])


def test_rounding_keeps_kernel_sums_and_stays_within_one_step() -> None:
    # The first depthwise kernel of the tire run's Lite0, over its scale: rounded tap by tap the
    # sum is +1 step (the float sum is -0.2), so a flat input gets an offset over the whole map.
    grid = np.array([[-76.6, -11.4, 86.6, -127.0, 5.4, 120.6, 0.6, 0.6, 1.2]])
    plain, kept = np.rint(grid), round_keeping_sums(grid)
    assert plain.sum() == 1 and kept.sum() == 0
    assert np.all(np.abs(kept - grid) < 1) and kept[0, 3] == -127  # the range-setting tap is exact
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 40, (200, 25))
    sums = round_keeping_sums(rows)
    np.testing.assert_array_equal(sums.sum(axis=1), np.rint(rows.sum(axis=1)))
    assert np.all(np.abs(sums - rows) < 1)
    # Least squares among integer vectors with that sum: never worse than a random valid pick.
    assert np.sum((sums - rows) ** 2) <= np.sum((np.floor(rows) + (rng.random(rows.shape) < 0.5) - rows) ** 2)
    np.testing.assert_array_equal(round_keeping_sums(rows[:, :1]), np.rint(rows[:, :1]))  # 1x1 convs


def test_quantized_convs_answer_a_flat_input_like_fp32(tmp_path: Path) -> None:
    model = mini_flow_model()
    # An edge detector: large taps summing to ~0, as BN folding leaves in EfficientNet's stem.
    taps = np.array([127.0, 50.4, 20.4, 10.4, -60.6, -80.6, -40.6, -20.6, -5.6])  # in steps of 7.3 / 127
    w_b = np.broadcast_to((taps * 7.3 / 127).reshape(3, 3), (8, 3, 3, 3)).astype(np.float32).copy()
    assert abs(np.rint(taps).sum() - taps.sum()) > 1.5  # tap-by-tap rounding: 1.6 steps off
    inits = {i.name: i for i in model.graph.initializer}
    inits["w_b"].CopyFrom(numpy_helper.from_array(w_b, "w_b"))
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    out = quantize_model(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", PreprocessedReader(_feeds(8)), float_node_plan(model))
    q = onnx.load(str(out))
    qi = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    weights = qi["w_b_quantized"].astype(np.float64) * qi["w_b_scale"].reshape(-1, 1, 1, 1)
    step = qi["w_b_scale"].reshape(-1, 1)
    float_sums, int_sums = w_b.sum(axis=(2, 3)), weights.sum(axis=(2, 3))
    assert np.all(np.abs(int_sums - float_sums) <= 0.5 * step + 1e-9)  # half a step per (out, in) kernel
    # Idempotent: already-kept sums change nothing.
    assert preserve_kernel_sums(q, onnx.load(str(tmp_path / "fp32.onnx"))) == 0


def test_score_offset_shifts_both_outputs_and_nothing_else(tmp_path: Path) -> None:
    model = mini_flow_model()
    onnx.save(model, str(tmp_path / "raw.onnx"))
    subtract_score_offset(model, 0.25)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "shifted.onnx"))
    assert [o.name for o in model.graph.output] == ["anomaly_map", "score"]
    assert set(offset_node_names()) <= {n.name for n in model.graph.node if n.op_type == "Sub"}
    for feed in _feeds(2):
        (raw_map, raw_score), (map_, score) = _run(tmp_path / "raw.onnx", feed), _run(tmp_path / "shifted.onnx", feed)
        # The score is still the max of the uncorrected map, then corrected: the same constant on both.
        np.testing.assert_allclose(map_, raw_map - 0.25, rtol=0, atol=1e-6)
        np.testing.assert_allclose(score, raw_score - 0.25, rtol=0, atol=1e-6)
    with pytest.raises(ExportError, match="already subtracts"):
        subtract_score_offset(model, 0.25)
    with pytest.raises(ExportError, match="no output heatmap"):
        subtract_score_offset(mini_flow_model(), 0.1, outputs=("heatmap",))


def _scoring_higher(model: onnx.ModelProto, delta: float) -> onnx.ModelProto:
    """``model`` with ``delta`` added to its map and score by nodes of its own (not an offset correction)."""
    subtract_score_offset(model, -delta)
    for init in model.graph.initializer:
        if init.name == OFFSET_INITIALIZER:
            init.name = "model_bias"
    for node in model.graph.node:
        node.input[:] = ["model_bias" if name == OFFSET_INITIALIZER else name for name in node.input]
        node.name = node.name.replace(OFFSET_NODE_PREFIX, "/bias")
    return model


def test_score_offset_is_measured_on_calibration_scores_and_removed(tmp_path: Path) -> None:
    model = mini_flow_model()
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    feeds = _feeds(5)
    fp32 = score_all(tmp_path / "fp32.onnx", feeds)
    onnx.save(_scoring_higher(model, 0.5), str(tmp_path / "high.onnx"))  # as INT8's noise makes it
    assert measure_score_offset(fp32, tmp_path / "high.onnx", feeds) == pytest.approx(0.5, abs=1e-5)
    # Removing it in place brings the scores back to FP32's, on inputs it was not measured on.
    assert apply_score_offset(fp32, tmp_path / "high.onnx", feeds) == pytest.approx(0.5, abs=1e-5)
    other = _feeds(3, seed=9)
    np.testing.assert_allclose(score_all(tmp_path / "high.onnx", other), score_all(tmp_path / "fp32.onnx", other), atol=1e-5)
    with pytest.raises(ExportError, match="5 calibration inputs but 4"):
        measure_score_offset(fp32[:4], tmp_path / "high.onnx", feeds)
