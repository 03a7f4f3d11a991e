"""``edge-ad run``: inspect parts on a line (camera or replay) with a verified bundle and drive the reject output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_ad.commands._common import err_console, handle_errors
from edge_ad.commands.run_support import (
    camera_uri,
    monitor_config,
    report,
    run_monitored,
    run_station,
    source_options,
    trigger_window,
)


@handle_errors
def run(
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", "-b", help="Verified model bundle directory (from `edge-ad export`); default: the station's."),
    ] = None,
    station: Annotated[
        Path | None,
        typer.Option(
            "--station", "-s",
            help="Station YAML (firmware_configs/stations/): its camera, geometry, tracker, reject timing, outputs, "
            "backend and threads replace the matching command-line options.",
        ),
    ] = None,
    camera: Annotated[
        str,
        typer.Option(
            "--camera",
            "-c",
            help="Frame source URI: synthetic[:SEED] (procedural line), folder:DIR (MVTec 3D-AD style replay), "
            "realsense[:SERIAL], bag:FILE.",
        ),
    ] = "synthetic",
    gpio: Annotated[
        str, typer.Option("--gpio", help="Line I/O: sim (records timelines), jetson (Jetson.GPIO) or gpiod (libgpiod v2).")
    ] = "sim",
    polarity: Annotated[
        str | None,
        typer.Option(
            "--polarity",
            help="Reject gate wiring: energize_to_accept (positive release, fail-safe: a dead controller rejects) "
            "or energize_to_reject. Required with real GPIO; sim defaults to energize_to_reject.",
        ),
    ] = None,
    board: Annotated[
        str | None, typer.Option("--board", help="Pin map for real GPIO: a name in firmware_configs/boards or a YAML path.")
    ] = None,
    gpio_file: Annotated[
        Path | None, typer.Option("--gpio-file", help="sim only: also append every edge to this file (crash tests).")
    ] = None,
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="Belt encoder (sim, jetson, gpiod): reject slots in counts, not time.")
    ] = None,
    encoder_offset: Annotated[
        int | None, typer.Option("--encoder-offset", min=0, help="Encoder counts from a part's trigger to the gate.")
    ] = None,
    encoder_lead: Annotated[
        int, typer.Option("--encoder-lead", min=0, help="Counts before the part's arrival the actuator must be driven.")
    ] = 0,
    trigger: Annotated[
        str | None,
        typer.Option(
            "--trigger",
            help="Part trigger input (sim, jetson, gpiod; real GPIO on the --board map's trigger pin): every edge is "
            "a part that gets exactly one decision, its reject slot timed from the edge (--reject-delay / "
            "--encoder-offset count from there). A trigger no tracked part matches is FAULT_REJECT; a tracked part "
            "no trigger announced is counted and gets no pulse. sim is driven by tests only.",
        ),
    ] = None,
    trigger_min: Annotated[
        float | None, typer.Option("--trigger-min", min=0.0, help="Earliest a part's first frame follows its trigger, s (default 0).")
    ] = None,
    trigger_max: Annotated[
        float | None,
        typer.Option("--trigger-max", min=0.0, help="Latest a part's first frame follows its trigger, s (default 0.5; "
                     "keep it below the time between two parts)."),
    ] = None,
    notify: Annotated[
        bool, typer.Option("--notify/--no-notify", help="systemd notify (READY, WATCHDOG, STATUS) when $NOTIFY_SOCKET is set.")
    ] = True,
    stall_ms: Annotated[
        float, typer.Option("--stall-ms", min=1.0, help="No frame for this long: FAULT, gate safe (realtime runs).")
    ] = 250.0,
    infer_timeout_ms: Annotated[
        float, typer.Option("--infer-timeout-ms", min=1.0, help="An inference not back by then is abandoned: FAULT_REJECT.")
    ] = 1000.0,
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
    rig_seed: Annotated[
        int | None,
        typer.Option("--rig-seed", help="Synthetic line at the station (camera, belt) of the dataset `edge-ad synth --seed N` wrote (default: the line's seed)."),
    ] = None,
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
    backend: Annotated[str, typer.Option("--backend", help="Inference backend: onnxruntime or tensorrt.")] = "onnxruntime",
    precision: Annotated[
        str | None,
        typer.Option("--precision", help="Model precision: fp32 / int8 (ONNX Runtime), fp16 / int8 (TensorRT); default the bundle's."),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Inference (and OpenCV) threads.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the run summary as JSON to this file.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus text at /metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics endpoint binds (loopback unless you say otherwise).")
    ] = "127.0.0.1",
    archive: Annotated[
        Path | None, typer.Option("--archive", help="Reject archive folder: image, heatmap and JSON of every reject.")
    ] = None,
    archive_max_mb: Annotated[float, typer.Option("--archive-max-mb", min=1.0, help="Archive size cap (oldest evicted).")] = 512.0,
    archive_accepts: Annotated[
        int, typer.Option("--archive-accepts", min=0, help="Also archive one accepted part in N (0: rejects only).")
    ] = 0,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="JSON log lines to this rotating file (10 MB x 5).")
    ] = None,
) -> None:
    """Inspect parts: read RGB-D frames, find each part, score its best frame, decide and pulse the reject output.

    The bundle is verified first (a bad one exits with 4; no output is touched), then the outputs open de-energised, then the camera. In realtime runs a supervisor holds the gate safe while starting, on a camera stall, a hung model or too many errors, and each part's reject slot is reserved when it enters the view (a decision not in by the slot's deadline is FAULT_REJECT). Ctrl-C / SIGTERM: gate safe first, then a bounded stop. Prints a summary table (and JSON with --json); exits 5 if the camera failed.
    """
    import cv2

    from edge_ad.clock import MonotonicClock
    from edge_ad.inspector import Inspector
    from edge_ad.line.reject import RejectTiming
    from edge_ad.part_tracker import TrackerConfig
    from edge_ad.runtime import RuntimeConfig
    from edge_ad.runtime_setup import open_line_io
    from edge_ad.sources import open_source, parse_uri
    from edge_ad.supervisor import SupervisorConfig

    clock = MonotonicClock()
    if station is not None and trigger is not None:
        from edge_ad.errors import ConfigError

        raise ConfigError("--trigger: a station file has no trigger pin yet; run without --station to use a trigger")
    if station is not None:
        run_station(
            station, bundle, clock, max_parts=max_parts, max_frames=max_frames, duration=duration,
            realtime=realtime, notify=notify, sim_file=gpio_file, json_file=json_file,
        )
        return
    monitoring = monitor_config(metrics_port, metrics_host, archive, archive_max_mb, archive_accepts, log_file)
    if bundle is None:
        from edge_ad.errors import ConfigError

        raise ConfigError("give --bundle B, or --station S.yaml whose model.bundle names one")
    backend_options: dict[str, Any] = {}
    if threads is not None:
        cv2.setNumThreads(threads)
        if backend == "onnxruntime":
            backend_options["intra_op_num_threads"] = threads
    # 1. The model first: nothing on the line moves until the bundle is proven good.
    # Lazy: every frame gets geometry (part presence), only the part's best frame gets model inputs.
    inspector = Inspector.from_bundle(
        bundle, backend=backend, clock=clock, precision=precision, lazy=True, **backend_options
    )
    # 2. The outputs next, de-energised: the line is in its wired safe state before the camera opens.
    line = open_line_io(
        clock, gpio, polarity=polarity, board=board, encoder=encoder, encoder_offset=encoder_offset,
        encoder_lead=encoder_lead, notify=notify, sim_file=gpio_file,
        trigger=trigger, trigger_window=trigger_window(trigger, trigger_min, trigger_max),
    )
    try:
        uri = camera_uri(camera, seed)
        scheme = parse_uri(uri)[0]
        options = source_options(
            scheme, speed=speed, fps=fps, defect_rate=defect_rate, size=size, realtime=realtime, max_parts=max_parts,
            rig_seed=rig_seed,
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
            supervisor=SupervisorConfig(stall_fault_ms=stall_ms, infer_timeout_ms=infer_timeout_ms),
        )
        err_console.print(f"inspecting {info.name} ({info.width}x{info.height}) with {bundle} on {backend}; Ctrl-C stops")
        summary = run_monitored(source, inspector, line, config, clock, monitoring)
    finally:
        line.close()  # idempotent: the run already released them unless it failed to start
        inspector.close()
    report(summary, json_file, camera)


def register(app: typer.Typer) -> None:
    """Add ``edge-ad run`` to the root CLI."""
    app.command("run")(run)
