"""Which nodes of a detector graph stay in float under INT8, and why: graph analysis only.

What stays in float (the names go into the manifest's ``float_nodes``):

* the flow's soft-clamp path ``exp(alpha * 0.636 * atan(s / alpha))``: the exponent amplifies any
  rounding of ``s`` into a multiplicative error of the latent ``z``;
* the "tail": every node after the last convolution on each path to the outputs (the
  student-teacher distance, the mask at the grid, the score reduction), so distances are computed
  in FP32 from dequantized features;
* on retry, level by level (:func:`float_node_plan`): the flow's scale/shift convolutions and
  the last convolutions before the tail, then the feature extractor, then the teacher flow.
  The order follows measured cost (EfficientNet-Lite0 at 320 px, 1 thread): the 20x20 teacher +
  student cost more in float (~12 ms) than the backbone does (~8 ms), so the backbone goes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edge_ad.errors import ExportError

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



def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    table: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            table.setdefault(name, []).append(node)
    return table


def _nodes_with_heavy_descendant(graph: onnx.GraphProto) -> set[str]:
    """Names of nodes from which some Conv/MatMul/Gemm is reachable downstream (itself excluded)."""
    consumed_by = consumers(graph)
    memo: dict[str, bool] = {}
    # ONNX graphs are topologically sorted: walk backwards so every consumer is decided first.
    for node in reversed(graph.node):
        memo[node.name] = any(
            nxt.op_type in HEAVY_OP_TYPES or memo.get(nxt.name, False)
            for out in node.output
            for nxt in consumed_by.get(out, [])
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
    produced_by, consumed_by = producers(graph), consumers(graph)
    found: list[str] = []
    for node in graph.node:
        if node.op_type not in ("Atan", "Exp"):
            continue
        found.append(node.name)
        if node.op_type == "Atan":
            # s / alpha before, alpha * 0.636 * (.) after, up to the Exp.
            before = produced_by.get(node.input[0])
            if before is not None and before.op_type in ("Div", "Mul"):
                found.append(before.name)
            frontier = list(consumed_by.get(node.output[0], []))
            while frontier:
                nxt = frontier.pop()
                if nxt.op_type == "Mul" and nxt.name not in found:
                    found.append(nxt.name)
                    frontier.extend(consumed_by.get(nxt.output[0], []))
    return found


def scale_convs(graph: onnx.GraphProto) -> list[str]:
    """Convolutions whose output reaches an Atan through slices and scalings only (flow s/t heads)."""
    produced_by = producers(graph)
    found: list[str] = []
    for node in graph.node:
        if node.op_type != "Atan":
            continue
        current = produced_by.get(node.input[0])
        while current is not None and current.op_type in _SCALE_PATH_OPS:
            current = produced_by.get(current.input[0])
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
