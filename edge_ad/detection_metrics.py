"""Detection and localisation metrics: ROC/AUROC, F1-max, pixel AUROC and AUPRO (numpy + OpenCV only).

torch-free on purpose: the device-side threshold calibration reuses these functions.

Conventions
-----------
* Higher score = more anomalous. ``labels`` are 1 for defective, 0 for good.
* Curves (:func:`roc_curve`, the PRO curve) use "flagged when score >= threshold" at every
  distinct score, exactly like scikit-learn; ties therefore form one curve point, and the
  trapezoidal area equals the Mann-Whitney U statistic with ties counted one half.
* Decisions at an operating threshold (:func:`f1_max`, :func:`recall_by_type`, and
  :mod:`edge_ad.thresholds`) use "defective when score > threshold". Thresholds reported by
  :func:`f1_max` lie halfway between two distinct scores, so both conventions agree on the data.

Pixel metrics and memory
------------------------
Concatenating a test set of 800x800 maps and sorting it costs gigabytes. :func:`pixel_auroc` and
:func:`aupro` instead bin scores and accumulate per-bin counts one map at a time. When the total
number of pixels is at most ``exact_max_pixels`` the bins are the distinct score values, so the
result equals the sort-based reference exactly; above it the bin edges are ``n_bins`` quantiles of
a strided subsample (every pixel still counts, only the thresholds are quantised); on the test
case with 2048 bins this moved pixel AUROC and AUPRO by under 1e-4. ``maps`` may be any sequence,
including a lazy one that upsamples on access: it is read twice, one map at a time. To get both
metrics from one pass, compute :func:`pixel_histograms` once and pass it to both (150 maps of
800x800: about 9 s and 30 MB beyond the masks on one core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np

EXACT_MAX_PIXELS = 4_000_000
DEFAULT_BINS = 65_536
_SAMPLE_BUDGET = 2_000_000


@dataclass(frozen=True)
class RocCurve:
    """ROC points in order of decreasing threshold; point i flags scores >= ``thresholds[i]``."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class AurocInterval:
    """AUROC with DeLong's standard error and a two-sided normal-approximation interval in [0, 1]."""

    auroc: float
    std_error: float
    low: float
    high: float
    confidence: float


@dataclass(frozen=True)
class F1Max:
    """Best F1 over all thresholds; defective when ``score > threshold``."""

    f1: float
    threshold: float
    precision: float
    recall: float


@dataclass(frozen=True)
class TypeRecall:
    """How many parts of one defect type score above the threshold."""

    defect_type: str
    detected: int
    total: int

    @property
    def recall(self) -> float:
        """Fraction detected (NaN for an empty type)."""
        return self.detected / self.total if self.total else float("nan")


def _check_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int(np.sum(~np.isfinite(s)))} non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(np.unique(y).tolist()))}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"AUROC needs both classes; got {int(y.sum())} defective and {int((~y).sum())} good")
    return s, y


