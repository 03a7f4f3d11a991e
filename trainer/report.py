"""Self-contained HTML evaluation report: inline SVG plots and base64 PNG heatmap overlays.

No plotting library is needed (matplotlib is not a dependency): ROC curves and score
histograms are drawn as SVG, which stays crisp at any zoom and keeps the file small; heatmap
overlays are PNGs made with OpenCV. The report reads only the evaluation summary (see
:mod:`trainer.evaluate` for its schema) and the overlay tiles it is given.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ad.detection_metrics import format_interval, roc_curve
from edge_ad.errors import DataError

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
GOOD_COLOR, DEFECT_COLOR, THRESHOLD_COLOR = "#1f77b4", "#ff7f0e", "#d62728"
TILE_SIDE = 256
# Plot frame: width, height and the margins left for axis labels.
W, H, ML, MR, MT, MB = 360, 260, 48, 12, 24, 36


@dataclass(frozen=True)
class OverlayTile:
    """One heatmap overlay (BGR uint8) with its caption."""

    image: np.ndarray
    caption: str


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _svg_frame(title: str, x_label: str, y_label: str, x_ticks: Sequence[tuple[float, str]],
               y_ticks: Sequence[tuple[float, str]]) -> list[str]:
    """SVG header, axes and ticks; tick positions are already in pixel coordinates."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{W / 2}" y="14" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
        f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" fill="none" stroke="#444"/>',
        f'<text x="{(ML + W - MR) / 2}" y="{H - 4}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="12" y="{(MT + H - MB) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(MT + H - MB) / 2})">{html.escape(y_label)}</text>',
    ]
    for px, label in x_ticks:
        parts.append(f'<line x1="{px:.1f}" y1="{H - MB}" x2="{px:.1f}" y2="{H - MB + 4}" stroke="#444"/>')
        parts.append(f'<text x="{px:.1f}" y="{H - MB + 14}" text-anchor="middle">{html.escape(label)}</text>')
    for py, label in y_ticks:
        parts.append(f'<line x1="{ML - 4}" y1="{py:.1f}" x2="{ML}" y2="{py:.1f}" stroke="#444"/>')
        parts.append(f'<text x="{ML - 6}" y="{py + 3:.1f}" text-anchor="end">{html.escape(label)}</text>')
    return parts


def _px(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray | float:
    return ML + (np.asarray(x) - lo) / (hi - lo) * (W - ML - MR)


def _py(y: np.ndarray | float, lo: float, hi: float) -> np.ndarray | float:
    return H - MB - (np.asarray(y) - lo) / (hi - lo) * (H - MT - MB)


def svg_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """ROC curves (label, fpr, tpr) on one chart; the first is drawn thicker (all defects)."""
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    parts = _svg_frame("ROC (test split)", "false-positive rate", "true-positive rate",
                       [(float(_px(t, 0, 1)), f"{t:g}") for t in ticks], [(float(_py(t, 0, 1)), f"{t:g}") for t in ticks])
    parts.append(f'<line x1="{_px(0, 0, 1)}" y1="{_py(0, 0, 1)}" x2="{_px(1, 0, 1)}" y2="{_py(1, 0, 1)}" '
                 'stroke="#bbb" stroke-dasharray="3,3"/>')
    for k, (label, fpr, tpr) in enumerate(curves):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(_px(fpr, 0, 1), _py(tpr, 0, 1), strict=True))
        color, width = PALETTE[k % len(PALETTE)], 2.5 if k == 0 else 1.2
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{width}"/>')
        y = _py(0.05 + 0.07 * (len(curves) - 1 - k), 0, 1)
        parts.append(f'<text x="{_px(0.42, 0, 1)}" y="{y:.1f}" fill="{color}">{html.escape(label)}</text>')
    return "\n".join([*parts, "</svg>"])


def svg_histogram(good: np.ndarray, other: np.ndarray, threshold: float, title: str, other_label: str) -> str:
    """Overlaid score histograms (good vs ``other``) with a dashed line at the threshold."""
    values = np.concatenate([np.asarray(good, float), np.asarray(other, float), [threshold]])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, 31)
    counts = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (good, other)]
    top = max(float(max(c.max() for c in counts)), 1e-9)
    x_ticks = [(float(_px(t, lo, hi)), f"{t:.3g}") for t in np.linspace(lo, hi, 4)]
    y_ticks = [(float(_py(t, 0, top)), f"{t:.2f}") for t in np.linspace(0, top, 3)]
    parts = _svg_frame(title, "score", "fraction of parts", x_ticks, y_ticks)
    for c, color in zip(counts, (GOOD_COLOR, DEFECT_COLOR), strict=True):
        for i, value in enumerate(c):
            if value <= 0:
                continue
            x0, x1 = _px(edges[i], lo, hi), _px(edges[i + 1], lo, hi)
            y = _py(value, 0, top)
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{H - MB - y:.1f}" '
                         f'fill="{color}" fill-opacity="0.5"/>')
    tx = _px(threshold, lo, hi)
    parts.append(f'<line x1="{tx:.1f}" y1="{MT}" x2="{tx:.1f}" y2="{H - MB}" stroke="{THRESHOLD_COLOR}" '
                 'stroke-width="1.5" stroke-dasharray="5,3"/>')
    parts.append(f'<text x="{W - MR - 4}" y="{MT + 12}" text-anchor="end" fill="{GOOD_COLOR}">good ({len(good)})</text>')
    parts.append(f'<text x="{W - MR - 4}" y="{MT + 24}" text-anchor="end" fill="{DEFECT_COLOR}">'
                 f'{html.escape(other_label)} ({len(other)})</text>')
    parts.append(f'<text x="{W - MR - 4}" y="{MT + 36}" text-anchor="end" fill="{THRESHOLD_COLOR}">threshold</text>')
    return "\n".join([*parts, "</svg>"])


