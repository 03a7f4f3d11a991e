"""INT8's systematic score offset: measured on the calibration parts, removed inside the graph.

Quantization noise ``e`` on the features reaches the score through a squared distance, and
``E[(d + e)^2] = d^2 + Var(e)``: every cell of the map, and so every image score, comes out higher
in INT8 than in FP32 by much the same amount, whatever the part. Measured on ast-edge (MVTec 3D-AD
tire, RGB, score = mean of the map): +8 % of the threshold with the whole graph quantized, +0.6 %
with the feature extractor in float. Half of the tire's parts score within 5 % of the threshold,
so that offset alone flips decisions (95.6 % agreement with FP32 at retry level 2, 99.1 % once it
is removed).

The offset is the median of ``score_int8 - score_fp32`` over the calibration parts: good training
parts the quantizer has already seen; no validation or test part is used, so the INT8 gate still
judges the corrected model on data it never saw. A float ``Sub`` at each output removes it, so
the runtime, the gate and a TensorRT engine built from the graph all see FP32-like scores and
maps, and nothing downstream needs to know.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_ad.errors import ExportError
from edge_ad.scoring import ANOMALY_MAP, SCORE
from export.int8_gate import score_all

OFFSET_INITIALIZER = "edge_ad_int8_score_offset"
OFFSET_NODE_PREFIX = "/edge_ad/int8_score_offset"
CORRECTED_OUTPUTS = (ANOMALY_MAP, SCORE)


def offset_node_names(outputs: Sequence[str] = CORRECTED_OUTPUTS) -> tuple[str, ...]:
    """Names of the Sub nodes :func:`subtract_score_offset` adds (float nodes, for the manifest)."""
    return tuple(f"{OFFSET_NODE_PREFIX}/{name}" for name in outputs)


def measure_score_offset(fp32_scores: np.ndarray, int8_path: Path, batches: Sequence[dict[str, np.ndarray]]) -> float:
    """Median of INT8 minus FP32 image scores on the calibration ``batches`` (``fp32_scores`` in the same order)."""
    fp32_scores = np.asarray(fp32_scores, dtype=np.float64)
    if len(batches) == 0 or len(batches) != len(fp32_scores):
        raise ExportError(f"score offset: {len(batches)} calibration inputs but {len(fp32_scores)} FP32 scores")
    int8_scores = score_all(int8_path, batches)
    offset = float(np.median(int8_scores - fp32_scores))
    if not np.isfinite(offset):
        raise ExportError(f"score offset: INT8 or FP32 scores of the calibration parts are not finite ({offset})")
    return offset


def subtract_score_offset(model: onnx.ModelProto, offset: float, outputs: Sequence[str] = CORRECTED_OUTPUTS) -> None:
    """Make each of ``outputs`` come out ``offset`` lower, in place, with one float Sub per output.

    The node that produced the output now writes ``<name>_before_offset`` (or a free variant); the graph's output keeps
    its name, shape and type. Refuses a graph that already holds the correction (applied twice
    it would double) or lacks one of ``outputs``.
    """
    graph = model.graph
    if any(init.name == OFFSET_INITIALIZER for init in graph.initializer):
        raise ExportError("the graph already subtracts an INT8 score offset")
    names = {value.name for value in graph.output}
    missing = [name for name in outputs if name not in names]
    if missing:
        raise ExportError(f"score offset: the graph has no output {', '.join(missing)}")
    graph.initializer.append(helper.make_tensor(OFFSET_INITIALIZER, TensorProto.FLOAT, [], [float(offset)]))
    for name, node_name in zip(outputs, offset_node_names(outputs), strict=True):
        raw = _unused_name(graph, f"{name}_before_offset")
        for node in graph.node:
            node.output[:] = [raw if out == name else out for out in node.output]
            node.input[:] = [raw if inp == name else inp for inp in node.input]
        graph.node.append(helper.make_node("Sub", [raw, OFFSET_INITIALIZER], [name], name=node_name))


def _unused_name(graph: onnx.GraphProto, base: str) -> str:
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {init.name for init in graph.initializer} | {value.name for value in graph.input}
    name, suffix = base, 1
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    return name


def apply_score_offset(fp32_scores: np.ndarray, int8_path: Path, batches: Sequence[dict[str, np.ndarray]]) -> float:
    """Measure the offset of the model at ``int8_path`` on ``batches``, subtract it in the file; returns it."""
    offset = measure_score_offset(fp32_scores, int8_path, batches)
    model = onnx.load(str(int8_path))
    subtract_score_offset(model, offset)
    onnx.save(model, str(int8_path))
    return offset
