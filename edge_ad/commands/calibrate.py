"""``edge-ad calibrate``: station calibration -- belt plane, threshold on good parts, reject timing.

Thin shell over the ``calibration`` package (imported inside each command: it depends on
edge_ad, never the reverse). Results are written into the station file (comments kept, atomic)
or, for the threshold, into the bundle's manifest (re-hashed and verified).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edge_ad.commands._common import console, err_console, handle_errors, is_interactive

calibrate_app = typer.Typer(
    help="Calibrate a station: belt plane and ROI, the threshold on good parts, the reject timing.",
    no_args_is_help=True,
)


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


@calibrate_app.command("plane")
@handle_errors
def calibrate_plane_command(
    station: Annotated[Path, typer.Option("--station", "-s", help="Station YAML to read the geometry from and write into.")],
    camera: Annotated[
        str | None,
        typer.Option("--camera", "-c", help="Frame source URI (default: the station's camera); the belt must be empty."),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", "-n", min=2, help="Frames to pool.")] = 30,
    keep_method: Annotated[
        bool, typer.Option("--keep-method", help="Store plane and ROI but leave geometry.method as it is.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure and print; write nothing.")] = False,
) -> None:
    """Fit the empty belt over several frames; store its plane, ROI and per-pixel depth noise in the station file.

    Refuses (exit 6) when the belt is not visible, not flat, or something stands on it; exit 5 when the camera fails.
    """
    from calibration.plane import calibrate_plane, collect_frames, limits_for_station, store_plane_calibration
    from edge_ad.config import load_station
    from edge_ad.sources import open_source
    from edge_ad.station_camera import open_station_source

    config = load_station(station, check_bundle=False)
    source = open_source(camera) if camera else open_station_source(config)[0]
    with source:
        captured = collect_frames(source, frames)
    result = calibrate_plane(captured, limits_for_station(config))
    plane = result.plane
    console.print(
        _table(
            f"belt plane from {len(captured)} frames",
            [
                ("normal", ", ".join(f"{v:+.5f}" for v in plane.normal)),
                ("distance d", f"{plane.d * 1000:.2f} mm"),
                ("tilt to the optical axis", f"{plane.tilt_deg():.2f} deg"),
                ("RMS to the plane", f"{result.rms_m * 1000:.2f} mm"),
                ("inlier ratio", f"{result.inlier_ratio:.2%}"),
                ("valid depth", f"{result.valid_fraction:.1%}"),
                ("ROI (x0, y0, x1, y1)", ", ".join(f"{v:.4f}" for v in result.roi)),
                ("median depth noise (std)", f"{result.median_noise_m * 1000:.3f} mm"),
            ],
        )
    )
    if dry_run:
        console.print("dry run: station file not changed")
        return
    store_plane_calibration(station, result, set_method=not keep_method)
    console.print(f"[green]plane, ROI and noise file written into {station}[/]")


@calibrate_app.command("threshold")
@handle_errors
def calibrate_threshold_command(
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Bundle directory whose manifest gets the threshold.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Good parts: MVTec 3D-AD layout category folder (or `edge-ad record` output).")
    ],
    frr: Annotated[
        float | None,
        typer.Option("--frr", min=0.0, max=0.5, help="Target false-reject rate (default: the station's, else 0.005)."),
    ] = None,
    station: Annotated[Path | None, typer.Option("--station", "-s", help="Station YAML (for decision.frr_target).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Inference backend.")] = "onnxruntime",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Inference threads.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and print; leave the bundle unchanged.")] = False,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON to this file.")] = None,
    synthetic_defects: Annotated[
        int,
        typer.Option(
            "--synthetic-defects",
            min=0,
            help="Also paint N DefectMaker defects (REB: Bezier shapes, noise or cut-paste fills) onto the good "
            "parts and report recall per class at the new threshold: an estimate when no real defects exist.",
        ),
    ] = 0,
) -> None:
    """Score the good parts in DATA through the runtime path and set the bundle's threshold for the target FRR.

    Reports the achieved false-reject rate with its 95% upper bound and, when DATA has test defects, recall per defect type. With --synthetic-defects N, also the recall on N synthetic defects (an estimate: real defects may be harder or easier).
    """
    from calibration.threshold import calibrate_threshold, write_threshold
    from edge_ad.config import load_station
    from edge_ad.errors import ConfigError

    target = frr
    if target is None:
        target = load_station(station, check_bundle=False).decision.frr_target if station is not None else 0.005
    if not 0.0 < target < 1.0:
        raise ConfigError(f"--frr: must be in (0, 1), got {target}")
    options = {"intra_op_num_threads": threads} if threads is not None and backend == "onnxruntime" else {}
    result = calibrate_threshold(bundle, data, target, backend=backend, progress=is_interactive(), **options)
    choice = result.choice
    console.print(
        _table(
            f"threshold for FRR {target:.2%}",
            [
                ("good parts scored", ", ".join(f"{k} {v}" for k, v in result.good_per_split.items())),
                ("good parts faulted", str(result.good_faults)),
                ("threshold", f"{result.previous_threshold:.6g} -> {choice.threshold:.6g}"),
                ("achieved FRR", f"{choice.achieved_frr:.2%} ({choice.n} good parts)"),
                ("FRR 95% upper bound", f"{choice.frr_upper_95:.2%}"),
                ("data hash", result.data_hash),
            ],
        )
    )
    if choice.warning:
        err_console.print(f"[yellow]warning[/]: {choice.warning}")
    if result.good_faults:
        err_console.print(f"[yellow]warning[/]: {result.good_faults} good part(s) could not be scored (FAULT_REJECT on the line)")
    if result.recall:
        table = Table(title="recall per defect type")
        for column in ("defect", "parts", "rejected", "faults", "recall"):
            table.add_column(column)
        for kind, recall in result.recall.items():
            table.add_row(kind, str(recall.n), str(recall.rejected), str(recall.faults), f"{recall.recall:.1%}")
        console.print(table)
    record = result.to_dict()
    if synthetic_defects:
        record["synthetic_recall"] = _synthetic_recall(bundle, data, synthetic_defects, choice.threshold, backend, options)
    if json_file is not None:
        json_file.write_text(json.dumps(record, indent=2), encoding="utf-8")
    if dry_run:
        console.print("dry run: bundle not changed")
        return
    write_threshold(bundle, result)
    console.print(f"[green]threshold written into {bundle} (manifest re-hashed and verified)[/]")


def _synthetic_recall(
    bundle: Path, data: Path, n: int, threshold: float, backend: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Recall on ``n`` DefectMaker defects at ``threshold``: printed as a table, returned for the JSON."""
    from calibration.synthetic_recall import estimate_recall_with_defect_maker

    synthetic = estimate_recall_with_defect_maker(
        bundle, data, n, threshold=threshold, backend=backend, progress=is_interactive(), **options
    )
    table = Table(title=f"recall on {n} synthetic DefectMaker defects (estimate)")
    for column in ("class", "defects", "rejected", "faults", "recall"):
        table.add_column(column)
    for name, row in synthetic.per_class.items():
        table.add_row(name, str(row.n), str(row.rejected), str(row.faults), f"{row.recall:.1%}")
    console.print(table)
    return synthetic.to_dict()


