"""``edge-ad export``: a trained run becomes a verified bundle (workstation; needs the train extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, handle_errors


@handle_errors
def export(
    run: Annotated[Path, typer.Option("--run", help="Training run directory (from edge-ad train --out).")],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Dataset (ROOT/CATEGORY) for the parity gate; default: the run's training data."),
    ] = None,
    frr: Annotated[
        float, typer.Option("--frr", min=1e-6, max=0.5, help="Target false-reject rate on good validation parts.")
    ] = 0.01,
    parity_samples: Annotated[
        int, typer.Option("--parity-samples", min=1, help="Held-out samples (validation + test) for the parity gate.")
    ] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle directory.")] = False,
) -> None:
    """Export RUN to an fp32 ONNX bundle: graph check, torch-vs-ONNX Runtime parity gate, manifest with hashes.

    Exit 8 when a gate fails (the message says by how much); nothing is left behind then.
    """
    from export.pipeline import export_run  # torch: workstation only

    result = export_run(run, out, data=data, target_frr=frr, parity_samples=parity_samples, overwrite=overwrite)
    p = result.parity
    console.print(f"bundle written: {result.bundle_dir}")
    console.print(
        f"parity on {p.samples} held-out samples: map max |diff| {p.map_max_abs:.2e} x threshold, "
        f"score max |diff| {p.score_max_abs:.2e} x threshold, decisions agree {p.decision_agreement:.0%}"
    )
    console.print(f"threshold {result.threshold:.6g} for false-reject rate {frr:.2%} on good validation parts")


def register(app: typer.Typer) -> None:
    """Add ``edge-ad export``."""
    app.command("export")(export)
