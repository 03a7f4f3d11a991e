"""Static INT8 quantization (QDQ) of a bundle's ONNX graph, calibrated on good parts.

Two flavours from one FP32 graph and one calibration set:

* ONNX Runtime (CPU): uint8 activations (asymmetric) and per-channel int8 weights. Signed
  activations are several times slower on x86/ARM CPUs, whose int8 kernels want u8 x s8.
* TensorRT: int8 activations and weights, both symmetric (zero point 0), as TensorRT's explicit
  quantization requires.

What stays in float, and why (the names go into the manifest's ``float_nodes``):

* the flow's soft-clamp path ``exp(alpha * 0.636 * atan(s / alpha))``: the exponent amplifies any
  rounding of ``s`` into a multiplicative error of the latent ``z``;
* the "tail": every node after the last convolution on each path to the outputs (the
  student-teacher distance, the mask at the grid, the score reduction), so distances are computed
  in FP32 from dequantized features;
* on retry, level by level (:func:`float_node_plan`): the flow's scale/shift convolutions and
  the last convolutions before the tail, then the feature extractor, then the teacher flow.

Only convolutions, matrix products and the activations fused into them are quantized
(:data:`QUANTIZED_OP_TYPES`): element-wise ops on small feature maps gain nothing from int8 and
each extra Q/DQ pair costs time and accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from edge_ad.dataset import Sample
from edge_ad.errors import ExportError
from edge_ad.preprocess import PreprocessConfig, preprocess, to_model_inputs

# Heavy ops worth int8 kernels, the activations the quantizer folds into their output range, and
# Add (EfficientNet's residuals: in float each costs a dequantize + quantize of a whole map).
QUANTIZED_OP_TYPES = ("Conv", "MatMul", "Gemm", "Relu", "Clip", "Add")
HEAVY_OP_TYPES = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
# Element-wise ops that can sit between a scale conv and the Atan of the soft clamp (slice of the
# conv output into s and t, the learnable gamma, the division by alpha).
_SCALE_PATH_OPS = frozenset({"Mul", "Div", "Slice", "Split", "Gather", "Identity", "Reshape"})
MAX_RETRY_LEVEL = 3
# Submodule names of trainer.ast.model.ASTDetector, as they appear in exported node names.
FEATURE_EXTRACTOR_MODULE = "backbone"
TEACHER_MODULE = "teacher"


@dataclass(frozen=True)
class FloatNodePlan:
    """Node names kept in float, grouped by the reason (``reason -> names``)."""

    groups: dict[str, tuple[str, ...]]

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every excluded node name, sorted and unique."""
        return tuple(sorted({name for names in self.groups.values() for name in names}))

    def summary(self) -> dict[str, int]:
        """Count per reason, for reports."""
        return {reason: len(names) for reason, names in self.groups.items()}


@dataclass(frozen=True)
class QuantizationSettings:
    """Everything that decides the quantized graph; recorded in the export report and manifest."""

    calibration_samples: int
    data_hash: str
    level: int = 0
    per_channel: bool = True
    calibrate_method: str = "MinMax"
    op_types: tuple[str, ...] = QUANTIZED_OP_TYPES
    float_groups: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "calibration_samples": self.calibration_samples,
            "calibration_data_hash": self.data_hash,
            "retry_level": self.level,
            "per_channel": self.per_channel,
            "calibrate_method": self.calibrate_method,
            "op_types_to_quantize": list(self.op_types),
            "float_node_groups": dict(self.float_groups),
        }


