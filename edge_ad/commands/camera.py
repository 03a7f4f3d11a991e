"""``edge-ad record``: capture samples from any camera URI into the MVTec 3D-AD layout (train like the benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, err_console, handle_errors


def register(app: typer.Typer) -> None:
    """Add ``edge-ad record`` to the root CLI."""
    app.command("record")(record)


@handle_errors
def record(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o",
            help="Folder to fill: ROOT/CATEGORY/SPLIT/TYPE, e.g. data/mypart/train/good "
            "(with --label-from-truth: ROOT/CATEGORY/test). New samples are numbered after existing ones.",
        ),
    ],
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Samples to write (frames, or parts with --parts).")],
    camera: Annotated[
        str,
        typer.Option(
            "--camera", "-c",
            help="Frame source URI: realsense[:SERIAL], bag:FILE (.bag or .db3), folder:DIR, synthetic[:SEED].",
        ),
    ] = "realsense",
    parts: Annotated[
        bool,
        typer.Option(
            "--parts/--frames",
            help="--parts: one sample per part passing (its best frame, as the line picks it); "
            "--frames: every frame (see --every).",
        ),
    ] = False,
    every: Annotated[int, typer.Option("--every", min=1, help="With --frames: keep every N-th frame.")] = 1,
    label_from_truth: Annotated[
        bool,
        typer.Option(
            "--label-from-truth",
            help="With --parts on a source that knows ground truth (synthetic, folder): file each part "
            "under test/<its defect type or good>.",
        ),
    ] = False,
    size: Annotated[int | None, typer.Option("--size", min=32, help="Synthetic image width and height in pixels.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frame rate (realsense, synthetic).")] = None,
    defect_rate: Annotated[
        float | None, typer.Option("--defect-rate", min=0.0, max=1.0, help="Share of defective synthetic parts.")
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime/--no-realtime", help="Pace the synthetic line at its frame rate (default: as fast as possible).")
    ] = False,
    idle: Annotated[float, typer.Option("--max-idle", min=0.1, help="Fail (exit 5) after this many seconds without a frame.")] = 10.0,
) -> None:
    """Record RGB-D samples (rgb PNG + xyz TIFF in metres) into a dataset folder that `edge-ad train` reads.

    Stops after --count samples, or when a finite source (bag, folder) ends. Exits 5 when the camera fails or stays silent.
    """
    from edge_ad.commands.run_support import source_options
    from edge_ad.recorder import RecordSettings
    from edge_ad.recorder import record as record_samples
    from edge_ad.sources import open_source, parse_uri

    scheme = parse_uri(camera)[0]
    options = source_options(
        scheme, speed=None, fps=fps, defect_rate=defect_rate, size=size, realtime=realtime, max_parts=None
    )
    source = open_source(camera, **options)
    settings = RecordSettings(count=count, parts=parts, every=every, max_idle_s=idle)
    err_console.print(f"recording {count} {'parts' if parts else 'frames'} from {camera} into {out}")
    summary = record_samples(
        source, out, settings, label_from_truth=label_from_truth, on_sample=lambda p: err_console.print(f"  {p}")
    )
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.by_type.items())) or "nothing"
    console.print(f"wrote {len(summary.written)} samples ({kinds}) from {summary.frames} frames")
    if parts:
        skipped = ", ".join(f"{reason} {n}" for reason, n in summary.skipped.items()) or "none"
        console.print(f"parts seen {summary.parts_seen}, skipped: {skipped}")
    if summary.ended == "exhausted" and len(summary.written) < count:
        console.print(f"the source ended after {len(summary.written)} of {count} samples")
