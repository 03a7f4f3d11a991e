"""The parity gate: the exported graph must score held-out samples like the torch model did."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_ad.backends.onnxruntime import OnnxRuntimeBackend
from edge_ad.errors import ExportError


@dataclass(frozen=True)
class ParityTolerance:
    """Limits, relative to the decision threshold so they mean the same for every model scale."""

    map_max_abs: float = 1e-3  # largest |map_onnx - map_torch| / threshold
    score_max_abs: float = 1e-3  # largest |score_onnx - score_torch| / threshold
    decision_agreement: float = 1.0  # share of samples on the same side of the threshold


class GateReportDict:
    """JSON form shared by the export gates' reports (frozen dataclasses with a ``failures`` tuple)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the export report."""
        data = asdict(self)  # type: ignore[call-overload]
        data["failures"] = list(data["failures"])
        return data


@dataclass(frozen=True)
class ParityReport(GateReportDict):
    """What the gate measured (all differences relative to the threshold)."""

    samples: int
    map_max_abs: float
    score_max_abs: float
    decision_agreement: float
    threshold: float
    passed: bool
    failures: tuple[str, ...]


def run_parity(
    detector: nn.Module,
    onnx_path: Path,
    batches: list[dict[str, np.ndarray]],
    threshold: float,
    tolerance: ParityTolerance = ParityTolerance(),
) -> ParityReport:
    """Score every batch-of-one input dict with torch and with ONNX Runtime and compare.

    ``batches`` are model inputs from :func:`edge_ad.preprocess.to_model_inputs` (one sample each),
    i.e. exactly what the runtime feeds the backend.
    """
    if not batches:
        raise ExportError("parity gate needs at least one held-out sample")
    scale = max(abs(threshold), 1e-12)
    backend = OnnxRuntimeBackend(onnx_path)
    map_diff = score_diff = 0.0
    agree = 0
    try:
        for inputs in batches:
            with torch.no_grad():
                ref_map, ref_score = detector(*(torch.from_numpy(inputs[k]) for k in ("image", "depth", "mask")))
            out = backend.infer(inputs)
            map_diff = max(map_diff, float(np.max(np.abs(out["anomaly_map"] - ref_map.numpy()))) / scale)
            score_diff = max(score_diff, float(np.max(np.abs(out["score"] - ref_score.numpy()))) / scale)
            ref = float(ref_score[0])
            # A sample whose torch score lies within the score tolerance of the threshold may fall on
            # either side through float rounding alone (the threshold is often a validation score
            # itself); only decisions outside that band must agree.
            near = abs(ref - threshold) <= tolerance.score_max_abs * scale
            agree += int(near or (float(out["score"][0]) > threshold) == (ref > threshold))
    finally:
        backend.close()
    agreement = agree / len(batches)
    failures = []
    if map_diff > tolerance.map_max_abs:
        failures.append(f"anomaly map differs by {map_diff:.3g} x threshold (limit {tolerance.map_max_abs:.3g})")
    if score_diff > tolerance.score_max_abs:
        failures.append(f"score differs by {score_diff:.3g} x threshold (limit {tolerance.score_max_abs:.3g})")
    if agreement < tolerance.decision_agreement:
        failures.append(f"decisions agree on {agreement:.2%} of samples (limit {tolerance.decision_agreement:.2%})")
    return ParityReport(len(batches), map_diff, score_diff, agreement, threshold, not failures, tuple(failures))
