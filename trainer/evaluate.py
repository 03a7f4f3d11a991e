"""Evaluate a trained run on the test split, with the operating threshold set on good *validation* parts.

The threshold for the target false-reject rate comes from ``RUN/validation_scores.json``
(written by training); test data never influences it, so FRR and recall at that threshold are
what the line will see. Pixel maps are upsampled to ground-truth resolution with
:func:`edge_ad.preprocess.resize_map` before pixel AUROC and AUPRO.

JSON schema ``edge-ad/evaluation/1`` (the ``--json`` file; also ``RUN/metrics.json["evaluation"]``)::

    schema: "edge-ad/evaluation/1"
    run, category: names (never absolute paths)          (added by evaluate_run)
    score: the score kind evaluated ("ast", "teacher-nll", or another family's)
    aggregation: "max" | "mean" | "mixed"                  max of the masked map when has_mask, mean otherwise
    counts: {test, good, defective, validation_good}
    image: {auroc, auroc_ci95: [low, high], auroc_std_error, f1_max, f1_threshold, f1_precision, f1_recall}
                                                          DeLong interval: edge_ad.detection_metrics.auroc_interval
    pixel: {auroc, aupro, aupro_fpr_limit, n_maps, exact, skipped}   auroc/aupro null + reason in skipped
    threshold: {threshold, target_frr, achieved_frr, frr_upper_95, n, warning, source: "validation/good"}
    normalization: {median, scale, threshold}             edge_ad.thresholds.NormalizationStats
    operating_point: {threshold, frr, frr_upper_95, recall, confusion: {tp, fp, tn, fn}}   on the test split
    by_type: {<defect type>: {count, image_auroc, image_auroc_ci95, detected, recall}}      good vs that type
    samples: [{name, defect_type, label, score, normalized, rejected}]   rejected = score > threshold

Floats that are undefined (NaN) are written as null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_ad.dataset import DatasetSplit, open_split
from edge_ad.detection_metrics import (
    aupro,
    auroc_interval,
    f1_max,
    pixel_auroc,
    pixel_histograms,
    recall_by_type,
)
from edge_ad.errors import ConfigError, DataError
from edge_ad.thresholds import NormalizationStats, clopper_pearson_upper, threshold_for_frr
from trainer.metrics_io import load_validation_scores, merge_run_metrics, write_json
from trainer.report import OverlayTile, render_overlay, write_report

SCHEMA = "edge-ad/evaluation/1"
AUPRO_FPR_LIMIT = 0.3

ResizeMap = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


class ScoredLike(Protocol):
    """What evaluation needs of ``trainer.inference.ScoredSample``."""

    name: str
    label: int
    defect_type: str
    score: float
    anomaly_map: np.ndarray
    gt: np.ndarray | None
    has_mask: bool


def _default_resize() -> ResizeMap:
    from edge_ad.preprocess import resize_map

    return resize_map


class UpsampledMaps(Sequence[np.ndarray]):
    """Anomaly maps resized to given (H, W) shapes on access, so the full-resolution set never sits in memory."""

    def __init__(self, maps: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]], resize: ResizeMap) -> None:
        self._maps, self._shapes, self._resize = maps, shapes, resize

    def __len__(self) -> int:
        return len(self._maps)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        shape = self._shapes[index]
        out = np.asarray(self._resize(np.asarray(self._maps[index], dtype=np.float32), shape))
        if out.shape != shape:
            raise DataError(f"resize_map returned {out.shape} for target {shape}")
        return out


def _pixel_section(scored: Sequence[ScoredLike], resize: ResizeMap | None) -> dict[str, Any]:
    section: dict[str, Any] = {"auroc": None, "aupro": None, "aupro_fpr_limit": AUPRO_FPR_LIMIT}
    section.update(n_maps=0, exact=None, skipped=None)
    defective = [s for s in scored if s.label == 1]
    if any(s.gt is None for s in defective):
        section["skipped"] = "some defective test parts have no ground-truth mask"
        return section
    if not any(np.any(s.gt) for s in defective):
        section["skipped"] = "no ground-truth mask marks any defect pixel"
        return section
    # Good parts of the MVTec AD layout have no mask file: all-good at the most common gt size.
    common = Counter(np.shape(s.gt) for s in scored if s.gt is not None).most_common(1)[0][0]
    gts = [np.zeros(common, bool) if s.gt is None else np.asarray(s.gt, bool) for s in scored]
    maps = UpsampledMaps([s.anomaly_map for s in scored], [g.shape for g in gts], resize or _default_resize())
    hist = pixel_histograms(maps, gts)  # one pass serves both metrics
    section.update(n_maps=len(gts), exact=hist.exact)
    section["auroc"] = pixel_auroc(hist)
    section["aupro"] = aupro(hist, fpr_limit=AUPRO_FPR_LIMIT)
    return section


def _check_target(target_frr: float) -> None:
    if not 0.0 < target_frr < 1.0:
        raise ConfigError(f"target false-reject rate (--frr) must be in (0, 1), got {target_frr}")


def _aggregation(scored: Sequence[ScoredLike]) -> str:
    masks = {bool(s.has_mask) for s in scored}
    return "mixed" if len(masks) > 1 else ("max" if masks == {True} else "mean")


def summarize(
    scored: Sequence[ScoredLike],
    val_scores: np.ndarray,
    target_frr: float,
    *,
    score_kind: str = "ast",
    resize: ResizeMap | None = None,
) -> dict[str, Any]:
    """All evaluation numbers for scored test samples, thresholded on ``val_scores`` (good validation parts).

    ``resize`` (map, (H, W)) -> map defaults to :func:`edge_ad.preprocess.resize_map`. Raises
    DataError when the test split lacks good or defective parts, ConfigError for a bad target.
    """
    _check_target(target_frr)
    scores = np.array([float(s.score) for s in scored], dtype=np.float64)
    labels = np.array([int(s.label) for s in scored])
    types = [s.defect_type for s in scored]
    n_good, n_bad = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    if n_good == 0 or n_bad == 0:
        raise DataError(f"test split needs good and defective parts; got {n_good} good and {n_bad} defective")
    if not np.all(np.isfinite(scores)):
        bad = [s.name for s, v in zip(scored, scores, strict=True) if not np.isfinite(v)]
        raise DataError(f"non-finite scores for test samples {bad[:5]}")
    try:
        choice = threshold_for_frr(val_scores, target_frr)
    except ValueError as exc:
        raise DataError(f"validation scores: {exc}") from exc
    norm = NormalizationStats.from_good_scores(val_scores, choice.threshold)
    thr = choice.threshold
    rejected = scores > thr
    good, bad = labels == 0, labels == 1
    tp, fp = int(np.sum(rejected & bad)), int(np.sum(rejected & good))
    best = f1_max(scores, labels)
    per_type = recall_by_type(scores, types, thr)
    by_type = {}
    for name, rec in per_type.items():
        sel = good | (np.asarray(types, dtype=object) == name)
        interval = auroc_interval(scores[sel], labels[sel])
        by_type[name] = {
            "count": rec.total,
            "image_auroc": interval.auroc,
            "image_auroc_ci95": [interval.low, interval.high],
            "detected": rec.detected,
            "recall": rec.recall,
        }
    normalized = np.atleast_1d(norm.normalize(scores))
    overall = auroc_interval(scores, labels)
    return {
        "schema": SCHEMA,
        "score": score_kind,
        "aggregation": _aggregation(scored),
        "counts": {"test": len(scored), "good": n_good, "defective": n_bad, "validation_good": choice.n},
        "image": {
            "auroc": overall.auroc,
            "auroc_ci95": [overall.low, overall.high],
            "auroc_std_error": overall.std_error,
            "f1_max": best.f1,
            "f1_threshold": best.threshold,
            "f1_precision": best.precision,
            "f1_recall": best.recall,
        },
        "pixel": _pixel_section(scored, resize),
        "threshold": {**choice.to_dict(), "source": "validation/good"},
        "normalization": norm.to_dict(),
        "operating_point": {
            "threshold": thr,
            "frr": fp / n_good,
            "frr_upper_95": clopper_pearson_upper(fp, n_good),
            "recall": tp / n_bad,
            "confusion": {"tp": tp, "fp": fp, "tn": n_good - fp, "fn": n_bad - tp},
        },
        "by_type": by_type,
        "samples": [
            {
                "name": s.name,
                "defect_type": s.defect_type,
                "label": int(s.label),
                "score": float(scores[i]),
                "normalized": float(normalized[i]),
                "rejected": bool(rejected[i]),
            }
            for i, s in enumerate(scored)
        ],
    }


def select_overlays(scored: Sequence[ScoredLike], threshold: float, per_group: int = 6) -> dict[str, list[int]]:
    """Indices to show: top-scoring defects, highest-scoring good parts, missed defects (lowest first)."""
    order = sorted(range(len(scored)), key=lambda i: float(scored[i].score), reverse=True)
    defects = [i for i in order if scored[i].label == 1]
    goods = [i for i in order if scored[i].label == 0]
    missed = [i for i in reversed(defects) if float(scored[i].score) <= threshold]
    return {
        "Top-scoring defects": defects[:per_group],
        "Highest-scoring good parts": goods[:per_group],
        "Missed defects (lowest scores first)": missed[:per_group],
    }


def build_overlays(
    scored: Sequence[ScoredLike],
    split: DatasetSplit,
    threshold: float,
    resize: ResizeMap | None = None,
    per_group: int = 6,
) -> dict[str, list[OverlayTile]]:
    """Heatmap tiles for :func:`select_overlays`; images come from ``split`` by sample name."""
    resize = resize or _default_resize()
    groups = select_overlays(scored, threshold, per_group)
    chosen = sorted({i for indices in groups.values() for i in indices})
    if not chosen:
        return {}
    # One colour scale for every tile: from the lowest map value to a high percentile of the shown maps.
    values = np.concatenate([np.ravel(scored[i].anomaly_map) for i in chosen])
    vmin, vmax = float(values.min()), float(np.percentile(values, 99.5))
    index_of = {ref.name: k for k, ref in enumerate(split.refs)}
    tiles: dict[int, OverlayTile] = {}
    for i in chosen:
        s = scored[i]
        if s.name not in index_of:
            raise DataError(f"scored sample {s.name!r} is not in the test split of {split.category_root}")
        rgb = split[index_of[s.name]].rgb
        amap = np.asarray(resize(np.asarray(s.anomaly_map, np.float32), rgb.shape[:2]))
        caption = f"{s.name}  score {float(s.score):.4g}" + (" REJECT" if float(s.score) > threshold else " accept")
        tiles[i] = OverlayTile(render_overlay(rgb, amap, s.gt, vmin, vmax), caption)
    return {group: [tiles[i] for i in indices] for group, indices in groups.items()}


def evaluate_run(
    run_dir: Path,
    data_root: Path,
    *,
    score: str | None = None,
    target_frr: float = 0.01,
    json_path: Path | None = None,
    report_path: Path | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Score ``data_root``'s test split with the run's model and write JSON, RUN/metrics.json and the report.

    The threshold comes from the run's good validation scores (never from test data). The report
    goes to ``report_path`` (default ``RUN/report.html``). Returns the summary (schema above).
    """
    # torch-heavy modules only here, so that summarize() and the report stay importable without torch.
    from trainer.inference import check_score, score_split
    from trainer.run_io import load_detector

    run_dir, data_root = Path(run_dir), Path(data_root)
    _check_target(target_frr)  # before the slow scoring
    validation = load_validation_scores(run_dir)
    loaded = load_detector(run_dir)
    score = check_score(loaded.detector, score)
    val_scores = validation.for_score(score)
    split = open_split(data_root, "test")
    scored = score_split(loaded, split, batch_size, score=score)  # shows its own progress bar
    summary = summarize(scored, val_scores, target_frr, score_kind=score)
    summary = {"schema": SCHEMA, "run": run_dir.resolve().name, "category": data_root.resolve().name, **summary}
    if json_path is not None:
        write_json(json_path, summary)
    merge_run_metrics(run_dir, "evaluation", summary)
    overlays = build_overlays(scored, split, summary["operating_point"]["threshold"])
    write_report(summary, report_path or run_dir / "report.html", overlays)
    return summary
