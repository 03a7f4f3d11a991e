"""The INT8 accuracy gate: the quantized graph must decide and rank parts like the FP32 graph.

Both graphs run in ONNX Runtime on the same held-out inputs: good validation parts plus defects
(the dataset's real ones when its test split has any, synthetic ones painted onto good parts
otherwise). Limits: decisions agree on at least 99 % of the samples, and the image AUROC drops by
at most 0.5 points. Differences are also reported relative to the threshold, like the parity gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ad.backends.onnxruntime import OnnxRuntimeBackend
from edge_ad.dataset import Sample, open_split
from edge_ad.detection_metrics import auroc
from edge_ad.errors import DataError, ExportError
from edge_ad.preprocess import PreprocessConfig, preprocess, to_model_inputs
from export.parity import GateReportDict

SYNTHETIC_SEED = 1234


@dataclass(frozen=True)
class Int8Tolerance:
    """How far INT8 may drift from FP32."""

    decision_agreement: float = 0.99  # share of samples on the same side of the threshold
    auroc_drop: float = 0.005  # image AUROC points / 100 (0.005 = 0.5 points)


@dataclass(frozen=True)
class GateSet:
    """Held-out model inputs with labels (0 good, 1 defective) and where the defects came from."""

    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray
    defects: str  # "real" or "synthetic"

    def __post_init__(self) -> None:
        if len(self.batches) != len(self.labels):
            raise ExportError(f"gate set: {len(self.batches)} inputs but {len(self.labels)} labels")


@dataclass(frozen=True)
class Int8GateReport(GateReportDict):
    """What the gate measured; ``auroc_*`` are None when the set has a single class."""

    samples: int
    good: int
    defective: int
    defects: str
    decision_agreement: float
    auroc_fp32: float | None
    auroc_int8: float | None
    auroc_drop: float | None
    score_max_abs: float  # largest |score_int8 - score_fp32| / threshold
    score_median_abs: float
    threshold: float
    passed: bool
    failures: tuple[str, ...]


def paint_synthetic_defect(sample: Sample, rng: np.random.Generator) -> Sample:
    """A copy of a good ``sample`` with a blob that is off in colour and, with xyz, in height.

    Deliberately crude: the gate asks whether INT8 *ranks* such parts like FP32 does, not whether
    the model is good at finding them.
    """
    rgb = sample.rgb.copy()
    height, width = rgb.shape[:2]
    radius = max(2, min(height, width) // 10)
    cy = int(rng.integers(height // 4, max(height // 4 + 1, 3 * height // 4)))
    cx = int(rng.integers(width // 4, max(width // 4 + 1, 3 * width // 4)))
    yy, xx = np.ogrid[:height, :width]
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    rgb[blob] = (255 - rgb[blob].astype(np.int16)).clip(0, 255).astype(np.uint8)
    xyz = None
    if sample.xyz is not None:
        xyz = sample.xyz.copy()
        valid = blob & (xyz[..., 2] > 0)
        xyz[valid, 2] -= np.float32(0.004)  # a 4 mm bump toward the camera
    return Sample(rgb, xyz, blob, 1, "synthetic", sample.path, f"{sample.name}-synthetic")


def gate_set(
    data_root: Path, config: PreprocessConfig, use_xyz: bool, max_samples: int = 200
) -> GateSet:
    """Good validation parts plus defects (test split, or synthetic on the good ones) as model inputs.

    At most ``max_samples`` are taken, evenly spaced within the good and defective groups.
    """
    goods: list[Sample] = []
    defects: list[Sample] = []
    for name in ("validation", "test"):
        try:
            split = open_split(data_root, name)
        except DataError:
            continue
        for ref_index in range(len(split)):
            (goods if split.refs[ref_index].label == 0 else defects).append(split[ref_index])
    if not goods:
        raise ExportError(f"{data_root}: no good validation or test parts for the INT8 gate")
    source = "real"
    if not defects:
        rng = np.random.default_rng(SYNTHETIC_SEED)
        defects = [paint_synthetic_defect(s, rng) for s in goods]
        source = "synthetic"
    half = max(1, max_samples // 2)
    picked = _spread(goods, half) + _spread(defects, max_samples - min(half, len(goods)))
    batches = [to_model_inputs([preprocess(s.rgb, s.xyz if use_xyz else None, config)]) for s in picked]
    labels = np.asarray([s.label for s in picked], dtype=np.int64)
    return GateSet(batches, labels, source)


def _spread(items: Sequence[Sample], count: int) -> list[Sample]:
    if count >= len(items):
        return list(items)
    index = np.linspace(0, len(items) - 1, num=max(1, count)).round().astype(int)
    return [items[i] for i in index]


def score_all(model_path: Path, batches: Sequence[dict[str, np.ndarray]], threads: int | None = None) -> np.ndarray:
    """Image scores of ``model_path`` in ONNX Runtime for every batch-of-one input."""
    backend = OnnxRuntimeBackend(model_path, intra_op_num_threads=threads)
    try:
        return np.asarray([float(backend.infer(dict(b))["score"][0]) for b in batches], dtype=np.float64)
    finally:
        backend.close()


def compare_scores(
    fp32: np.ndarray,
    int8: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    defects: str,
    tolerance: Int8Tolerance = Int8Tolerance(),
) -> Int8GateReport:
    """The gate's verdict from both models' scores on the same labelled samples."""
    if not (len(fp32) == len(int8) == len(labels)) or len(labels) == 0:
        raise ExportError(f"INT8 gate: score counts differ or are empty ({len(fp32)}, {len(int8)}, {len(labels)})")
    scale = max(abs(threshold), 1e-12)
    agreement = float(np.mean((fp32 > threshold) == (int8 > threshold)))
    diff = np.abs(int8 - fp32) / scale
    both_classes = 0 < int(labels.sum()) < len(labels)
    auc32 = auroc(fp32, labels) if both_classes else None
    auc8 = auroc(int8, labels) if both_classes else None
    drop = None if auc32 is None or auc8 is None else auc32 - auc8
    failures = []
    if agreement < tolerance.decision_agreement:
        failures.append(
            f"INT8 and FP32 decisions agree on {agreement:.2%} of {len(labels)} samples "
            f"(limit {tolerance.decision_agreement:.2%})"
        )
    if drop is not None and drop > tolerance.auroc_drop:
        failures.append(
            f"image AUROC drops by {100 * drop:.2f} points ({auc32:.4f} -> {auc8:.4f}; "
            f"limit {100 * tolerance.auroc_drop:.2f})"
        )
    good = int((labels == 0).sum())
    return Int8GateReport(
        samples=len(labels),
        good=good,
        defective=len(labels) - good,
        defects=defects,
        decision_agreement=agreement,
        auroc_fp32=auc32,
        auroc_int8=auc8,
        auroc_drop=drop,
        score_max_abs=float(diff.max()),
        score_median_abs=float(np.median(diff)),
        threshold=float(threshold),
        passed=not failures,
        failures=tuple(failures),
    )


def run_int8_gate(
    fp32_path: Path,
    int8_path: Path,
    gate: GateSet,
    threshold: float,
    tolerance: Int8Tolerance = Int8Tolerance(),
    fp32_scores: np.ndarray | None = None,
) -> tuple[Int8GateReport, np.ndarray]:
    """Score ``gate`` with both graphs and compare; returns the report and the FP32 scores (reusable on retry)."""
    if fp32_scores is None:
        fp32_scores = score_all(fp32_path, gate.batches)
    int8_scores = score_all(int8_path, gate.batches)
    return compare_scores(fp32_scores, int8_scores, gate.labels, threshold, gate.defects, tolerance), fp32_scores
