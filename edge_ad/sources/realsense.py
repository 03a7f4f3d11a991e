"""``realsense[:SERIAL]``: a live Intel RealSense D4xx camera, depth aligned to colour, in metres.

The camera must deliver exactly the configured depth and colour profiles on a fast enough USB
link, or it is refused at start (CameraError naming requested vs actual). Frames come from
``pipeline.try_wait_for_frames`` (a timeout is reported, never a hang), pass the optional depth
filters (decimation, spatial, hole filling; temporal is off by default because it smears moving
parts), are aligned to colour with ``rs.align`` and converted with the device's depth scale.
Repeated frame numbers are dropped and skipped ones counted. A camera that stalls or vanishes
raises CameraDisconnected (the runtime retries); the next reads reconnect on a capped backoff,
with a hardware reset after each failed attempt. ``stop`` never blocks for longer than
``stop_timeout_s`` (``pipeline.stop()`` can hang on a dead camera, librealsense #9184).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge_ad._fields import check_range, coerce_fields
from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import CameraDisconnected, CameraError, ConfigError
from edge_ad.frame import Frame
from edge_ad.sources.base import SourceBase, SourceInfo, register_source
from edge_ad.sources.rs_common import (
    COLOR_FORMATS,
    Backoff,
    FrameNumberGate,
    StreamMode,
    check_active_profile,
    check_usb_type,
    frame_from_rs,
    run_bounded,
    stream_mode,
)

log = logging.getLogger(__name__)

# try_wait_for_frames calls per read before a run of duplicate frames counts as a timeout.
_MAX_DUPLICATES_PER_READ = 8


@dataclass(frozen=True)
class RealSenseConfig:
    """Requested streams, depth filters, and the stall / reconnect / stop timings (seconds).

    ``depth_fps`` None: the colour rate. ``decimation`` 1 is off. ``min_usb`` None accepts any link.
    ``stall_s``: no frame for this long means the camera is gone.
    """

    width: int = 640
    height: int = 480
    fps: int = 30
    depth_width: int = 640
    depth_height: int = 480
    depth_fps: int | None = None
    color_format: str = "rgb8"
    min_usb: str | None = "3"
    decimation: int = 1
    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False
    stall_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    stop_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        coerce_fields(self)
        owner = "realsense"
        for name in ("width", "height", "fps", "depth_width", "depth_height"):
            check_range(owner, name, getattr(self, name), low=1)
        if self.depth_fps is not None:
            check_range(owner, "depth_fps", self.depth_fps, low=1)
        check_range(owner, "decimation", self.decimation, low=1, high=8)
        for name in ("stall_s", "backoff_initial_s", "stop_timeout_s"):
            check_range(owner, name, getattr(self, name), low=0.0, low_open=True)
        check_range(owner, "backoff_max_s", self.backoff_max_s, low=self.backoff_initial_s)
        if self.color_format not in COLOR_FORMATS:
            raise ConfigError(f"{owner}.color_format: must be one of {', '.join(COLOR_FORMATS)}, got {self.color_format!r}")

    def requested(self) -> list[StreamMode]:
        """The two stream modes the camera must deliver."""
        depth_fps = self.depth_fps if self.depth_fps is not None else self.fps
        return [
            StreamMode("depth", self.depth_width, self.depth_height, depth_fps, "z16"),
            StreamMode("color", self.width, self.height, self.fps, self.color_format),
        ]


class RealSenseSource(SourceBase):
    """A live RealSense camera (the first one found, or the one with ``serial``).

    ``rs`` is the pyrealsense2 module (imported on start when None; tests pass a fake with the same
    names). ``counters``: duplicates, missing frames, stalls and reconnects so far.
    """

    def __init__(
        self,
        serial: str | None = None,
        config: RealSenseConfig | None = None,
        clock: Clock | None = None,
        rs: Any = None,
    ) -> None:
        self.serial = serial
        self.config = config if config is not None else RealSenseConfig()
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._rs = rs
        self._pipeline: Any = None
        self._filters: list[Any] = []
        self._align: Any = None
        self._depth_scale = 0.0
        self._last_frame_ns = 0
        self._started = False
        self._gate = FrameNumberGate()
        self._backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        self.stalls = 0
        self.reconnects = 0

    @property
    def where(self) -> str:
        """The camera as the user named it, for messages."""
        return f"realsense:{self.serial}" if self.serial else "realsense (first camera)"

    @property
    def counters(self) -> dict[str, int]:
        """Duplicate and missing frame numbers, stalls and successful reconnects."""
        return {
            "duplicates": self._gate.duplicates, "missing": self._gate.missing,
            "stalls": self.stalls, "reconnects": self.reconnects,
        }

    def _module(self) -> Any:
        if self._rs is None:
            try:
                import pyrealsense2
            except ImportError as exc:
                raise CameraError(
                    f"{self.where}: pyrealsense2 is not importable ({exc}); install the 'realsense' extra "
                    "(pip install 'edge-ad[realsense]') and the libusb-1.0-0 system package"
                ) from exc
            self._rs = pyrealsense2
        return self._rs

    def start(self) -> None:
        """Open the camera and check its profile and USB link; CameraError (exit 5) when it does not match."""
        self._open()
        self._started = True
        self._backoff.succeeded()

    def _open(self) -> None:
        rs = self._module()
        config = self.config
        depth, color = config.requested()
        rs_config = rs.config()
        if self.serial:
            rs_config.enable_device(self.serial)
        rs_config.enable_stream(rs.stream.depth, depth.width, depth.height, rs.format.z16, depth.fps)
        rs_config.enable_stream(rs.stream.color, color.width, color.height, getattr(rs.format, color.format), color.fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(rs_config)
        except RuntimeError as exc:
            raise CameraError(f"{self.where}: cannot start streaming {depth} and {color}: {exc}") from exc
        try:
            check_active_profile(config.requested(), [stream_mode(s) for s in profile.get_streams()], self.where)
            device = profile.get_device()
            usb = None
            if device.supports(rs.camera_info.usb_type_descriptor):
                usb = device.get_info(rs.camera_info.usb_type_descriptor)
            check_usb_type(usb, config.min_usb, self.where)
            self._depth_scale = float(device.first_depth_sensor().get_depth_scale())
        except (CameraError, RuntimeError) as exc:
            run_bounded(pipeline.stop, config.stop_timeout_s, f"{self.where} stop")
            if isinstance(exc, CameraError):
                raise
            raise CameraError(f"{self.where}: cannot read the device: {exc}") from exc
        self._pipeline = pipeline
        self._filters = self._make_filters(rs)
        self._align = rs.align(rs.stream.color)
        self._gate.reset()  # a (re)started camera numbers its frames afresh
        self._last_frame_ns = self.clock.now_ns()

    def _make_filters(self, rs: Any) -> list[Any]:
        """Depth post-processing in librealsense's recommended order; spatial/temporal work on disparity."""
        config = self.config
        filters: list[Any] = []
        if config.decimation > 1:
            decimation = rs.decimation_filter()
            decimation.set_option(rs.option.filter_magnitude, config.decimation)
            filters.append(decimation)
        if config.spatial or config.temporal:
            filters.append(rs.disparity_transform(True))
            if config.spatial:
                filters.append(rs.spatial_filter())
            if config.temporal:
                filters.append(rs.temporal_filter())
            filters.append(rs.disparity_transform(False))
        if config.hole_filling:
            filters.append(rs.hole_filling_filter())
        return filters

    def read(self, timeout_s: float) -> Frame | None:
        """The next aligned frame, None on timeout; CameraDisconnected when the camera is gone (retry later)."""
        if not self._started:
            raise CameraError(f"{self.where}: read() before start()")
        if self._pipeline is None:
            self._reconnect()
        for _ in range(_MAX_DUPLICATES_PER_READ):
            try:
                ok, frames = self._pipeline.try_wait_for_frames(max(1, round(timeout_s * 1000)))
            except RuntimeError as exc:
                self._lost(f"streaming failed: {exc}")
            if not ok:
                idle_s = (self.clock.now_ns() - self._last_frame_ns) / 1e9
                if idle_s >= self.config.stall_s:
                    self.stalls += 1
                    self._lost(f"no frame for {idle_s:.1f} s (stall limit {self.config.stall_s} s)")
                return None
            self._last_frame_ns = self.clock.now_ns()
            frame = self._convert(frames)
            if frame is not None:
                return frame
        return None

    def _convert(self, frames: Any) -> Frame | None:
        """Dedupe, filter, align and convert one frameset; None for a duplicate or an incomplete one."""
        color = frames.get_color_frame()
        if not color or not frames.get_depth_frame():
            return None
        if not self._gate.admit(int(color.get_frame_number())):
            return None
        for block in self._filters:
            frames = block.process(frames).as_frameset()
        aligned = self._align.process(frames)
        color, depth = aligned.get_color_frame(), aligned.get_depth_frame()
        if not color or not depth:
            return None
        return frame_from_rs(color, depth, self._depth_scale, self._last_frame_ns)

    def _lost(self, reason: str) -> None:
        """Drop the dead pipeline, schedule the first reconnect and raise CameraDisconnected."""
        self._release()
        wait = self._backoff.failed(self.clock.now_ns())
        log.warning("%s: %s; reconnecting in %.1f s", self.where, reason, wait)
        raise CameraDisconnected(f"{self.where}: {reason}; reconnecting in {wait:.1f} s")

    def _reconnect(self) -> None:
        """One reconnect attempt when due; CameraDisconnected until the camera streams again."""
        now = self.clock.now_ns()
        if not self._backoff.ready(now):
            wait = ((self._backoff.next_attempt_ns or now) - now) / 1e9
            raise CameraDisconnected(f"{self.where}: disconnected; next reconnect attempt in {wait:.1f} s")
        try:
            self._open()
        except CameraError as exc:
            self._hardware_reset()
            wait = self._backoff.failed(self.clock.now_ns())
            raise CameraDisconnected(f"{self.where}: reconnect failed ({exc}); next attempt in {wait:.1f} s") from exc
        self._backoff.succeeded()
        self.reconnects += 1
        log.info("%s: reconnected", self.where)

    def _hardware_reset(self) -> None:
        """Reset the camera (if it is still enumerated) so that the next attempt finds it in a clean state."""
        rs = self._module()
        try:
            for device in rs.context().query_devices():
                serial = device.get_info(rs.camera_info.serial_number)
                if self.serial is None or serial == self.serial:
                    device.hardware_reset()
                    log.info("%s: hardware reset of camera %s", self.where, serial)
                    return
        except RuntimeError as exc:
            log.warning("%s: hardware reset failed: %s", self.where, exc)

    def _release(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            run_bounded(pipeline.stop, self.config.stop_timeout_s, f"{self.where} stop")

    def stop(self) -> None:
        """Stop streaming within ``stop_timeout_s`` (a hung ``pipeline.stop`` is left behind); idempotent."""
        self._release()
        self._started = False

    def info(self) -> SourceInfo:
        """Colour resolution and frame rate as configured (the camera is refused if it differs)."""
        return SourceInfo(self.where, self.config.width, self.config.height, float(self.config.fps))


@register_source("realsense")
def open_realsense(
    argument: str | None,
    width: int = 640,
    height: int = 480,
    fps: float = 30,
    depth_width: int = 640,
    depth_height: int = 480,
    color_format: str = "rgb8",
    min_usb: str | None = "3",
    decimation: int = 1,
    spatial: bool = False,
    temporal: bool = False,
    hole_filling: bool = False,
    clock: Clock | None = None,
    rs: Any = None,
) -> RealSenseSource:
    """``realsense`` (first camera) or ``realsense:SERIAL`` -> RealSenseSource (pyrealsense2 loads on start)."""
    if fps != int(fps):
        raise ConfigError(f"realsense: fps must be a whole number the camera supports, got {fps}")
    config = RealSenseConfig(
        width=width, height=height, fps=int(fps), depth_width=depth_width, depth_height=depth_height,
        color_format=color_format, min_usb=min_usb, decimation=decimation, spatial=spatial,
        temporal=temporal, hole_filling=hole_filling,
    )
    return RealSenseSource(argument, config, clock=clock, rs=rs)
