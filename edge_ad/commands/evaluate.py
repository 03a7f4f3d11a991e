"""`edge-ad evaluate`: honest metrics of a trained run on a dataset's test split (workstation, needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edge_ad.commands._common import console, err_console, handle_errors
from edge_ad.detection_metrics import format_interval


def register(app: typer.Typer) -> None:
    """Add the evaluate command to the root app."""
    app.command("evaluate")(evaluate)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _auroc(value: float | None, interval: list[float] | None) -> str:
    """AUROC with its 95% interval when the summary has one (older JSON files do not)."""
    if value is None or not interval:
        return _num(value)
    return f"{value:.4f}  (95% CI {format_interval(interval)})"


def print_summary(summary: dict[str, Any]) -> None:
    """Headline metrics and per-type recall as two small tables."""
    thr, op, img, pix = summary["threshold"], summary["operating_point"], summary["image"], summary["pixel"]
    head = Table("metric", "value", title=f"{summary.get('run', '')} on {summary.get('category', '')}")
    head.add_row("image AUROC", _auroc(img["auroc"], img.get("auroc_ci95")))
    head.add_row("pixel AUROC", _num(pix["auroc"]))
    head.add_row(f"AUPRO@{pix['aupro_fpr_limit']:.0%}", _num(pix["aupro"]))
    head.add_row("F1-max", _num(img["f1_max"]))
    head.add_row("threshold (validation good)", f"{thr['threshold']:.6g}  (n={thr['n']}, target FRR {_pct(thr['target_frr'])})")
    head.add_row("FRR on test good", f"{_pct(op['frr'])}  (95% bound {_pct(op['frr_upper_95'])})")
    head.add_row("recall at threshold", _pct(op["recall"]))
    console.print(head)
    types = Table("defect type", "parts", "image AUROC", "recall")
    for name, row in summary["by_type"].items():
        types.add_row(
            name, str(row["count"]), _auroc(row["image_auroc"], row.get("image_auroc_ci95")), _pct(row["recall"])
        )
    console.print(types)
    if pix.get("skipped"):
        err_console.print(f"pixel metrics skipped: {pix['skipped']}")
    if thr.get("warning"):
        err_console.print(f"[yellow]warning[/]: {thr['warning']}")


@handle_errors
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Run directory written by `edge-ad train`.")],
    data: Annotated[Path, typer.Option("--data", help="Category folder with a test split, e.g. DATA/mvtec3d/tire.")],
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the metrics JSON (schema edge-ad/evaluation/1).")],
    score: Annotated[
        str | None,
        typer.Option(
            "--score",
            help="Which score (default: the model's own, the one the exported bundle computes). "
            "AST: 'ast' student-teacher distance, 'teacher-nll' the teacher's likelihood alone; "
            "other families list theirs in the README's model table.",
        ),
    ] = None,
    frr: Annotated[
        float,
        typer.Option("--frr", min=0.0, max=1.0, help="Target false-reject rate; the threshold is set on good validation parts."),
    ] = 0.01,
    report: Annotated[
        Path | None, typer.Option("--report", help="HTML report path (default RUN/report.html).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per inference batch.")] = 8,
) -> None:
    """Evaluate a trained run on the test split of a dataset.

    Reports image AUROC, pixel AUROC, AUPRO up to 30% FPR and F1-max. At the threshold set on the run's good VALIDATION parts for the target false-reject rate (never on test data) it reports the false-reject rate on good test parts, recall per defect type and the confusion counts.

    Writes the JSON, adds it to RUN/metrics.json under "evaluation", and writes a self-contained HTML report with ROC curves, score histograms and heatmap overlays. Exit codes: 2 bad option, 3 data problem, 10 missing weights.
    """
    # Lazy: trainer imports torch, which the device runtime never loads.
    from trainer.evaluate import evaluate_run

    report_path = report or run / "report.html"
    summary = evaluate_run(
        run, data, score=score, target_frr=frr, json_path=json_path, report_path=report_path, batch_size=batch_size
    )
    print_summary(summary)
    console.print(f"metrics: {json_path}\nreport:  {report_path}")