@calibrate_app.command("reject-timing")
@handle_errors
def calibrate_reject_timing_command(
    belt_speed: Annotated[float, typer.Option("--belt-speed", help="Belt speed in m/s (the fastest, with an encoder).")],
    distance_mm: Annotated[float, typer.Option("--distance-mm", help="Camera view centre to the reject gate, mm.")],
    encoder_counts_per_mm: Annotated[
        float | None, typer.Option("--encoder-counts-per-mm", help="Encoder resolution: time the pulse in counts.")
    ] = None,
    actuator_lead_ms: Annotated[
        float, typer.Option("--actuator-lead-ms", min=0.0, help="Actuator response time; the pulse starts this much earlier.")
    ] = 0.0,
    pulse_ms: Annotated[float | None, typer.Option("--pulse-ms", help="Pulse width (default: the station's, else 50).")] = None,
    station: Annotated[Path | None, typer.Option("--station", "-s", help="Station YAML: latency budget in, timing out.")] = None,
    test_fire: Annotated[bool, typer.Option("--test-fire", help="Pulse the reject output a few times.")] = False,
    gpio: Annotated[str, typer.Option("--gpio", help="Output for --test-fire: 'sim' records the timeline.")] = "sim",
    pulses: Annotated[int, typer.Option("--pulses", min=1, max=100, help="Pulses fired by --test-fire.")] = 3,
) -> None:
    """Compute the capture-to-pulse delay (seconds, or encoder counts), check it against the latency budget, store it."""
    import time

    from calibration.reject_timing import compute_reject_delay, fire_test_pulses
    from edge_ad.clock import MonotonicClock
    from edge_ad.config import load_station, update_station_file
    from edge_ad.line.outputs import open_output

    config = load_station(station, check_bundle=False) if station is not None else None
    delay = compute_reject_delay(
        belt_speed,
        distance_mm,
        counts_per_mm=encoder_counts_per_mm,
        actuator_lead_ms=actuator_lead_ms,
        pulse_ms=pulse_ms,
        station=config,
    )
    rows = [
        ("mode", delay.reject.mode),
        ("travel to the gate", f"{distance_mm / 1000 / belt_speed * 1000:.1f} ms"),
        ("pulse starts after capture", f"{delay.fire_delay_s * 1000:.1f} ms"),
        ("decision latency budget", f"{delay.latency_s * 1000:.1f} ms (margin {delay.margin_s * 1000:.1f} ms)"),
        ("pulse width", f"{delay.reject.pulse_ms:g} ms"),
    ]
    if delay.delay_counts is not None:
        rows.insert(2, ("delay in encoder counts", str(delay.delay_counts)))
    console.print(_table("reject timing", rows))
    if station is not None:
        update_station_file(station, delay.station_updates())
        console.print(f"[green]reject timing written into {station}[/]")
    if test_fire:
        clock = MonotonicClock()
        output = open_output(gpio, clock=clock)
        edges = fire_test_pulses(output, clock, time.sleep, pulses=pulses, pulse_s=delay.reject.pulse_ms / 1000.0)
        start = edges[0][0]
        for index, (rise, fall) in enumerate(edges):
            console.print(
                f"pulse {index + 1}: rise {(rise - start) / 1e6:8.1f} ms, width {(fall - rise) / 1e6:6.1f} ms ({gpio})"
            )


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` sub-app to the root CLI."""
    app.add_typer(calibrate_app, name="calibrate")