def _descending_cumulative(pos_per_bin: np.ndarray, neg_per_bin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (pos, neg) counts flagged as the threshold walks down the ascending bins.

    Both outputs start with the (0, 0) point of an infinitely high threshold.
    """
    pos = np.concatenate([[0.0], np.cumsum(pos_per_bin[::-1], dtype=np.float64)])
    neg = np.concatenate([[0.0], np.cumsum(neg_per_bin[::-1], dtype=np.float64)])
    return pos, neg


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """ROC curve at every distinct score (first point: threshold +inf, fpr = tpr = 0)."""
    s, y = _check_scores_labels(scores, labels)
    values, inverse = np.unique(s, return_inverse=True)
    pos, neg = _descending_cumulative(
        np.bincount(inverse, weights=y, minlength=values.size),
        np.bincount(inverse, weights=~y, minlength=values.size),
    )
    thresholds = np.concatenate([[np.inf], values[::-1]])
    return RocCurve(fpr=neg / neg[-1], tpr=pos / pos[-1], thresholds=thresholds)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve; ties count one half (Mann-Whitney U / sklearn roc_auc_score).

    Raises ValueError when only one class is present.
    """
    curve = roc_curve(scores, labels)
    return _trapezoid(curve.fpr, curve.tpr)


def auroc_interval(scores: np.ndarray, labels: np.ndarray, confidence: float = 0.95) -> AurocInterval:
    """AUROC and its ``confidence`` interval from DeLong's variance (DeLong et al., Biometrics 1988).

    Why: a test split of 20 good and 60 defective parts measures AUROC to about +-0.05, so a
    figure without its interval invites over-reading a change of 0.02. The variance is
    var(V10)/m + var(V01)/n over the per-part placement values (ties count one half), computed
    from midranks (Sun & Xu 2014) in O((m + n) log(m + n)). The interval is AUROC +- z * SE,
    clipped to [0, 1]; when the classes do not overlap at all the SE is 0 and so is the width,
    which says nothing about unseen parts: read it together with the counts.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s, y = _check_scores_labels(scores, labels)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    ranks_all = _midranks(s)
    # Placement values: the share of negatives below each positive, and of positives above each negative.
    v10 = (ranks_all[y] - _midranks(pos)) / n
    v01 = 1.0 - (ranks_all[~y] - _midranks(neg)) / m
    area = float(v10.mean())
    variance = (v10.var(ddof=1) if m > 1 else 0.0) / m + (v01.var(ddof=1) if n > 1 else 0.0) / n
    std_error = float(np.sqrt(max(variance, 0.0)))
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * std_error
    return AurocInterval(area, std_error, max(0.0, area - half), min(1.0, area + half), confidence)


def format_interval(bounds: Sequence[float] | None, missing: str = "-") -> str:
    """``"low-high"`` with three decimals, or ``missing`` for summaries written before intervals existed."""
    return missing if not bounds else f"{bounds[0]:.3f}-{bounds[1]:.3f}"


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def midpoint_threshold(highest_accepted: float | None, lowest_flagged: float) -> float:
    """A threshold t with ``highest_accepted <= t < lowest_flagged`` (halfway between when possible)."""
    if highest_accepted is None:
        return float(np.nextafter(lowest_flagged, -np.inf))
    mid = highest_accepted + (lowest_flagged - highest_accepted) / 2.0
    # Rounding can land on lowest_flagged for neighbouring floats; stay below it.
    return float(mid if mid < lowest_flagged else highest_accepted)


def f1_max(scores: np.ndarray, labels: np.ndarray) -> F1Max:
    """Maximum F1 (defective = positive class) over all thresholds, with the threshold reaching it."""
    s, y = _check_scores_labels(scores, labels)
    values, inverse = np.unique(s, return_inverse=True)
    tp, fp = _descending_cumulative(
        np.bincount(inverse, weights=y, minlength=values.size),
        np.bincount(inverse, weights=~y, minlength=values.size),
    )
    tp, fp = tp[1:], fp[1:]  # point k flags every score >= values[::-1][k]
    n_pos = float(y.sum())
    f1 = 2.0 * tp / (2.0 * tp + fp + (n_pos - tp))
    k = int(np.argmax(f1))  # first maximum = highest threshold among equals
    descending = values[::-1]
    lower = float(descending[k + 1]) if k + 1 < descending.size else None
    return F1Max(
        f1=float(f1[k]),
        threshold=midpoint_threshold(lower, float(descending[k])),
        precision=float(tp[k] / (tp[k] + fp[k])),
        recall=float(tp[k] / n_pos),
    )


def recall_by_type(
    scores: np.ndarray, defect_types: Sequence[str], threshold: float, good_type: str = "good"
) -> dict[str, TypeRecall]:
    """Per defect type, how many parts score above ``threshold`` (``good_type`` is left out)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size != len(defect_types):
        raise ValueError(f"scores ({s.size}) and defect_types ({len(defect_types)}) differ in length")
    types = np.asarray(defect_types, dtype=object)
    out: dict[str, TypeRecall] = {}
    for name in sorted(set(defect_types) - {good_type}):
        sel = types == name
        out[name] = TypeRecall(name, int(np.sum(s[sel] > threshold)), int(sel.sum()))
    return out


# ----------------------------------------------------------------------------- pixel metrics


def _score_edges(maps: Sequence[np.ndarray], exact_max_pixels: int, n_bins: int) -> tuple[np.ndarray, bool]:
    """Ascending bin edges and whether they are the exact distinct values (first pass over ``maps``)."""
    total = sum(int(np.asarray(maps[i]).size) for i in range(len(maps)))
    stride = max(1, -(-total // _SAMPLE_BUDGET))
    exact = total <= exact_max_pixels
    parts, lowest = [], np.inf
    for i in range(len(maps)):
        flat = np.asarray(maps[i], dtype=np.float64).ravel()
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"anomaly map {i} contains non-finite values")
        lowest = min(lowest, float(flat.min()))
        parts.append(flat if exact else flat[::stride].copy())  # copy: a view would keep every full map alive
    sample = np.concatenate(parts)
    if exact:
        return np.unique(sample), True
    edges = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, n_bins)))
    edges[0] = min(edges[0], lowest)  # the lowest bin must hold every pixel
    return edges, False


@dataclass(frozen=True)
class PixelHistograms:
    """Per score bin: defect pixels, good pixels and summed region overlap weights (1/|region|)."""

    edges: np.ndarray
    exact: bool
    defect: np.ndarray
    good: np.ndarray
    overlap: np.ndarray
    n_regions: int


