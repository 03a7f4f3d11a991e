"""``edge-ad run``: inspect parts on a line (camera or replay) with a verified bundle and drive the reject output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_ad.commands._common import console, err_console, handle_errors


def _camera_uri(camera: str, seed: int | None) -> str:
    """``--camera`` with ``--seed`` folded in (synthetic:SEED in the URI wins)."""
    from edge_ad.errors import ConfigError
    from edge_ad.sources import parse_uri

    scheme, argument = parse_uri(camera)
    if seed is None:
        return camera
    if scheme != "synthetic":
        raise ConfigError(f"--seed applies to the synthetic camera only, not {camera!r}")
    return camera if argument is not None else f"synthetic:{seed}"


def _source_options(
    scheme: str, *, speed: float | None, fps: float | None, defect_rate: float | None, size: int | None,
    realtime: bool | None, max_parts: int | None,
) -> dict[str, Any]:
    """Keyword options for ``open_source``: only what the user set, so a source refuses options it cannot take."""
    given = {"fps": fps, "speed_mps": speed, "defect_rate": defect_rate, "width": size, "height": size}
    options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if scheme == "synthetic":
        options["realtime"] = True if realtime is None else realtime
        if max_parts is not None:
            options["parts"] = max_parts  # the line ends once the parts asked for have passed
    return options


@handle_errors
def run(
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Verified model bundle directory (from `edge-ad export`).")],
    camera: Annotated[
        str,
        typer.Option(
            "--camera",
            "-c",
            help="Frame source URI: synthetic[:SEED] (procedural line), folder:DIR (MVTec 3D-AD style replay), "
            "realsense[:SERIAL], bag:FILE.",
        ),
    ] = "synthetic",
    gpio: Annotated[str, typer.Option("--gpio", help="Reject output: 'sim' records the pulse timeline.")] = "sim",
    max_parts: Annotated[int | None, typer.Option("--max-parts", min=1, help="Stop after this many parts are decided.")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Stop after this many frames are inspected.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=0.001, help="Stop after this many seconds.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the synthetic line (synthetic:SEED wins).")] = None,
    speed: Annotated[float | None, typer.Option("--speed", help="Synthetic belt speed in m/s (default 0.25).")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frame rate (synthetic default 30; folder: 0 = unpaced).")] = None,
    defect_rate: Annotated[
        float | None, typer.Option("--defect-rate", min=0.0, max=1.0, help="Share of defective synthetic parts (default 0.3).")
    ] = None,
    size: Annotated[int | None, typer.Option("--size", min=32, help="Synthetic image width and height in pixels (default 256).")] = None,
    realtime: Annotated[
        bool | None,
        typer.Option(
            "--realtime/--no-realtime",
            help="Realtime: frames paced by the clock, oldest dropped when inspection lags (the line never waits). "
            "No-realtime: every frame inspected, as fast as possible. Default: realtime, except an unpaced folder.",
        ),
    ] = None,
    reject_delay: Annotated[
        float,
        typer.Option(
            "--reject-delay", min=0.0,
            help="Seconds from a part's capture to the actuator; must exceed the end_to_end latency (late pulses are counted).",
        ),
    ] = 1.5,
    pulse: Annotated[float, typer.Option("--pulse", min=0.001, help="Reject pulse width in seconds.")] = 0.05,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, help="Frames buffered between capture and inspection.")] = 2,
    backend: Annotated[str, typer.Option("--backend", help="Inference backend.")] = "onnxruntime",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Inference (and OpenCV) threads.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the run summary as JSON to this file.")] = None,
) -> None:
    """Inspect parts: read RGB-D frames, find each part, score its best frame, decide and pulse the reject output.

    The bundle is verified before the camera or the output is opened: a bad bundle exits with 4 and the reject output never leaves its safe state. Ctrl-C / SIGTERM stop cleanly (pulses in flight still fire). Prints a summary table (and JSON with --json); exits 5 if the camera failed.
    """
    import cv2

    from edge_ad.clock import MonotonicClock
    from edge_ad.errors import CameraError
    from edge_ad.inspector import Inspector
    from edge_ad.line.outputs import open_output
    from edge_ad.line.reject import RejectTiming
    from edge_ad.part_tracker import TrackerConfig
    from edge_ad.run_summary import summary_table
    from edge_ad.runtime import RuntimeConfig, run_inspection
    from edge_ad.sources import open_source, parse_uri

    clock = MonotonicClock()
    backend_options: dict[str, Any] = {}
    if threads is not None:
        cv2.setNumThreads(threads)
        if backend == "onnxruntime":
            backend_options["intra_op_num_threads"] = threads
    # 1. The model first: nothing on the line moves until the bundle is proven good.
    inspector = Inspector.from_bundle(bundle, backend=backend, clock=clock, **backend_options)
    try:
        uri = _camera_uri(camera, seed)
        scheme = parse_uri(uri)[0]
        options = _source_options(
            scheme, speed=speed, fps=fps, defect_rate=defect_rate, size=size, realtime=realtime, max_parts=max_parts
        )
        source = open_source(uri, clock=clock, **options)
        info = source.info()
        paced = realtime if realtime is not None else not (scheme == "folder" and not fps)
        foreground = inspector.config.foreground
        max_frames_per_part = TrackerConfig().max_frames_per_part
        if info.frames_per_part is not None:
            # A slow line keeps a part in view longer: never force-close a part that is still passing.
            max_frames_per_part = max(max_frames_per_part, math.ceil(2 * info.frames_per_part))
        tracker = TrackerConfig(
            per_frame=info.frame_is_part,
            max_frames_per_part=max_frames_per_part,
            roi=foreground.roi if foreground is not None else TrackerConfig().roi,
        )
        config = RuntimeConfig(
            queue_size=queue_size,
            lossless=not paced,
            max_parts=max_parts,
            max_frames=max_frames,
            duration_s=duration,
            tracker=tracker,
            reject=RejectTiming(reject_delay, pulse),
        )
        output = open_output(gpio, clock=clock)
        err_console.print(f"inspecting {info.name} ({info.width}x{info.height}) with {bundle} on {backend}; Ctrl-C stops")
        summary = run_inspection(source, inspector, output, config, clock, handle_signals=True)
    finally:
        inspector.close()
    console.print(summary_table(summary))
    if json_file is not None:
        summary.write_json(json_file)
        console.print(f"summary written to {json_file}")
    if summary.error is not None:
        raise CameraError(f"{camera}: {summary.error}")


def register(app: typer.Typer) -> None:
    """Add ``edge-ad run`` to the root CLI."""
    app.command("run")(run)
