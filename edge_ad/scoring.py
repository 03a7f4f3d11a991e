"""Backend outputs -> score, normalized score and anomaly map, validated but not recomputed.

The graph computes the image score itself (max of the masked map with a foreground mask, mean
without; the manifest records which). Recomputing it here would create a second implementation
that could drift from the exported one, so this module only reads, checks and normalizes.
The manifest's ``scoring`` section (aggregation, normalization, threshold) is defined here too;
``edge_ad.manifest`` parses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_ad.errors import BundleError, InferenceError
from edge_ad.thresholds import NormalizationStats, ThresholdChoice
from edge_ad.typed_data import field_error, join_path

ANOMALY_MAP = "anomaly_map"
SCORE = "score"


@dataclass(frozen=True)
class Normalization:
    """How a raw score becomes the operator-facing number; 1.0 is always the threshold.

    ``threshold``: normalized = score / threshold (threshold > 0). ``robust``: the good-part
    statistics of :class:`edge_ad.thresholds.NormalizationStats` (0 = median good part,
    1 = threshold; works for negative scores too). ``none``: normalized = score.
    """

    method: Literal["threshold", "robust", "none"]
    threshold: float | None = None
    median: float | None = None
    scale: float | None = None

    def validate(self, path: str) -> None:
        """Each method needs exactly its own parameters."""
        needed = {"threshold": ("threshold",), "robust": ("median", "scale", "threshold"), "none": ()}[
            self.method
        ]
        for key in ("threshold", "median", "scale"):
            value = getattr(self, key)
            if key in needed and value is None:
                raise field_error(
                    BundleError, join_path(path, key), f"missing field (needed by method {self.method!r})"
                )
            if key not in needed and value is not None:
                raise field_error(BundleError, join_path(path, key), f"not used by method {self.method!r}")
        if self.method == "threshold" and self.threshold is not None and self.threshold <= 0:
            raise field_error(
                BundleError,
                join_path(path, "threshold"),
                f"must be > 0 for method 'threshold', got {self.threshold}",
            )
        if self.scale is not None and self.scale < 0:
            raise field_error(BundleError, join_path(path, "scale"), f"must be >= 0, got {self.scale}")

    def apply(self, score: float) -> float:
        """The normalized value of ``score``."""
        if self.method == "threshold":
            return score / float(self.threshold)  # type: ignore[arg-type]
        if self.method == "robust":
            stats = NormalizationStats(median=self.median, scale=self.scale, threshold=self.threshold)  # type: ignore[arg-type]
            return float(stats.normalize(score))
        return score


@dataclass(frozen=True)
class ThresholdSpec:
    """The decision threshold on the raw score and the false-reject statistics it was chosen for."""

    value: float
    target_frr: float | None
    achieved_frr: float | None
    frr_upper_95: float | None
    n_good: int | None
    data_hash: str | None

    @classmethod
    def from_choice(cls, choice: ThresholdChoice, data_hash: str | None = None) -> ThresholdSpec:
        """From :func:`edge_ad.thresholds.threshold_for_frr`'s result."""
        return cls(
            value=float(choice.threshold),
            target_frr=float(choice.target_frr),
            achieved_frr=float(choice.achieved_frr),
            frr_upper_95=float(choice.frr_upper_95),
            n_good=int(choice.n),
            data_hash=data_hash,
        )

    def validate(self, path: str) -> None:
        """Rates are fractions, counts are non-negative."""
        for key in ("target_frr", "achieved_frr", "frr_upper_95"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise field_error(
                    BundleError, join_path(path, key), f"must be a fraction in [0, 1], got {value}"
                )
        if self.n_good is not None and self.n_good < 0:
            raise field_error(BundleError, join_path(path, "n_good"), f"must be >= 0, got {self.n_good}")


@dataclass(frozen=True)
class ScoringSpec:
    """How the graph's outputs are read: aggregation, normalization and threshold."""

    aggregation: Literal["max", "mean"]
    normalization: Normalization
    threshold: ThresholdSpec


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """One part's result: raw score, normalized score and the (h, w) float32 anomaly map."""

    score: float
    normalized: float
    anomaly_map: np.ndarray


def score_outputs(outputs: Mapping[str, np.ndarray], scoring: ScoringSpec) -> ScoreResult:
    """Read a batch-of-one backend result; InferenceError when outputs are missing, misshapen or not finite."""
    for name in (ANOMALY_MAP, SCORE):
        if name not in outputs:
            raise InferenceError(f"model output {name!r} missing (got {sorted(outputs)})")
    anomaly_map = np.asarray(outputs[ANOMALY_MAP])
    score = np.asarray(outputs[SCORE])
    if anomaly_map.ndim != 4 or anomaly_map.shape[:2] != (1, 1) or min(anomaly_map.shape[2:]) < 1:
        raise InferenceError(f"output {ANOMALY_MAP!r}: expected shape (1, 1, h, w), got {anomaly_map.shape}")
    if score.size != 1:
        raise InferenceError(f"output {SCORE!r}: expected one value (shape (1,)), got shape {score.shape}")
    value = float(score.reshape(()))
    if not math.isfinite(value):
        raise InferenceError(f"output {SCORE!r} is not finite: {value}")
    if not np.all(np.isfinite(anomaly_map)):
        raise InferenceError(f"output {ANOMALY_MAP!r} has non-finite values")
    normalized = scoring.normalization.apply(value)
    if not math.isfinite(normalized):
        raise InferenceError(f"normalized score is not finite: {normalized} (score {value})")
    return ScoreResult(score=value, normalized=normalized, anomaly_map=anomaly_map[0, 0].astype(np.float32))
