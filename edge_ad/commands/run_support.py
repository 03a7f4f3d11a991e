"""What ``edge-ad run`` does besides parsing its options: source options, the monitor, the station path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_ad.commands._common import console, err_console


def camera_uri(camera: str, seed: int | None) -> str:
    """``--camera`` with ``--seed`` folded in (synthetic:SEED in the URI wins)."""
    from edge_ad.errors import ConfigError
    from edge_ad.sources import parse_uri

    scheme, argument = parse_uri(camera)
    if seed is None:
        return camera
    if scheme != "synthetic":
        raise ConfigError(f"--seed applies to the synthetic camera only, not {camera!r}")
    return camera if argument is not None else f"synthetic:{seed}"


def source_options(
    scheme: str, *, speed: float | None, fps: float | None, defect_rate: float | None, size: int | None,
    realtime: bool | None, max_parts: int | None, rig_seed: int | None = None,
) -> dict[str, Any]:
    """Keyword options for ``open_source``: only what the user set, so a source refuses options it cannot take."""
    given = {"fps": fps, "speed_mps": speed, "defect_rate": defect_rate, "width": size, "height": size,
             "rig_seed": rig_seed}
    options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if scheme == "synthetic":
        options["realtime"] = True if realtime is None else realtime
        if max_parts is not None:
            options["parts"] = max_parts  # the line ends once the parts asked for have passed
    return options


def trigger_window(trigger: str | None, min_s: float | None, max_s: float | None) -> Any:
    """The trigger match window from ``--trigger-min`` / ``--trigger-max`` (the library's defaults for the rest)."""
    from edge_ad.errors import ConfigError
    from edge_ad.line.trigger_match import TriggerWindow

    given = {"min_s": min_s, "max_s": max_s}
    if trigger is None:
        if min_s is not None or max_s is not None:
            raise ConfigError("--trigger-min / --trigger-max apply with --trigger only")
        return None
    return TriggerWindow(**{key: value for key, value in given.items() if value is not None})


def monitor_config(
    port: int | None, host: str, archive: Path | None, archive_max_mb: float, accepts: int, log_file: Path | None
) -> Any:
    """The monitor the command-line options ask for (None when none is asked for)."""
    from edge_ad.monitor import MonitorConfig
    from edge_ad.monitor.archive import ArchiveConfig
    from edge_ad.monitor.logs import LogConfig

    if port is None and archive is None and log_file is None:
        return None
    return MonitorConfig(
        archive=ArchiveConfig(archive, max_bytes=int(archive_max_mb * 1024 * 1024), accept_every=accepts)
        if archive is not None else None,
        metrics_port=port,
        metrics_host=host,
        log=LogConfig(path=log_file) if log_file is not None else None,
    )


def run_monitored(source: Any, inspector: Any, line: Any, config: Any, clock: Any, monitor_config: Any) -> Any:
    """The loop with its monitor (metrics endpoint, reject archive, logs), closed however the run ends."""
    from edge_ad.monitor import Monitor
    from edge_ad.runtime import run_inspection

    monitor = Monitor.open(monitor_config, clock) if monitor_config is not None else None
    if monitor is not None and monitor_config.metrics_port is not None:
        err_console.print(f"metrics on http://{monitor_config.metrics_host}:{monitor_config.metrics_port}/metrics")
    try:
        return run_inspection(source, inspector, line, config, clock, handle_signals=True, monitor=monitor)
    finally:
        if monitor is not None:
            monitor.close()


def report(summary: Any, json_file: Path | None, camera: str) -> None:
    """Print the summary (and write its JSON); a camera that failed the run exits 5."""
    from edge_ad.errors import CameraError
    from edge_ad.run_summary import summary_table

    console.print(summary_table(summary))
    if json_file is not None:
        summary.write_json(json_file)
        console.print(f"summary written to {json_file}")
    if summary.error is not None:
        raise CameraError(f"{camera}: {summary.error}")


def run_station(
    station_file: Path, bundle: Path | None, clock: Any, *, max_parts: int | None, max_frames: int | None,
    duration: float | None, realtime: bool | None, notify: bool, sim_file: Path | None, json_file: Path | None,
) -> None:
    """``edge-ad run --station S.yaml``: everything the station file says, in the same safe order."""
    import cv2

    from edge_ad.config import load_station
    from edge_ad.errors import ConfigError
    from edge_ad.inspector import Inspector
    from edge_ad.runtime_setup import open_line_io
    from edge_ad.station_camera import open_station_source
    from edge_ad.supervisor import SupervisorConfig

    st = load_station(station_file)  # the runtime never starts on a partial config (exit 2)
    bundle = bundle if bundle is not None else st.bundle_path()
    if bundle is None:
        raise ConfigError(f"{station_file}: model.bundle is not set; give --bundle")
    options: dict[str, Any] = {}
    if st.model.threads is not None:
        cv2.setNumThreads(st.model.threads)
        if st.model.backend == "onnxruntime":
            options["intra_op_num_threads"] = st.model.threads
    # The station's geometry (a calibrated belt plane, its ROI) replaces the bundle's foreground settings.
    inspector = Inspector.from_bundle(
        bundle, backend=st.model.backend, clock=clock, precision=st.model.precision,
        foreground=st.foreground_config(), lazy=True, **options
    )
    if st.decision.threshold is not None:
        inspector.threshold = st.decision.threshold  # the station's own calibration wins over the bundle's
    outputs = st.outputs
    pins = {name.removesuffix("_pin"): pin for name, pin in outputs.pins().items()}
    line = open_line_io(
        clock, outputs.backend, polarity=st.reject.polarity if outputs.backend != "sim" else None,
        notify=notify, sim_file=sim_file, pins=pins if outputs.backend != "sim" else None, chip=outputs.chip,
    )
    try:
        source, _ignored = open_station_source(st, clock=clock)
        info = source.info()
        paced = True if realtime is None else realtime
        config = st.runtime_config(
            max_parts=max_parts, max_frames=max_frames, duration_s=duration, lossless=not paced,
            tracker=st.tracker_config(per_frame=info.frame_is_part),
            supervisor=SupervisorConfig(stall_fault_ms=st.camera.stall_fault_ms),
        )
        err_console.print(f"station {st.station.name}: inspecting {info.name} with {bundle}; Ctrl-C stops")
        summary = run_monitored(source, inspector, line, config, clock, st.monitor_config())
    finally:
        line.close()
        inspector.close()
    report(summary, json_file, st.camera.uri)