def render_overlay(rgb: np.ndarray, amap: np.ndarray, gt: np.ndarray | None, vmin: float, vmax: float) -> np.ndarray:
    """Heatmap (JET, fixed vmin..vmax so tiles compare) blended on the RGB image, gt outlined in white; BGR."""
    if amap.shape != rgb.shape[:2]:
        raise DataError(f"overlay: map {amap.shape} does not match image {rgb.shape[:2]}")
    scaled = np.clip((amap - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    image = cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 0.5, heat, 0.5, 0.0)
    if gt is not None and np.any(gt):
        contours, _ = cv2.findContours(np.asarray(gt, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, (255, 255, 255), max(1, round(max(image.shape[:2]) / 200)))
    scale = TILE_SIDE / max(image.shape[:2])
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def png_data_uri(image_bgr: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI for an OpenCV image."""
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise DataError(f"could not encode a {image_bgr.shape} overlay as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _scores(summary: Mapping[str, Any], defect_type: str | None) -> tuple[np.ndarray, np.ndarray]:
    samples = summary["samples"]
    good = np.array([s["score"] for s in samples if s["label"] == 0], float)
    other = np.array([s["score"] for s in samples if s["label"] == 1 and defect_type in (None, s["defect_type"])], float)
    return good, other


def _roc_curves(summary: Mapping[str, Any]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    curves = []
    for name in [None, *summary["by_type"]]:
        good, other = _scores(summary, name)
        curve = roc_curve(np.concatenate([good, other]), np.r_[np.zeros(len(good)), np.ones(len(other))])
        auc = summary["image"]["auroc"] if name is None else summary["by_type"][name]["image_auroc"]
        curves.append((f"{name or 'all defects'}: AUROC {auc:.3f}", curve.fpr, curve.tpr))
    return curves


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
.warn{color:#a00;font-weight:bold}.plots svg{margin:4px}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;font-size:11px;max-width:260px}figcaption{word-break:break-all}"""


def build_report(summary: Mapping[str, Any], overlays: Mapping[str, Sequence[OverlayTile]] | None = None) -> str:
    """The report as one HTML string (no external resources)."""
    thr, op, img, pix = summary["threshold"], summary["operating_point"], summary["image"], summary["pixel"]
    title = f"edge-ad evaluation: {summary.get('run', 'run')} on {summary.get('category', 'test split')}"
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
           f"<p>Score: {_fmt(summary['score'])} (aggregation {_fmt(summary['aggregation'])}). "
           f"Test parts: {summary['counts']['good']} good, {summary['counts']['defective']} defective.</p>",
           "<h2>Headline metrics</h2>",
           _table([["image AUROC", img["auroc"], format_interval(img.get("auroc_ci95"), "")],
                   ["F1-max", img["f1_max"], ""], ["pixel AUROC", pix["auroc"], ""],
                   [f"AUPRO@{pix['aupro_fpr_limit']:.0%} FPR", pix["aupro"], ""]],
                  ["metric", "value", "95% interval (DeLong)"])]
    if pix.get("skipped"):
        out.append(f"<p>Pixel metrics skipped: {html.escape(pix['skipped'])}</p>")
    out += ["<h2>Operating point</h2>",
            f"<p>Threshold {_fmt(thr['threshold'], 5)} set on {thr['n']} good validation parts for a "
            f"false-reject rate of {thr['target_frr']:.2%} (achieved {thr['achieved_frr']:.2%}, "
            f"95% upper bound {thr['frr_upper_95']:.2%}). A part is rejected when its score exceeds it.</p>"]
    if thr.get("warning"):
        out.append(f"<p class='warn'>{html.escape(thr['warning'])}</p>")
    c = op["confusion"]
    out.append(_table([["good parts rejected (FRR)", f"{op['frr']:.2%}", f"{c['fp']} of {c['fp'] + c['tn']}"],
                       ["defects caught (recall)", f"{op['recall']:.2%}", f"{c['tp']} of {c['tp'] + c['fn']}"]],
                      ["on the test split", "rate", "count"]))
    out.append(_table([[name, t["count"], t["image_auroc"], format_interval(t.get("image_auroc_ci95"), ""), t["recall"]]
                       for name, t in summary["by_type"].items()],
                      ["defect type", "parts", "image AUROC", "95% interval", "recall at threshold"]))
    out.append("<h2>Curves and score distributions</h2><div class='plots'>")
    out.append(svg_roc(_roc_curves(summary)))
    for name in [None, *summary["by_type"]]:
        good, other = _scores(summary, name)
        out.append(svg_histogram(good, other, thr["threshold"], f"good vs {name or 'all defects'}",
                                 name or "defective"))
    out.append("</div>")
    for group, tiles in (overlays or {}).items():
        out.append(f"<h2>{html.escape(group)}</h2>")
        if not tiles:
            out.append("<p>none</p>")
            continue
        out.append("<div class='grid'>")
        for tile in tiles:
            out.append(f"<figure><img src='{png_data_uri(tile.image)}' alt='{html.escape(tile.caption)}'>"
                       f"<figcaption>{html.escape(tile.caption)}</figcaption></figure>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    summary: Mapping[str, Any], path: Path, overlays: Mapping[str, Sequence[OverlayTile]] | None = None
) -> Path:
    """Write :func:`build_report` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(summary, overlays), encoding="utf-8")
    return path
