"""ACCEPT / REJECT / FAULT_REJECT with a reason; the fail-safe policy lives here.

A part is accepted only on positive evidence: a finite score at or below a finite threshold.
Anything else (no result, non-finite numbers, any fault upstream) rejects it as FAULT_REJECT,
so a broken camera or model can never wave parts through.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from enum import Enum

from edge_ad.scoring import ScoreResult


class Verdict(str, Enum):
    """What happens to the part."""

    ACCEPT = "accept"
    REJECT = "reject"
    FAULT_REJECT = "fault_reject"


class FaultReason(str, Enum):
    """Why a part got FAULT_REJECT (also the label of the fault counters)."""

    INVALID_INPUT = "invalid_input"  # frame unusable: no colour, wrong shape/dtype
    INVALID_DEPTH = "invalid_depth"  # depth missing, too sparse, or not finite
    PLANE_FIT = "plane_fit"  # no belt plane could be fitted
    INFERENCE_ERROR = "inference_error"  # the backend failed
    INVALID_OUTPUT = "invalid_output"  # the model returned missing / misshapen / non-finite values
    DEADLINE_MISS = "deadline_miss"  # no result by the part's deadline
    NO_FRAME = "no_frame"  # the part was expected but no frame of it arrived
    CAMERA_STALL = "camera_stall"  # the camera stopped delivering
    QUEUE_OVERFLOW = "queue_overflow"  # the frame was dropped before inspection


# Reasons for the two ordinary verdicts.
ABOVE_THRESHOLD = "above_threshold"
AT_OR_BELOW_THRESHOLD = "at_or_below_threshold"


@dataclass(frozen=True)
class Decision:
    """The verdict, a machine-readable reason, the numbers behind it and a human detail line."""

    verdict: Verdict
    reason: str
    score: float | None = None
    normalized: float | None = None
    detail: str = ""

    @property
    def rejects(self) -> bool:
        """True when the part must leave the line (REJECT or FAULT_REJECT)."""
        return self.verdict is not Verdict.ACCEPT

    @property
    def is_fault(self) -> bool:
        """True for FAULT_REJECT."""
        return self.verdict is Verdict.FAULT_REJECT


def fault(reason: FaultReason, detail: str = "") -> Decision:
    """A FAULT_REJECT for ``reason``."""
    return Decision(Verdict.FAULT_REJECT, FaultReason(reason).value, detail=detail)


def decide(score_result: ScoreResult | None, threshold: float | None) -> Decision:
    """REJECT when the score exceeds the threshold, ACCEPT when it does not, FAULT_REJECT when either is unusable."""
    if score_result is None:
        return fault(FaultReason.INVALID_OUTPUT, "no score")
    score, normalized = score_result.score, score_result.normalized
    if threshold is None or not _finite(threshold):
        return fault(FaultReason.INVALID_OUTPUT, f"threshold not usable: {threshold!r}")
    if not (_finite(score) and _finite(normalized)):
        return fault(FaultReason.INVALID_OUTPUT, f"score {score!r} / normalized {normalized!r} not finite")
    if score > threshold:
        return Decision(
            Verdict.REJECT, ABOVE_THRESHOLD, score, normalized, f"score {score:.6g} > {threshold:.6g}"
        )
    return Decision(
        Verdict.ACCEPT, AT_OR_BELOW_THRESHOLD, score, normalized, f"score {score:.6g} <= {threshold:.6g}"
    )


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
