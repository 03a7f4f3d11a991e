"""``edge-ad bench``: per-stage latency and frames per second, ONNX Runtime FP32 (and INT8) against PyTorch eager."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edge_ad.commands._common import console, err_console, handle_errors


def _source_options(scheme: str, size: int) -> dict[str, Any]:
    """Options for ``open_source``: the synthetic line renders at ``size`` and unpaced (frames as fast as read)."""
    if scheme == "synthetic":
        return {"width": size, "height": size, "realtime": False}
    return {}


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"  # keeps the table within 80 columns


def _cell(stats: dict[str, Any]) -> str:
    return " / ".join(_ms(stats[key]) for key in ("median_ms", "p90_ms", "p99_ms"))


def bench_table(report: dict[str, Any]) -> Table:
    """One row per stage: median / p90 / p99 in ms for ONNX Runtime and torch eager, and the torch/ORT ratio."""
    from edge_ad.bench import ORT_INT8_NAME, ORT_NAME, STAGE_LABELS, STAGES, TORCH_NAME

    backends = report["backends"]
    ort, eager, int8 = backends[ORT_NAME], backends.get(TORCH_NAME), backends.get(ORT_INT8_NAME)
    ratios = report["ratios"].get(f"{TORCH_NAME}/{ORT_NAME}", {})
    speedup = report["ratios"].get(f"{ORT_NAME}/{ORT_INT8_NAME}", {})
    title = f"{report['source']}, {report['frames']} frames, {report['threads']} thread(s); ms: median / p90 / p99"
    table = Table(title=title)
    table.add_column("stage", no_wrap=True)
    table.add_column("onnxruntime", justify="right", no_wrap=True)
    if eager:
        table.add_column("torch eager", justify="right", no_wrap=True)
        table.add_column("torch/ORT", justify="right", no_wrap=True)
    if int8:
        table.add_column("ORT int8", justify="right", no_wrap=True)
        table.add_column("fp32/int8", justify="right", no_wrap=True)
    for stage in STAGES:
        row = [STAGE_LABELS[stage], _cell(ort["stages"][stage])]
        if eager:
            row += [_cell(eager["stages"][stage]), f"{ratios[stage]:.2f}x" if stage in ratios else ""]
        if int8:
            row += [_cell(int8["stages"][stage]), f"{speedup[stage]:.2f}x" if stage in speedup else ""]
        table.add_row(*row, end_section=stage == STAGES[-1])
    for label, key in (("frames/s, 1000/median", "fps_from_median"), ("frames/s, measured", "throughput_fps")):
        row = [label, f"{ort[key]:.1f}"]
        if eager:
            row += [f"{eager[key]:.1f}", ""]
        if int8:
            row += [f"{int8[key]:.1f}", ""]
        table.add_row(*row)
    return table


@handle_errors
def bench(
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Verified model bundle directory (from `edge-ad export`).")],
    run: Annotated[
        Path | None,
        typer.Option("--run", help="Training run the bundle was exported from: also time PyTorch eager (needs torch)."),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames measured per backend.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Frames run first and not measured.")] = 5,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Threads for ONNX Runtime, torch and OpenCV (default: physical cores, at most 4)."),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="Frames: synthetic[:SEED] (procedural line) or folder:DIR (MVTec 3D-AD category).")
    ] = "synthetic",
    size: Annotated[
        int | None, typer.Option("--size", min=32, help="Synthetic frame width and height (default: the bundle's image size).")
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
) -> None:
    """Time each stage (capture, geometry + preprocess, inference, scoring, end to end) on ONNX Runtime FP32 and,
    with --run, on PyTorch eager over the same frames (and on the bundle's INT8 model when it has one); print
    medians, p90, p99, frames/s and the torch/ORT and FP32/INT8 ratios.
    """
    import cv2

    from edge_ad.backends import InferenceBackend, create_backend
    from edge_ad.backends.onnxruntime import default_thread_count
    from edge_ad.bench import ORT_INT8_NAME, ORT_NAME, TORCH_NAME, BackendBench, bench_backend, bench_report
    from edge_ad.bundle import load_bundle
    from edge_ad.clock import MonotonicClock
    from edge_ad.manifest import MODEL_ROLES
    from edge_ad.sources import FrameSource, open_source, parse_uri

    clock = MonotonicClock()
    threads = threads or default_thread_count()
    cv2.setNumThreads(threads)
    verified = load_bundle(bundle)
    size = size or verified.preprocess_config.image_size
    options = _source_options(parse_uri(source)[0], size)

    def open_frames() -> FrameSource:
        # A fresh source per backend: each pass starts from the same frame, so both get the same inputs.
        return open_source(source, clock=clock, **options)

    frame_source = open_frames()
    info = frame_source.info()
    setup: dict[str, Any] = {
        "bundle": str(bundle), "source": source, "frame_size": [info.width, info.height], "frames": frames,
        "warmup": warmup, "threads": threads, "image_size": verified.preprocess_config.image_size,
        "depth_size": verified.preprocess_config.depth_size, "run": None if run is None else str(run),
    }

    torch_note: str | None = None
    eager: InferenceBackend | None = None
    if run is None:
        torch_note = "PyTorch eager skipped: no --run given (pass the training run the bundle was exported from)"
        err_console.print(torch_note)
    else:
        from trainer.bench_torch import open_torch_backend

        eager = open_torch_backend(run, verified, threads)  # first, so a wrong --run fails before any timing
        if run.name != verified.manifest.model.source_run:
            torch_note = f"run name {run.name!r} differs from the manifest's source_run {verified.manifest.model.source_run!r}"
            err_console.print(f"[yellow]warning[/]: {torch_note}")

    results: list[BackendBench] = []
    try:
        backend = create_backend("onnxruntime", verified.model_path("fp32"), intra_op_num_threads=threads)
        try:
            err_console.print(f"timing {ORT_NAME} on {info.name} ({info.width}x{info.height}): {warmup} + {frames} frames")
            results.append(bench_backend(ORT_NAME, verified, backend, frame_source, clock, frames=frames, warmup=warmup))
        finally:
            backend.close()
        if any(entry.role == MODEL_ROLES["int8"] for entry in verified.manifest.files.values()):
            backend = create_backend("onnxruntime", verified.model_path("int8"), intra_op_num_threads=threads)
            try:
                err_console.print(f"timing {ORT_INT8_NAME}: {warmup} + {frames} frames")
                results.append(
                    bench_backend(ORT_INT8_NAME, verified, backend, open_frames(), clock, frames=frames, warmup=warmup)
                )
            finally:
                backend.close()
        if eager is not None:
            err_console.print(f"timing {TORCH_NAME} ({run}): {warmup} + {frames} frames")
            results.append(bench_backend(TORCH_NAME, verified, eager, open_frames(), clock, frames=frames, warmup=warmup))
    finally:
        if eager is not None:
            eager.close()

    report = bench_report(verified, setup, results, torch_note)
    console.print(bench_table(report))
    if report["same_inputs"] is False:
        err_console.print("[yellow]warning[/]: the two passes saw different model inputs (is the source deterministic?)")
    if json_file is not None:
        json_file.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        console.print(f"report written to {json_file}")


def register(app: typer.Typer) -> None:
    """Add ``edge-ad bench`` to the root CLI."""
    app.command("bench")(bench)
