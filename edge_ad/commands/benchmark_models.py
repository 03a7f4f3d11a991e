"""`edge-ad benchmark-models`: every model family trained, evaluated, exported and timed on the same data.

The trainer is imported inside the command body so that ``edge-ad --help`` and the device runtime
never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, err_console, handle_errors


def register(app: typer.Typer) -> None:
    """Add the benchmark-models command to the root app."""
    app.command("benchmark-models")(benchmark_models)


def _log(line: str) -> None:
    # Plain text: error messages and paths may hold [brackets] that rich would read as markup.
    err_console.print(line, markup=False, highlight=False)


@handle_errors
def benchmark_models(
    data: Annotated[Path, typer.Option("--data", help="Category folder with train, validation and test splits, e.g. DATA/widget.")],
    json_path: Annotated[Path, typer.Option("--json", help="Report to write (schema edge-ad/benchmark-models/1).")],
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated families, e.g. ast,mkd (default: every registered family, AST first)."),
    ] = None,
    size: Annotated[str, typer.Option("--size", help="Preset size trained for each family: edge, tiny or paper (FAMILY-SIZE).")] = "edge",
    mode: Annotated[
        str | None, typer.Option("--mode", help="rgb, rgbd or depth (default: rgbd when the data has xyz, else rgb).")
    ] = None,
    work: Annotated[
        Path | None,
        typer.Option("--work", help="Folder for WORK/FAMILY/{run,bundle,evaluation.json} (default: JSON-STEM-runs next to the JSON)."),
    ] = None,
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Skip training where WORK/FAMILY/run is a finished run of the same preset and mode (trusted as it is: train again after changing a family's code).")
    ] = False,
    frr: Annotated[
        float, typer.Option("--frr", min=0.0, max=1.0, help="Target false-reject rate; the threshold is set on good validation parts.")
    ] = 0.01,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Threads for training, torch scoring and ONNX Runtime (default: the preset's; ORT physical cores, at most 4)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Training epochs for every family (default: the presets').")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="ONNX Runtime calls measured per model (median reported).")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="ONNX Runtime calls run first and not measured.")] = 5,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the table as GitHub markdown to this file.")] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", envvar="EDGE_AD_CACHE", help="Feature cache folder (default ~/.cache/edge-ad/features; env EDGE_AD_CACHE)."),
    ] = None,
) -> None:
    """Train FAMILY-SIZE for each model family on the same data, evaluate it on the test split, export and verify an FP32 bundle and time it on ONNX Runtime; print one table.

    Per family: image AUROC, pixel AUROC, AUPRO, image AUROC per defect type, FRR and recall at the validation threshold, parameters (all and trained), multiply-adds, ONNX Runtime median latency and frames/s at batch 1 on this CPU, and training seconds. A family that fails (refuses the mode, diverges, fails the export parity gate, ...) gets a row with its error and the table goes on.

    Writes the JSON after every family (atomically), and with --markdown the same table as GitHub markdown.

    Exit codes: 0 when at least one family went through; when EVERY family failed, the first family's error code (2 invalid settings, 3 data problem, 7 inference, 8 export gate, 9 training diverged, 10 backbone weights missing). Before any training: 2 for an unknown family, size, mode or option, 3 when the data has no train split.
    """
    # Lazy: the trainer imports torch, which the device runtime never loads.
    from trainer.benchmark_models import BenchmarkOptions, run_benchmark
    from trainer.benchmark_table import console_renderables, exit_code, markdown_table

    options = BenchmarkOptions(
        size=size, mode=mode, target_frr=frr, threads=threads, epochs=epochs, runs=runs, warmup=warmup,
        reuse=reuse, cache_dir=cache_dir,
    )
    report = run_benchmark(data, json_path, models=models, work_dir=work, options=options, log=_log)
    for item in console_renderables(report):
        console.print(item)
    console.print(f"report: {json_path}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(markdown_table(report), encoding="utf-8")
        console.print(f"markdown: {markdown}")
    code = exit_code(report["rows"])
    if code:
        err_console.print(f"[bold red]error[/]: every family failed (exit code {code} of the first: {report['rows'][0]['error_stage']})")
        raise typer.Exit(code=code)
