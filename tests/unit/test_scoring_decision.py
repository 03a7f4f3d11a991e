"""Scoring reads and validates the graph's outputs; decisions are fail-safe."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_ad.decision import (
    ABOVE_THRESHOLD,
    AT_OR_BELOW_THRESHOLD,
    Decision,
    FaultReason,
    Verdict,
    decide,
    fault,
)
from edge_ad.errors import InferenceError
from edge_ad.manifest import Normalization, ScoringSpec, ThresholdSpec
from edge_ad.scoring import ScoreResult, score_outputs
from edge_ad.thresholds import NormalizationStats


def _spec(normalization: Normalization | None = None, threshold: float = 0.5) -> ScoringSpec:
    return ScoringSpec(
        aggregation="max",
        normalization=normalization or Normalization("threshold", threshold=threshold),
        threshold=ThresholdSpec(threshold, None, None, None, None, None),
    )


def _outputs(score: float = 0.75, grid: int = 4) -> dict[str, np.ndarray]:
    anomaly = np.arange(grid * grid, dtype=np.float32).reshape(1, 1, grid, grid) / 100
    return {"anomaly_map": anomaly, "score": np.array([score], np.float32)}


def test_score_outputs_reads_and_normalizes() -> None:
    result = score_outputs(_outputs(0.75), _spec(threshold=0.5))
    assert result.score == pytest.approx(0.75)
    assert result.normalized == pytest.approx(1.5)
    assert result.anomaly_map.shape == (4, 4) and result.anomaly_map.dtype == np.float32
    assert result.anomaly_map[3, 3] == pytest.approx(0.15)


def test_robust_normalization_agrees_with_thresholds_module() -> None:
    stats = NormalizationStats.from_good_scores(np.array([0.1, 0.2, 0.3, 0.25, 0.15]), threshold=0.4)
    spec = _spec(Normalization("robust", threshold=stats.threshold, median=stats.median, scale=stats.scale))
    result = score_outputs(_outputs(0.55), spec)
    assert result.normalized == pytest.approx(stats.normalize(0.55))
    assert score_outputs(_outputs(0.4), spec).normalized == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [
        ({"score": np.array([0.1], np.float32)}, "output 'anomaly_map' missing"),
        ({"anomaly_map": np.zeros((1, 1, 4, 4), np.float32)}, "output 'score' missing"),
        ({**_outputs(), "anomaly_map": np.zeros((1, 4, 4), np.float32)}, "expected shape (1, 1, h, w)"),
        ({**_outputs(), "anomaly_map": np.zeros((2, 1, 4, 4), np.float32)}, "expected shape (1, 1, h, w)"),
        ({**_outputs(), "score": np.zeros(2, np.float32)}, "expected one value"),
        ({**_outputs(), "score": np.array([np.nan], np.float32)}, "output 'score' is not finite"),
        ({**_outputs(), "anomaly_map": np.full((1, 1, 4, 4), np.inf, np.float32)}, "non-finite values"),
    ],
)
def test_score_outputs_validates(outputs: dict, fragment: str) -> None:
    with pytest.raises(InferenceError) as info:
        score_outputs(outputs, _spec())
    assert fragment in str(info.value)


def _result(score: float, normalized: float | None = None) -> ScoreResult:
    return ScoreResult(score, score if normalized is None else normalized, np.zeros((4, 4), np.float32))


def test_decide_compares_with_the_threshold() -> None:
    above = decide(_result(0.51), 0.5)
    assert above.verdict is Verdict.REJECT and above.reason == ABOVE_THRESHOLD and above.rejects
    assert above.score == 0.51
    at = decide(_result(0.5), 0.5)  # edge_ad.thresholds: defective when score > threshold
    assert at.verdict is Verdict.ACCEPT and at.reason == AT_OR_BELOW_THRESHOLD and not at.rejects
    assert decide(_result(-3.0), 0.5).verdict is Verdict.ACCEPT
    assert (
        decide(ScoreResult(np.float32(0.2), np.float32(0.4), np.zeros((1, 1))), np.float32(0.5)).verdict
        is Verdict.ACCEPT
    )


@pytest.mark.parametrize(
    ("result", "threshold"),
    [
        (None, 0.5),
        (_result(math.nan), 0.5),
        (_result(math.inf), 0.5),
        (_result(-math.inf), 0.5),
        (_result(0.1, normalized=math.nan), 0.5),
        (_result(0.1), math.nan),
        (_result(0.1), None),
        (_result(0.1), math.inf),
    ],
)
def test_decide_is_fail_safe(result: ScoreResult | None, threshold: float | None) -> None:
    decision = decide(result, threshold)
    assert decision.verdict is Verdict.FAULT_REJECT
    assert decision.reason == FaultReason.INVALID_OUTPUT.value
    assert decision.rejects and decision.is_fault


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_accept_only_on_finite_evidence(score: float, threshold: float) -> None:
    decision = decide(_result(score), threshold)
    if decision.verdict is Verdict.ACCEPT:
        assert math.isfinite(score) and math.isfinite(threshold) and score <= threshold
    else:
        assert decision.rejects


def test_fault_decisions_carry_the_reason() -> None:
    decision = fault(FaultReason.CAMERA_STALL, "no frame for 500 ms")
    assert decision == Decision(Verdict.FAULT_REJECT, "camera_stall", None, None, "no frame for 500 ms")
    assert fault(FaultReason.PLANE_FIT).reason == "plane_fit"
    assert {r.value for r in FaultReason} >= {
        "invalid_input",
        "invalid_depth",
        "plane_fit",
        "inference_error",
        "deadline_miss",
        "no_frame",
        "camera_stall",
    }
