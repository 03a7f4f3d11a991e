"""Station configuration: one YAML file per station, loaded into frozen dataclasses, strictly.

Sections (see ``firmware_configs/stations/README.md`` for every key): ``station``, ``camera``,
``geometry``, ``model``, ``decision``, ``tracker``, ``reject``, ``outputs``, ``archive``,
``metrics``, ``logging``. Every problem is a ConfigError that says where: ``file:line: <dotted
path>: <reason>`` -- syntax errors, unknown keys (with a did-you-mean), wrong types, values out of
range and rules that span sections. Nothing is half-loaded: :func:`load_station` returns a fully
checked :class:`StationConfig` or raises.

The runtime takes its own types from the station (``foreground_config()``, ``tracker_config()``,
``reject_timing()``, ``runtime_config()``), so there is one definition of each setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from edge_ad.config_line import OutputsConfig, RejectConfig
from edge_ad.config_schema import (
    ArchiveConfig,
    CameraConfig,
    DecisionConfig,
    GeometryConfig,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    StationInfo,
)
from edge_ad.errors import ConfigError, GeometryError
from edge_ad.geometry import ForegroundConfig
from edge_ad.line.reject import RejectTiming
from edge_ad.part_tracker import TrackerConfig
from edge_ad.typed_data import join_path, load_dataclass, to_plain
from edge_ad.yaml_edit import update_yaml_text, write_text_atomic
from edge_ad.yaml_lines import LoadedYaml, load_yaml, parse_yaml

if TYPE_CHECKING:
    from edge_ad.monitor import MonitorConfig
    from edge_ad.runtime import RuntimeConfig

__all__ = [
    "SECTIONS",
    "StationConfig",
    "check_reject_latency",
    "load_station",
    "parse_station",
    "update_station_file",
]

SECTIONS: dict[str, type] = {
    "station": StationInfo,
    "camera": CameraConfig,
    "geometry": GeometryConfig,
    "model": ModelConfig,
    "decision": DecisionConfig,
    "tracker": TrackerConfig,
    "reject": RejectConfig,
    "outputs": OutputsConfig,
    "archive": ArchiveConfig,
    "metrics": MetricsConfig,
    "logging": LoggingConfig,
}
# Fields of a reused runtime dataclass that the station sets elsewhere (one place per setting).
_SET_ELSEWHERE = {"tracker": {"roi": "geometry.roi"}}
_DEPTH_MODES = ("depth", "rgbd")


@dataclass(frozen=True)
class StationConfig:
    """A checked station file; ``path`` is where it was read from (relative paths resolve against it)."""

    station: StationInfo
    camera: CameraConfig
    geometry: GeometryConfig
    model: ModelConfig
    decision: DecisionConfig
    tracker: TrackerConfig
    reject: RejectConfig
    outputs: OutputsConfig
    archive: ArchiveConfig
    metrics: MetricsConfig
    logging: LoggingConfig
    path: Path | None = None

    # -- files named by the station, relative to it -------------------------------------------
    def base_dir(self) -> Path:
        """The folder relative paths in the file are resolved against (cwd for an in-memory config)."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """``relative`` (as written in the file) as a path from the station file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir() / path

    def bundle_path(self) -> Path | None:
        """The model bundle directory, None when the file leaves it to ``--bundle``."""
        return None if self.model.bundle is None else self.resolve(self.model.bundle)

    def noise_path(self) -> Path | None:
        """The per-pixel belt depth noise ``.npy`` from plane calibration, if any."""
        return None if self.geometry.noise_file is None else self.resolve(self.geometry.noise_file)

    def archive_dir(self) -> Path:
        """Where archived parts go."""
        return self.resolve(self.archive.dir)

    def log_file(self) -> Path | None:
        """The rotating log file, None for console only."""
        return None if self.logging.file is None else self.resolve(self.logging.file)

    # -- the runtime's own types ----------------------------------------------------------------
    def foreground_config(self) -> ForegroundConfig:
        """How the runtime cuts parts out of the belt (``geometry`` section)."""
        return self.geometry.foreground_config()

    def tracker_config(self, **overrides: Any) -> TrackerConfig:
        """Part tracking with the geometry ROI; ``overrides`` (e.g. ``per_frame=True``) replace fields."""
        return dataclasses.replace(self.tracker, **overrides)

    def reject_timing(self) -> RejectTiming:
        """Pulse delay (capture to pulse start, actuator lead taken off) and width."""
        return self.reject.timing()

    def decision_latency_s(self) -> float:
        """Longest expected capture-to-decision time: the tracker's leave frames plus the latency budget."""
        return self.tracker.leave_frames / self.camera.fps + self.decision.latency_budget_ms / 1000.0

    def runtime_config(self, **overrides: Any) -> RuntimeConfig:
        """The loop's RuntimeConfig (queue, read timeout, tracker, reject); ``overrides`` set run limits.

        ``overrides`` are RuntimeConfig fields such as ``max_parts``, ``duration_s`` or ``lossless``.
        """
        from edge_ad.runtime import RuntimeConfig

        settings: dict[str, Any] = {
            "queue_size": self.camera.queue_size,
            "read_timeout_s": self.camera.timeout_ms / 1000.0,
            "tracker": self.tracker_config(),
            "reject": self.reject_timing(),
        }
        settings.update(overrides)
        return RuntimeConfig(**settings)

    def monitor_config(self) -> MonitorConfig:
        """What the run's monitor starts: the reject archive, the metrics endpoint and the log file."""
        from edge_ad.monitor import MonitorConfig
        from edge_ad.monitor.archive import ArchiveConfig as ArchiveSettings
        from edge_ad.monitor.logs import LogConfig

        a = self.archive
        archive = None
        if a.enabled:
            # The station file speaks of a share of accepts; the archive keeps one accept in N.
            every = round(1.0 / a.sample_accepts) if a.sample_accepts > 0 else 0
            archive = ArchiveSettings(
                directory=self.archive_dir(), max_bytes=a.max_bytes, max_files=a.max_files,
                max_age_s=a.max_age_days * 86400.0, min_free_bytes=a.min_free_bytes, accept_every=every,
            )
        log = None
        if self.logging.file is not None or self.metrics.json_logs:
            log = LogConfig(
                path=self.log_file(), max_bytes=self.logging.max_bytes, backup_count=self.logging.backup_count,
                level=self.logging.level,
            )
        return MonitorConfig(archive=archive, metrics_port=self.metrics.port, log=log)

    def camera_options(self) -> dict[str, Any]:
        """What the station asks of its camera, as ``open_source`` keyword options (realsense's names).

        Profile (``width`` ... ``depth_fps``), ``min_usb`` and the depth filters (``decimation``,
        ``spatial``, ``temporal``, ``hole_filling``), ``stall_s`` and ``backoff_max_s``. A source takes the options it understands
        (see :func:`edge_ad.station_camera.open_station_source`).
        """
        camera = self.camera
        options: dict[str, Any] = dict(camera.profile())
        options["min_usb"] = camera.usb_type_min
        options.update(to_plain(camera.post_processing))
        options.update(stall_s=camera.stall_fault_ms / 1000.0, backoff_max_s=camera.backoff_max_s)
        return options

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data (every default filled in), section by section."""
        data = {name: to_plain(getattr(self, name)) for name in SECTIONS}
        for section, keys in _SET_ELSEWHERE.items():
            for key in keys:
                data[section].pop(key, None)
        return data


def load_station(path: Path, *, check_bundle: bool = True) -> StationConfig:
    """Read and check the station file at ``path``; ConfigError ``file:line: path: reason`` on any problem.

    With ``check_bundle`` and a bundle whose manifest exists, the model's mode is checked against
    the camera (a depth model needs a depth camera). A missing bundle is not an error here: the
    runtime verifies the bundle itself before it starts.
    """
    path = Path(path)
    return parse_station(load_yaml(path), path, check_bundle=check_bundle)


def parse_station(loaded: LoadedYaml, path: Path | None = None, *, check_bundle: bool = True) -> StationConfig:
    """Check already-parsed YAML (see :func:`load_station`)."""
    data = loaded.data if loaded.data is not None else {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{loaded.where('')}: a station file must be a mapping of sections, got {type(data).__name__}")
    for key in data:
        if key not in SECTIONS:
            raise _unknown_key(loaded, str(key), str(key), list(SECTIONS))
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = data.get(name)
        raw = {} if raw is None else raw
        _check_keys(cls, raw, name, loaded)
        try:
            sections[name] = load_dataclass(cls, raw, error=ConfigError, path=name)
        except (ConfigError, GeometryError) as exc:
            raise _located(loaded, _rehome(str(exc), name)) from None
    sections["tracker"] = dataclasses.replace(sections["tracker"], roi=sections["geometry"].roi)
    station = StationConfig(**sections, path=path)
    try:
        _cross_check(station, check_bundle)
    except ConfigError as exc:
        raise _located(loaded, str(exc)) from None
    return station


def update_station_file(path: Path, updates: Mapping[str, Any]) -> StationConfig:
    """Set dotted keys (``geometry.plane``) in the station file, keeping its comments; write atomically.

    The edited file is checked in full before it replaces the old one: an update that would make
    the station invalid raises ConfigError and leaves the file as it was. A ``None`` for a key the
    file does not have is skipped (nothing to clear).
    """
    path = Path(path)
    loaded = load_yaml(path)
    text = path.read_text(encoding="utf-8")
    present = {dotted: value for dotted, value in updates.items() if value is not None or _has(loaded.data, dotted)}
    new_text = update_yaml_text(text, present, str(path))
    station = parse_station(parse_yaml(new_text, str(path)), path, check_bundle=False)
    write_text_atomic(path, new_text)
    return station


def _has(data: Any, dotted: str) -> bool:
    for key in dotted.split("."):
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def _unknown_key(loaded: LoadedYaml, path: str, key: str, allowed: list[str]) -> ConfigError:
    close = get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
    return ConfigError(f"{loaded.where(path)}: unknown key {path} ({hint})")


def _check_keys(cls: type, data: Any, path: str, loaded: LoadedYaml) -> None:
    """Unknown keys anywhere below a section, with a suggestion (types are load_dataclass's job)."""
    if not isinstance(data, Mapping):
        return
    hints = get_type_hints(cls)
    hidden = _SET_ELSEWHERE.get(path, {})
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in hidden]  # type: ignore[arg-type]
    for key in data:
        child = join_path(path, str(key))
        if key in hidden:
            raise ConfigError(f"{loaded.where(child)}: unknown key {child} (set {hidden[key]} instead)")
        if key not in allowed:
            raise _unknown_key(loaded, child, str(key), allowed)
        for option in (hints[key], *get_args(hints[key])):
            if dataclasses.is_dataclass(option):
                _check_keys(option, data[key], child, loaded)  # type: ignore[arg-type]


