"""Static INT8 quantization (QDQ) of a bundle's ONNX graph, calibrated on good parts.

Two flavours from one FP32 graph and one calibration set:

* ONNX Runtime (CPU): uint8 activations (asymmetric) and per-channel int8 weights. Signed
  activations are several times slower on x86/ARM CPUs, whose int8 kernels want u8 x s8.
* TensorRT: int8 activations and weights, both symmetric (zero point 0), as TensorRT's explicit
  quantization requires.

Which nodes stay float is decided in :mod:`export.float_nodes`. Only convolutions, matrix
products and the activations fused into them are quantized (:data:`QUANTIZED_OP_TYPES`):
element-wise ops on small feature maps gain nothing from int8 and each extra Q/DQ pair costs time
and accuracy.

Weight rounding keeps each kernel's sum (:func:`preserve_kernel_sums`). Measured layer by layer
on EfficientNet-Lite0 (tire run): plain round-to-nearest of the weights alone biased image scores
by +18 %, almost all from the stem and the first depthwise convolutions, whose BN-folded kernels
are edge detectors with large weights summing to ~0 (e.g. max |w| 8, sum -0.015). Rounding each
of the 9 taps independently gives the kernel a non-zero response to flat image areas (an offset
of ~1 step x the input level over the whole map) that the flow reads as an anomaly. Keeping the
integer sum equal to the rounded float sum removes that offset: weight-only score bias fell to
+1.9 %, full INT8 from +26 % to +6 %.
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
from export.float_nodes import FloatNodePlan, consumers

# Heavy ops worth int8 kernels, the activations the quantizer folds into their output range, and
# Add (EfficientNet's residuals: in float each costs a dequantize + quantize of a whole map).
QUANTIZED_OP_TYPES = ("Conv", "MatMul", "Gemm", "Relu", "Clip", "Add")
WEIGHT_ROUNDING = "kernel-sum-preserving"


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
    weight_rounding: str = WEIGHT_ROUNDING
    score_offsets: dict[str, float] = field(default_factory=dict)  # flavour -> offset subtracted (export.score_offset)

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
            "weight_rounding": self.weight_rounding,
            "score_offsets": dict(self.score_offsets),
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


def fold_pads_into_convs(model: onnx.ModelProto) -> int:
    """Merge zero-valued constant Pads into the Conv they feed (in place); returns how many.

    EfficientNet's "same" padding is a separate Pad before many convolutions. Left in the QDQ
    graph it runs in float between a dequantize and a quantize of a large map (ONNX Runtime does
    not fuse it); as the conv's own ``pads`` it costs nothing. Same maths either way.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumed_by = consumers(graph)
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
        users = consumed_by.get(pad.output[0], [])
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
    activations and weights (TensorRT explicit quantization). Convolution weights are then
    re-rounded by :func:`preserve_kernel_sums` (same scales). Raises ExportError when ONNX
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
    quantized = onnx.load(str(out_path))
    preserve_kernel_sums(quantized, onnx.load(str(fp32_path)))
    onnx.save(quantized, str(out_path))
    return Path(out_path)


def round_keeping_sums(values: np.ndarray) -> np.ndarray:
    """Round each row of ``values`` (rows, taps) to integers whose sum is the row's rounded sum.

    Every entry goes to its floor or ceiling; the ones with the largest fractional parts go up,
    which is the closest (least squares) integer vector with that sum. One-tap rows are plain
    round-to-nearest.
    """
    values = np.asarray(values, dtype=np.float64)
    low = np.floor(values)
    ups = np.rint(values.sum(axis=-1)) - low.sum(axis=-1)
    rank = np.argsort(np.argsort(low - values, axis=-1, kind="stable"), axis=-1)  # 0 = largest fraction
    return low + (rank < ups[..., None])


def preserve_kernel_sums(quantized: onnx.ModelProto, fp32: onnx.ModelProto) -> int:
    """Re-round ``quantized``'s int8 conv weights in place so every kernel keeps its sum; returns how many changed.

    Per output and input channel, the integer taps sum to the rounded sum of ``w / scale``, with
    the quantizer's own per-channel scales (zero point 0), so a kernel answers a flat input as in
    FP32 to half a step. ``fp32`` is the graph that was quantized (the float weights by name).
    """
    floats = {init.name: init for init in fp32.graph.initializer}
    inits = {init.name: init for init in quantized.graph.initializer}
    consumed_by = consumers(quantized.graph)
    changed = 0
    for node in quantized.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
            continue
        users = consumed_by.get(node.output[0], [])
        source = node.input[0].removesuffix("_quantized")
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[1] != node.output[0] or source not in floats:
            continue
        q = onnx.numpy_helper.to_array(inits[node.input[0]])
        zero = onnx.numpy_helper.to_array(inits[node.input[2]])
        scale = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if q.dtype != np.int8 or q.ndim != 4 or zero.any() or (scale.ndim == 1 and axis != 0):
            continue
        weights = onnx.numpy_helper.to_array(floats[source]).astype(np.float64)
        grid = weights / scale.reshape(-1, 1, 1, 1) if scale.ndim == 1 else weights / float(scale)
        rounded = round_keeping_sums(grid.reshape(q.shape[0] * q.shape[1], -1))
        new = np.clip(rounded, -127, 127).reshape(q.shape).astype(np.int8)
        changed += int(np.count_nonzero(new != q))
        inits[node.input[0]].CopyFrom(onnx.numpy_helper.from_array(new, node.input[0]))
    return changed