class PreprocessedReader(CalibrationDataReader):
    """Feeds ONNX Runtime's calibrator exactly what the runtime feeds the model.

    Each item is ``to_model_inputs([preprocess(rgb, xyz, config)])``: THE preprocessing, batch of
    one. Inputs are computed once and kept, so the reader can be rewound for a second
    quantization (the TensorRT flavour) without decoding the images again.
    """

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]) -> None:
        """Wrap ready model-input dicts (see :func:`calibration_batches`)."""
        if not batches:
            raise ExportError("INT8 calibration needs at least one good sample, got none")
        self.batches = list(batches)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when the calibration set is exhausted."""
        return next(self._iter, None)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._iter = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def calibration_batches(
    samples: Iterable[Sample], config: PreprocessConfig, use_xyz: bool
) -> tuple[list[dict[str, np.ndarray]], str]:
    """Model inputs of good ``samples`` through THE preprocessing, and a hash of the files used.

    Defective samples are refused: INT8 ranges are learnt from good parts only, as the model's
    notion of normal is.
    """
    batches: list[dict[str, np.ndarray]] = []
    digest = hashlib.sha256()
    for sample in samples:
        if sample.label != 0:
            raise ExportError(f"{sample.path}: INT8 calibration takes good parts only, got a {sample.defect_type!r} sample")
        batches.append(to_model_inputs([preprocess(sample.rgb, sample.xyz if use_xyz else None, config)]))
        digest.update(sample.name.encode())
        for array in (sample.rgb, sample.xyz if use_xyz else None):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return batches, f"sha256:{digest.hexdigest()}"


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    table: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            table.setdefault(name, []).append(node)
    return table


def _nodes_with_heavy_descendant(graph: onnx.GraphProto) -> set[str]:
    """Names of nodes from which some Conv/MatMul/Gemm is reachable downstream (itself excluded)."""
    consumers = _consumers(graph)
    memo: dict[str, bool] = {}
    # ONNX graphs are topologically sorted: walk backwards so every consumer is decided first.
    for node in reversed(graph.node):
        memo[node.name] = any(
            nxt.op_type in HEAVY_OP_TYPES or memo.get(nxt.name, False)
            for out in node.output
            for nxt in consumers.get(out, [])
        )
    return {name for name, heavy in memo.items() if heavy}


def tail_nodes(graph: onnx.GraphProto) -> list[str]:
    """Nodes after the last heavy op on every path to the outputs (distances, masks, the score)."""
    heavy_after = _nodes_with_heavy_descendant(graph)
    # Constants are values, not computations: nothing to keep in float.
    skip = HEAVY_OP_TYPES | {"Constant"}
    return [n.name for n in graph.node if n.op_type not in skip and n.name not in heavy_after]


def soft_clamp_nodes(graph: onnx.GraphProto) -> list[str]:
    """Atan and Exp nodes and the element-wise ops between them (the flow's scale path)."""
    producers, consumers = _producers(graph), _consumers(graph)
    found: list[str] = []
    for node in graph.node:
        if node.op_type not in ("Atan", "Exp"):
            continue
        found.append(node.name)
        if node.op_type == "Atan":
            # s / alpha before, alpha * 0.636 * (.) after, up to the Exp.
            before = producers.get(node.input[0])
            if before is not None and before.op_type in ("Div", "Mul"):
                found.append(before.name)
            frontier = list(consumers.get(node.output[0], []))
            while frontier:
                nxt = frontier.pop()
                if nxt.op_type == "Mul" and nxt.name not in found:
                    found.append(nxt.name)
                    frontier.extend(consumers.get(nxt.output[0], []))
    return found


def scale_convs(graph: onnx.GraphProto) -> list[str]:
    """Convolutions whose output reaches an Atan through slices and scalings only (flow s/t heads)."""
    producers = _producers(graph)
    found: list[str] = []
    for node in graph.node:
        if node.op_type != "Atan":
            continue
        current = producers.get(node.input[0])
        while current is not None and current.op_type in _SCALE_PATH_OPS:
            current = producers.get(current.input[0])
        if current is not None and current.op_type in HEAVY_OP_TYPES and current.name not in found:
            found.append(current.name)
    return found


def head_convs(graph: onnx.GraphProto) -> list[str]:
    """Heavy ops with no heavy op after them: the last convolutions before the float tail."""
    heavy_after = _nodes_with_heavy_descendant(graph)
    return [n.name for n in graph.node if n.op_type in HEAVY_OP_TYPES and n.name not in heavy_after]


def module_nodes(graph: onnx.GraphProto, module: str) -> list[str]:
    """Every node exported from submodule ``module`` (the tracer names nodes ``/<module path>/<op>``).

    Matched as a path segment, so wrappers around the detector (``/detector/backbone/...``) do
    not matter. All of its nodes, not only the convolutions: a quantized Clip or Add between two
    float convs would still put 8-bit rounding on the activations.
    """
    return [n.name for n in graph.node if module in n.name.split("/")[:-1] and n.op_type != "Constant"]


def float_node_plan(model: onnx.ModelProto, level: int = 0) -> FloatNodePlan:
    """Which nodes stay float at retry ``level`` (each level keeps everything of the one before).

    0: soft clamp + FP32 tail; 1: + the flow's scale/shift convs and the last convs before the
    tail; 2: + the feature extractor (module ``backbone``: its 8-bit noise is amplified by the
    flow, whose scales reach e^alpha per block); 3: + the teacher flow (module ``teacher``).
    """
    if not 0 <= level <= MAX_RETRY_LEVEL:
        raise ExportError(f"INT8 retry level must be in 0..{MAX_RETRY_LEVEL}, got {level}")
    graph = model.graph
    unnamed = [i for i, n in enumerate(graph.node) if not n.name]
    if unnamed:
        raise ExportError(f"graph has {len(unnamed)} unnamed nodes (first at index {unnamed[0]}); cannot exclude by name")
    groups = {"soft_clamp": tuple(soft_clamp_nodes(graph)), "fp32_tail": tuple(tail_nodes(graph))}
    if level >= 1:
        groups["scale_convs"] = tuple(scale_convs(graph))
        groups["head_convs"] = tuple(head_convs(graph))
    if level >= 2:
        groups["feature_extractor"] = tuple(module_nodes(graph, FEATURE_EXTRACTOR_MODULE))
    if level >= 3:
        groups["teacher_flow"] = tuple(module_nodes(graph, TEACHER_MODULE))
    return FloatNodePlan(groups)


def fold_pads_into_convs(model: onnx.ModelProto) -> int:
    """Merge zero-valued constant Pads into the Conv they feed (in place); returns how many.

    EfficientNet's "same" padding is a separate Pad before many convolutions. Left in the QDQ
    graph it runs in float between a dequantize and a quantize of a large map (ONNX Runtime does
    not fuse it); as the conv's own ``pads`` it costs nothing. Same maths either way.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    outputs = {value.name for value in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        value_name = pad.input[2] if len(pad.input) > 2 else ""
        value = onnx.numpy_helper.to_array(inits[value_name]) if value_name in inits else np.zeros(1)
        if mode != b"constant" or value_name not in ("", *inits) or np.any(value != 0):
            continue
        pads = onnx.numpy_helper.to_array(inits[pad.input[1]]).astype(int).tolist()
        users = consumers.get(pad.output[0], [])
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or len(users) != 1 or pad.output[0] in outputs:
            continue
        conv = users[0]
        attrs = {a.name: a for a in conv.attribute}
        auto_pad = attrs["auto_pad"].s if "auto_pad" in attrs else b"NOTSET"
        if conv.op_type != "Conv" or conv.input[0] != pad.output[0] or auto_pad != b"NOTSET":
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        merged = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        if "pads" in attrs:
            conv.attribute.remove(attrs["pads"])
        conv.attribute.append(onnx.helper.make_attribute("pads", merged))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    return len(folded)


def prepare_for_quantization(fp32_path: Path, out_path: Path) -> Path:
    """Constant folding, shape inference and Pad folding of ``fp32_path`` into ``out_path`` (same maths).

    The tracer leaves EfficientNet's "same" padding as shape arithmetic feeding each Pad; folded to
    constants (ONNX Runtime's pre-processing) the Pads can then merge into their convolutions.
    Node names of the remaining nodes are kept: plan float nodes on *this* graph.
    """
    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
        model = onnx.load(str(out_path))
        fold_pads_into_convs(model)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(out_path))
    except (RuntimeError, ValueError, KeyError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"preparing {fp32_path} for INT8 quantization failed: {exc}") from exc
    return Path(out_path)


def quantize_model(
    fp32_path: Path,
    out_path: Path,
    reader: PreprocessedReader,
    plan: FloatNodePlan,
    *,
    for_tensorrt: bool = False,
    per_channel: bool = True,
    calibrate_method: CalibrationMethod = CalibrationMethod.MinMax,
    op_types: Sequence[str] = QUANTIZED_OP_TYPES,
) -> Path:
    """Write a QDQ INT8 model of ``fp32_path`` to ``out_path``, calibrated by ``reader``.

    ``fp32_path`` should come from :func:`prepare_for_quantization`, the graph ``plan`` was made on.

    ``for_tensorrt`` False: uint8 asymmetric activations (ONNX Runtime CPU); True: int8 symmetric
    activations and weights (TensorRT explicit quantization). Raises ExportError when ONNX
    Runtime's quantizer fails.
    """
    reader.rewind()
    # The calibration sessions warn about every initializer the quantizer leaves unused: noise.
    onnxruntime.set_default_logger_severity(3)
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if for_tensorrt:
        extra["ActivationSymmetric"] = True
    try:
        quantize_static(
            str(fp32_path),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(plan.nodes),
            calibrate_method=calibrate_method,
            extra_options=extra,
        )
    except (RuntimeError, ValueError, KeyError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"INT8 quantization of {fp32_path} failed: {exc}") from exc
    finally:
        reader.rewind()
        onnxruntime.set_default_logger_severity(2)  # back to ONNX Runtime's default (warnings)
    return Path(out_path)