def _rehome(message: str, section: str) -> str:
    """Give a reused dataclass's own error (``ForegroundConfig.x: ...``, ``roi: ...``) the YAML path."""
    head, sep, tail = message.partition(": ")
    if not sep:
        return f"{section}: {message}"
    if head == section or head.startswith((f"{section}.", f"{section}[")):
        return message
    first, dot, rest = head.partition(".")
    if dot and first[:1].isupper():
        return f"{section}.{rest}: {tail}"
    if head.isidentifier():
        return f"{section}.{head}: {tail}"
    return f"{section}: {message}"


def _located(loaded: LoadedYaml, message: str) -> ConfigError:
    """``file:line: message``, the line found from the dotted path the message starts with."""
    head = message.partition(": ")[0]
    return ConfigError(f"{loaded.where(head)}: {message}")


def check_reject_latency(reject: RejectConfig, latency_s: float, budget: str) -> None:
    """ConfigError unless the pulse starts after the decision can have been made.

    ``latency_s``: longest capture-to-decision time; ``budget`` says what it is made of. Nothing
    is checked when the delay is unknown (encoder mode without a belt speed).
    """
    fire = reject.fire_delay_s()
    if fire is not None and fire <= latency_s:
        key = next(name for name in ("delay_s", "delay_mm", "distance_mm") if getattr(reject, name) is not None)
        raise ConfigError(
            f"reject.{key}: the pulse would start {fire * 1000:.0f} ms after capture (travel to the gate less "
            f"the actuator lead) but a decision may take {latency_s * 1000:.0f} ms ({budget}): the part would "
            "pass the gate undecided; move the gate farther or reduce the budget"
        )


def _cross_check(station: StationConfig, check_bundle: bool) -> None:
    """Rules that span sections; each error names the key to change."""
    check_reject_latency(
        station.reject,
        station.decision_latency_s(),
        f"tracker.leave_frames {station.tracker.leave_frames} at camera.fps {station.camera.fps} plus "
        f"decision.latency_budget_ms {station.decision.latency_budget_ms:g}",
    )
    if station.model.mode in _DEPTH_MODES and not station.camera.depth:
        raise ConfigError(
            f"model.mode: a {station.model.mode!r} model needs depth, but camera.depth is false"
        )
    bundle = station.bundle_path()
    if check_bundle and bundle is not None and (bundle / "manifest.yaml").is_file():
        from edge_ad.manifest import load_manifest

        mode = load_manifest(bundle).model.mode
        if station.model.mode is not None and station.model.mode != mode:
            raise ConfigError(f"model.mode: the station expects {station.model.mode!r} but {bundle} is a {mode!r} model")
        if mode in _DEPTH_MODES and not station.camera.depth:
            raise ConfigError(f"model.bundle: {bundle} is a {mode!r} model (needs depth), but camera.depth is false")
