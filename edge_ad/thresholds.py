"""Operating thresholds from good parts, with an honest bound on the false-reject rate (numpy only).

Decision rule used everywhere in edge-ad: a part is defective when ``score > threshold``.

:func:`threshold_for_frr` places the threshold on the scores of *good* parts (validation split
when training, good parts on the station when calibrating; never test data) so that at most the
target fraction of them is rejected. How well a finite sample supports the target is reported
as a one-sided 95 % Clopper-Pearson upper bound on the true false-reject rate.

Score normalisation (:class:`NormalizationStats`) maps raw scores to an operator scale where
0.0 is the median good part and 1.0 is the threshold: ``(score - median) / (threshold - median)``.
Scores above 1.0 are rejected. (If the threshold does not lie above the median, the robust
scale replaces the denominator and the threshold still maps to 1.0.) Unlike ``score / threshold`` this also works for scores that can be
negative (the teacher's negative log-likelihood).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_ad.detection_metrics import midpoint_threshold


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold set for a target false-reject rate (FRR) on ``n`` good scores."""

    threshold: float
    target_frr: float
    achieved_frr: float
    frr_upper_95: float
    n: int
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON and the bundle manifest."""
        return asdict(self)


def _log_binomial_coefficients(n: int) -> np.ndarray:
    """log C(n, k) for k = 0..n, built as a running sum (exact enough for n up to 1e6)."""
    k = np.arange(1, n + 1, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(np.log(n - k + 1.0) - np.log(k))])


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no overflow for large n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    j = np.arange(k + 1, dtype=np.float64)
    log_terms = _log_binomial_coefficients(n)[: k + 1] + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(log_terms.max())
    return float(min(1.0, math.exp(top) * float(np.sum(np.exp(log_terms - top)))))


def clopper_pearson_upper(failures: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate after ``failures`` in ``n`` trials.

    The bound p solves P(X <= failures | n, p) = 1 - confidence; it is found by bisection on the
    binomial CDF, which falls monotonically in p. 0 of 100 gives 0.0295, 1 of 100 gives 0.0466.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= failures <= n:
        raise ValueError(f"failures must be in [0, {n}], got {failures}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if failures == n:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = failures / n, 1.0
    for _ in range(60):  # 2^-60 of the unit interval: below float resolution of the answer
        mid = 0.5 * (lo + hi)
        if binomial_cdf(failures, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def _as_good_scores(good_scores: np.ndarray) -> np.ndarray:
    s = np.asarray(good_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no good scores to set a threshold on")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"good scores contain {int(np.sum(~np.isfinite(s)))} non-finite values")
    return s


def threshold_for_frr(good_scores: np.ndarray, target_frr: float) -> ThresholdChoice:
    """The lowest threshold that rejects at most ``target_frr`` of ``good_scores``.

    With k = floor(target * n) allowed rejections the threshold lies halfway between the
    (k+1)-th and k-th highest good score, so a good part scoring like the highest accepted one
    keeps a margin. Ties at that boundary are all accepted (achieved FRR may then be lower).
    A warning is set when n < 1 / target: then even zero rejections cannot show the target.
    """
    if not 0.0 < target_frr < 1.0:
        raise ValueError(f"target_frr must be in (0, 1), got {target_frr}")
    s = np.sort(_as_good_scores(good_scores))
    n = s.size
    allowed = int(math.floor(target_frr * n + 1e-9))
    highest_accepted = float(s[n - 1 - allowed])
    if allowed == 0:
        threshold = highest_accepted
    else:
        threshold = midpoint_threshold(highest_accepted, float(s[n - allowed]))
    rejected = int(np.sum(s > threshold))
    needed = math.ceil(1.0 / target_frr - 1e-9)
    warning = None
    if n < needed:
        warning = (
            f"only {n} good scores: a false-reject target of {target_frr:.2%} needs at least {needed} "
            f"(the 95% upper bound on the true rate is {clopper_pearson_upper(rejected, n):.2%})"
        )
    return ThresholdChoice(
        threshold=threshold,
        target_frr=float(target_frr),
        achieved_frr=rejected / n,
        frr_upper_95=clopper_pearson_upper(rejected, n),
        n=n,
        warning=warning,
    )


@dataclass(frozen=True)
class NormalizationStats:
    """Statistics of good scores that put raw scores on the operator scale (0 = median good, 1 = threshold).

    ``scale`` is the robust spread of good scores (1.4826 x median absolute deviation, the
    standard deviation for a normal distribution); it is informative and the fallback
    denominator when the threshold does not lie above the median.
    """

    median: float
    scale: float
    threshold: float

    @classmethod
    def from_good_scores(cls, good_scores: np.ndarray, threshold: float) -> NormalizationStats:
        """Compute median and robust scale of ``good_scores`` for a given ``threshold``."""
        s = _as_good_scores(good_scores)
        median = float(np.median(s))
        scale = float(1.4826 * np.median(np.abs(s - median)))
        return cls(median=median, scale=scale, threshold=float(threshold))

    @property
    def denominator(self) -> float:
        """Raw-score distance that one normalised unit stands for.

        threshold - median normally; the robust scale (or 1.0) when the threshold does not lie
        above the median (degenerate good scores), so that the threshold still maps to 1.0.
        """
        for candidate in (self.threshold - self.median, self.scale):
            if candidate > 0.0:
                return candidate
        return 1.0

    def normalize(self, score: float | np.ndarray) -> float | np.ndarray:
        """Map raw scores so that the threshold is 1.0 (and, normally, the median good part 0.0)."""
        out = 1.0 + (np.asarray(score, dtype=np.float64) - self.threshold) / self.denominator
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON and the bundle manifest."""
        return {"median": self.median, "scale": self.scale, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormalizationStats:
        """Inverse of :meth:`to_dict`; raises ValueError naming a missing or non-numeric field."""
        values = {}
        for key in ("median", "scale", "threshold"):
            if key not in data:
                raise ValueError(f"normalization stats: missing field {key!r}")
            try:
                values[key] = float(data[key])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"normalization stats: field {key!r} is not a number: {data[key]!r}") from exc
        return cls(**values)
