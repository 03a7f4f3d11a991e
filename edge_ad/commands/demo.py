"""``edge-ad demo``: the whole job on embedded defaults — synthetic line, train, export, inspect, summary.

Needs the ``train`` extra (torch) for its training and export steps; no camera, GPU or GPIO.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, handle_errors

STEPS = 4


def _step(number: int, text: str) -> float:
    console.rule(f"[bold]step {number}/{STEPS}[/]: {text}")
    return time.monotonic()


def _done(start: float, text: str) -> None:
    console.print(f"[green]done[/] in {time.monotonic() - start:.1f} s: {text}")


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working folder for data, run and bundle.")] = Path("demo-out"),
    preset: Annotated[str, typer.Option("--preset", help="Training preset.")] = "ast-edge",
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Override the preset's epochs (teacher and student).")
    ] = None,
    parts: Annotated[int, typer.Option("--parts", min=1, help="Parts to send down the synthetic line.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data, training and the line.")] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete OUT first instead of reusing its data.")] = False,
) -> None:
    """Synthesize an RGB-D line dataset, train AST on its good parts, export a verified bundle, then inspect a
    synthetic line with a simulated reject output and print the run summary (recall, false rejects, latency)."""
    from edge_ad.commands.run import run
    from edge_ad.synth import generate_dataset

    total = time.monotonic()
    if fresh and out.exists():
        shutil.rmtree(out)
    data = out / "data" / "widget"
    run_dir, bundle = out / "run", out / "bundle"

    start = _step(1, "synthesize a conveyor dataset (MVTec 3D-AD layout)")
    if (data / "meta.json").is_file():
        console.print(f"reusing {data} (pass --fresh to regenerate)")
    else:
        summary = generate_dataset(data.parent, data.name, seed, overwrite=True, progress=True)
        console.print(f"{summary.total} samples: {summary.counts}")
    _done(start, str(data))

    start = _step(2, f"train {preset} on good parts only (CPU)")
    from trainer.train_run import train  # torch: workstation side

    overrides: dict = {"seed": seed}
    if epochs is not None:
        overrides["train"] = {"epochs": epochs}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train(data, run_dir, preset=preset, overrides=overrides)
    _done(start, str(run_dir))

    start = _step(3, "export a verified ONNX bundle (parity gate against torch)")
    from export.pipeline import export_run

    result = export_run(run_dir, bundle, data=data, overwrite=True)
    console.print(
        f"parity: score max |diff| {result.parity.score_max_abs:.1e} x threshold on {result.parity.samples} samples"
    )
    _done(start, str(bundle))

    start = _step(4, f"inspect {parts} parts on a synthetic line, simulated reject output")
    run(
        bundle=bundle,
        camera=f"synthetic:{seed + 1}",  # new parts, never seen in training ...
        rig_seed=seed,  # ... at the station (camera, belt) the training data came from
        gpio="sim",
        max_parts=parts,
        realtime=False,
        json_file=out / "run_summary.json",
    )
    _done(start, f"summary in {out / 'run_summary.json'}")
    console.print(f"[bold]demo finished in {time.monotonic() - total:.0f} s[/]")


def register(app: typer.Typer) -> None:
    """Add ``edge-ad demo``."""
    app.command("demo")(demo)
