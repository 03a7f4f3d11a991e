"""Open the camera a station names, and probe it: requested profile against what it delivers.

A source takes only the options it understands (``synthetic`` has no serial, ``folder`` no
resolution); :func:`open_station_source` passes those and reports the rest as "not applied",
so a setting is never dropped silently. :func:`probe_camera` starts the source, reads one frame
and compares the station's profile with the source's ``info()`` and the frame; a mismatch
(wrong resolution, USB 2 link, no depth) is a CameraError naming requested vs. actual.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from edge_ad.clock import Clock
from edge_ad.config import StationConfig
from edge_ad.errors import CameraError
from edge_ad.sources import FrameSource, SourceExhausted, open_source, parse_uri
from edge_ad.sources import base as sources_base

# The first frame of a RealSense pipeline can take a second (auto-exposure settling).
FIRST_FRAME_TIMEOUT_S = 3.0


def accepted_options(uri: str) -> set[str] | None:
    """Keyword options the source registered for ``uri``'s scheme takes (None: unknown scheme, any)."""
    # edge_ad.sources has no public accessor for a factory's signature yet; read the registry.
    factory = sources_base.source_factory(parse_uri(uri)[0])
    if factory is None:
        return None
    parameters = list(inspect.signature(factory).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def open_station_source(
    station: StationConfig, uri: str | None = None, **extra: Any
) -> tuple[FrameSource, tuple[str, ...]]:
    """Build (not start) the station's camera, or ``uri`` instead; returns it and the options it did not take.

    ``extra`` (e.g. ``clock=``) is passed whenever the source takes it.
    """
    uri = uri or station.camera.source_uri()
    wanted = {**station.camera_options(), **extra}
    accepted = accepted_options(uri)
    if accepted is None:
        return open_source(uri, **wanted), ()
    options = {key: value for key, value in wanted.items() if key in accepted}
    skipped = tuple(key for key in station.camera_options() if key not in accepted)
    return open_source(uri, **options), skipped


@dataclass(frozen=True)
class ProbeReport:
    """What a probe asked for and found; ``mismatches`` empty means the camera delivers the station's profile."""

    uri: str
    requested: dict[str, Any]
    actual: dict[str, Any]
    not_applied: tuple[str, ...]
    mismatches: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return not self.mismatches


def probe_camera(station: StationConfig, clock: Clock | None = None) -> ProbeReport:
    """Open, start and read one frame from the station's camera, then stop it; compare the profile.

    Raises CameraError when the camera cannot be opened or started (not for a mismatch: that is
    in the report, for the caller to print before refusing).
    """
    uri = station.camera.source_uri()
    extra = {"clock": clock} if clock is not None else {}
    source, skipped = open_station_source(station, **extra)
    requested: dict[str, Any] = dict(station.camera.profile())
    requested["depth"] = station.camera.depth
    if station.camera.usb_type_min is not None:
        requested["usb_type_min"] = station.camera.usb_type_min
    mismatches: list[str] = []
    source.start()
    try:
        info = source.info()
        actual = dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(vars(info))
        try:
            frame = source.read(max(FIRST_FRAME_TIMEOUT_S, station.camera.stall_fault_ms / 1000.0))
        except SourceExhausted:
            frame = None
        if frame is None:
            mismatches.append("no frame arrived")
        else:
            actual["frame_width"], actual["frame_height"] = frame.color.shape[1], frame.color.shape[0]
            actual["depth"] = frame.depth is not None
    finally:
        source.stop()
    for key in ("width", "height", "fps", "depth_width", "depth_height", "depth_fps", "depth"):
        if key not in actual or key not in requested or (key.endswith("fps") and actual[key] == 0):
            continue  # fps 0: an unpaced replay has no rate to compare
        if not _same(requested[key], actual[key]):
            mismatches.append(f"{key}: requested {requested[key]}, got {actual[key]}")
    for key in ("width", "height"):
        frame_key = f"frame_{key}"
        if frame_key in actual and actual[frame_key] != requested[key]:
            mismatches.append(f"frame {key}: requested {requested[key]}, got {actual[frame_key]}")
    usb = actual.get("usb_type")
    if usb is not None and station.camera.usb_type_min is not None and not _usb_ok(str(usb), station.camera.usb_type_min):
        mismatches.append(f"usb_type: requested >= {station.camera.usb_type_min}, got {usb}")
    return ProbeReport(uri, requested, actual, skipped, tuple(mismatches))


def _same(requested: Any, actual: Any) -> bool:
    if isinstance(requested, bool) or isinstance(actual, bool):
        return bool(requested) == bool(actual)
    if isinstance(requested, (int, float)) and isinstance(actual, (int, float)):
        return abs(float(requested) - float(actual)) < 0.5
    return requested == actual


def _usb_ok(actual: str, minimum: str) -> bool:
    try:
        return Version(actual) >= Version(minimum)
    except InvalidVersion:
        return False


def refuse_mismatch(report: ProbeReport) -> None:
    """CameraError listing requested vs. actual when the probe found any difference."""
    if report.mismatches:
        raise CameraError(f"{report.uri}: the camera does not deliver the station's profile: {'; '.join(report.mismatches)}")