def pixel_histograms(
    maps: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    *,
    exact_max_pixels: int = EXACT_MAX_PIXELS,
    n_bins: int = DEFAULT_BINS,
) -> PixelHistograms:
    """One pass over all maps collecting what pixel AUROC and AUPRO need (read maps one at a time).

    Regions are the 8-connected components of each gt (cv2), as in the MVTec reference.
    """
    if len(maps) != len(gts):
        raise ValueError(f"{len(maps)} anomaly maps but {len(gts)} ground-truth masks")
    if len(maps) == 0:
        raise ValueError("no anomaly maps given")
    edges, exact = _score_edges(maps, exact_max_pixels, n_bins)
    defect, good, overlap = np.zeros(edges.size), np.zeros(edges.size), np.zeros(edges.size)
    n_regions = 0
    for i in range(len(maps)):
        amap = np.asarray(maps[i])
        gt = np.asarray(gts[i]) != 0
        if gt.shape != amap.shape:
            raise ValueError(f"ground truth {i} has shape {gt.shape}, its anomaly map {amap.shape}")
        n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
        labels = labels.ravel()
        ok = labels == 0
        idx = np.clip(np.searchsorted(edges, amap.ravel(), side="right") - 1, 0, edges.size - 1)
        good += np.bincount(idx[ok], minlength=edges.size)
        defect += np.bincount(idx[~ok], minlength=edges.size)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        overlap += np.bincount(idx[~ok], weights=1.0 / area[labels[~ok]], minlength=edges.size)
        n_regions += n_labels - 1
    return PixelHistograms(edges, exact, defect, good, overlap, n_regions)


def _as_histograms(maps: Sequence[np.ndarray] | PixelHistograms, gts: Sequence[np.ndarray] | None,
                   **kwargs: int) -> PixelHistograms:
    if isinstance(maps, PixelHistograms):
        return maps
    if gts is None:
        raise ValueError("gts are required unless maps is a PixelHistograms")
    return pixel_histograms(maps, gts, **kwargs)


def pixel_auroc(
    maps: Sequence[np.ndarray] | PixelHistograms,
    gts: Sequence[np.ndarray] | None = None,
    **kwargs: int,
) -> float:
    """AUROC over all pixels of all maps (gt non-zero = defect); or from precomputed :class:`PixelHistograms`.

    ``kwargs``: ``exact_max_pixels``, ``n_bins`` of :func:`pixel_histograms`.
    """
    h = _as_histograms(maps, gts, **kwargs)
    if h.defect.sum() == 0 or h.good.sum() == 0:
        raise ValueError(f"pixel AUROC needs both classes; got {int(h.defect.sum())} defect, {int(h.good.sum())} good pixels")
    tp, fp = _descending_cumulative(h.defect, h.good)
    return _trapezoid(fp / fp[-1], tp / tp[-1])


def pro_curve(
    maps: Sequence[np.ndarray] | PixelHistograms, gts: Sequence[np.ndarray] | None = None, **kwargs: int
) -> tuple[np.ndarray, np.ndarray]:
    """The MVTec per-region-overlap curve: (FPR over all good pixels, mean overlap over all regions).

    As in the MVTec reference, a flagged pixel of a region adds 1/|region| to the overlap sum;
    the curve has one point per distinct score (or bin), starts at (0, 0), ends at (1, 1) and is
    clipped to 1.
    """
    h = _as_histograms(maps, gts, **kwargs)
    n_good = float(h.good.sum())
    if h.n_regions == 0 or n_good == 0:
        raise ValueError(f"AUPRO needs defect regions and good pixels; got {h.n_regions} regions, {int(n_good)} good pixels")
    pro, fp = _descending_cumulative(h.overlap, h.good)
    fpr = np.minimum(np.append(fp / n_good, 1.0), 1.0)
    return fpr, np.minimum(np.append(pro / h.n_regions, 1.0), 1.0)


def area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under (x ascending, y) from x[0] to ``x_max``, interpolating y at ``x_max``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = x <= x_max
    area = _trapezoid(x[inside], y[inside])
    if x_max not in x:
        ins = int(np.searchsorted(x, x_max, side="right"))  # first point beyond x_max
        if ins == 0 or ins >= x.size:
            raise ValueError(f"x_max {x_max} outside the curve's range [{x[0]}, {x[-1]}]")
        y_at = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        area += 0.5 * (y_at + y[ins - 1]) * (x_max - x[ins - 1])
    return float(area)


def aupro(
    maps: Sequence[np.ndarray] | PixelHistograms,
    gts: Sequence[np.ndarray] | None = None,
    fpr_limit: float = 0.3,
    **kwargs: int,
) -> float:
    """Area under the PRO curve for FPR in [0, ``fpr_limit``], divided by ``fpr_limit`` (1.0 = perfect)."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, gts, **kwargs)
    return area_up_to(fpr, pro, fpr_limit) / fpr_limit
