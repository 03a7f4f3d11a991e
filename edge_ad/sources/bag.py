"""``bag:FILE``: play a RealSense recording (ROS1 ``.bag`` or ROS2 ``.db3``) frame by frame, no camera needed.

Deterministic, not real time: the file is read as fast as frames are taken
(``playback.set_real_time(False)``; frames wait for the reader instead of being dropped), played
once. The pipeline API can drop framesets nondeterministically on playback, so each sensor feeds
its own bounded queue and every colour frame is paired with the depth frame nearest in device time
(:class:`~edge_ad.sources.rs_common.DepthPairing`). The pair is aligned with ``rs.align`` to colour,
as the live source does, so a replay yields the same Frame the camera would have.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import CameraError, ConfigError, DataError
from edge_ad.frame import Frame
from edge_ad.sources.base import SourceBase, SourceExhausted, SourceInfo, register_source
from edge_ad.sources.rs_common import (
    DepthPairing,
    FrameNumberGate,
    Stamped,
    enum_name,
    frame_from_rs,
    intrinsics_from_rs,
    run_bounded,
    stream_mode,
)

log = logging.getLogger(__name__)

BAG_SUFFIXES = (".bag", ".db3")
# Frames buffered per stream between librealsense's playback thread and the reader. Playback
# blocks when it is full, so this bounds memory, never drops frames.
_QUEUE_FRAMES = 32
_END = object()  # queue marker: the stream has ended
# After the file ended, how long a stream may still take to hand over its last frames.
_END_GRACE_S = 0.2
_POLL_S = 0.02


class BagSource(SourceBase):
    """Frames of a RealSense recording, depth aligned to colour, every colour frame in file order.

    ``counters`` after a run: ``unpaired`` (colour frames without a depth frame within one depth
    frame period), ``duplicates`` and ``missing`` (by colour frame number).
    """

    def __init__(self, path: Path, clock: Clock | None = None, stop_timeout_s: float = 2.0) -> None:
        self.path = Path(path)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.stop_timeout_s = stop_timeout_s
        self._rs: Any = None
        self._playback: Any = None
        self._sensors: list[Any] = []
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._stopping = threading.Event()
        self._ended = threading.Event()
        self._played = threading.Event()
        self._pair: tuple[Any, Any] = ()
        self._needs_align = True
        self._pairing: DepthPairing | None = None
        self._pending_color: Stamped | None = None
        self._color_done = False
        self._depth_scale = 0.0
        self._info: SourceInfo | None = None
        self._align: Any = None
        self._composer: Any = None
        self._composed: Any = None
        self._gate = FrameNumberGate()
        self.unpaired = 0

    @property
    def counters(self) -> dict[str, int]:
        """What playback skipped: unpaired colour frames, duplicate and missing colour frame numbers."""
        return {"unpaired": self.unpaired, "duplicates": self._gate.duplicates, "missing": self._gate.missing}

    def start(self) -> None:
        """Open the recording and start playing it from the beginning (DataError if it is not a usable one)."""
        self.stop()
        import pyrealsense2 as rs

        self._rs = rs
        try:
            device = rs.context().load_device(str(self.path))
        except RuntimeError as exc:
            raise DataError(f"bag source {self.path}: librealsense cannot open the recording: {exc}") from exc
        playback = device.as_playback()
        playback.set_real_time(False)
        streams = self._find_streams(playback.query_sensors())
        self._needs_align = not already_aligned(streams["depth"][1], streams["color"][1])
        self._playback = playback
        self._stopping.clear()
        self._ended.clear()
        self._played.clear()
        self._queues = {name: queue.Queue(maxsize=_QUEUE_FRAMES) for name in ("depth", "color")}
        depth_fps = streams["depth"][1].fps()
        # Two depth frame periods: a colour frame further than that from any depth frame has none.
        self._pairing = DepthPairing(max_offset_ms=1000.0 / max(depth_fps, 1))
        self._pending_color, self._color_done = None, False
        self._gate = FrameNumberGate()
        self.unpaired = 0
        self._align = rs.align(rs.stream.color)
        self._composed = rs.frame_queue(2, True)
        self._composer = rs.processing_block(self._compose)
        self._composer.start(self._composed)
        playback.set_status_changed_callback(self._on_status)
        # Paused while the sensors start, then rewound: otherwise the first sensor to start plays
        # the head of the file before the other one listens, and its frames are lost.
        playback.pause()
        for name, (sensor, profile) in streams.items():
            sensor.open(profile)
            sensor.start(self._callback(name))
            self._sensors.append(sensor)
        playback.seek(datetime.timedelta(0))
        playback.resume()

    def _find_streams(self, sensors: list[Any]) -> dict[str, tuple[Any, Any]]:
        found: dict[str, tuple[Any, Any]] = {}
        for sensor in sensors:
            for profile in sensor.get_stream_profiles():
                name = enum_name(profile.stream_type())
                if name in ("depth", "color") and name not in found:
                    found[name] = (sensor, profile)
                    if name == "depth":
                        self._depth_scale = float(sensor.as_depth_sensor().get_depth_scale())
        missing = [name for name in ("depth", "color") if name not in found]
        if missing:
            raise DataError(f"bag source {self.path}: the recording has no {' and no '.join(missing)} stream")
        color = stream_mode(found["color"][1])
        self._info = SourceInfo(f"bag:{self.path}", color.width, color.height, float(color.fps))
        return found

    def _callback(self, name: str) -> Any:
        target = self._queues[name]

        def on_frame(frame: Any) -> None:
            frame.keep()  # out of librealsense's small frame pool: the reader may hold it a while
            item = Stamped(frame, int(frame.get_frame_number()), float(frame.get_timestamp()))
            # Blocking put: the playback thread waits for the reader (no drops), but never past a stop.
            while not self._stopping.is_set():
                try:
                    target.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        return on_frame

    def _on_status(self, status: Any) -> None:
        # "stopped" counts only after "playing": the pause/seek while starting may report it too.
        name = enum_name(status)
        if name == "playing":
            self._played.set()
        elif name == "stopped" and self._played.is_set():
            self._ended.set()

    def _compose(self, frame: Any, source: Any) -> None:
        # processing_block callback: turns the (depth, colour) pair in self._pair into one frameset.
        source.frame_ready(source.allocate_composite_frame(list(self._pair)))

    def _take(self, name: str, timeout_s: float) -> Stamped | object | None:
        """Next item of stream ``name``: a Stamped frame, _END at the end of the file, None on timeout."""
        target = self._queues[name]
        # A real (wall) wait on librealsense's threads, polled so that the end of the file is seen
        # at once instead of after the whole timeout.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return target.get(timeout=min(_POLL_S, max(timeout_s, 0.0)))
            except queue.Empty:
                pass
            if self._ended.is_set():
                try:  # the file has ended: give the stream a moment to hand over what it still holds
                    return target.get(timeout=_END_GRACE_S)
                except queue.Empty:
                    return _END
            if time.monotonic() >= deadline:
                return None

    def read(self, timeout_s: float) -> Frame | None:
        """The next aligned frame; None if playback did not deliver within ``timeout_s``; SourceExhausted at the end."""
        if self._playback is None or self._pairing is None:
            raise CameraError(f"bag source {self.path}: read() before start()")
        while True:
            if self._pending_color is None:
                if self._color_done:
                    raise SourceExhausted(f"bag source {self.path}: end of recording")
                item = self._take("color", timeout_s)
                if item is None:
                    return None
                if not isinstance(item, Stamped):  # _END
                    self._color_done = True
                    continue
                if not self._gate.admit(item.number):
                    continue
                self._pending_color = item
            color = self._pending_color
            while self._pairing.needs_depth(color.timestamp_ms):
                depth_item = self._take("depth", timeout_s)
                if depth_item is None:
                    return None  # keep the colour frame pending; the next read continues here
                self._pairing.push(depth_item if isinstance(depth_item, Stamped) else None)
            depth = self._pairing.choose(color.timestamp_ms)
            self._pending_color = None
            if depth is None:
                self.unpaired += 1
                continue
            return self._aligned(color, depth)

    def _aligned(self, color: Stamped, depth: Stamped) -> Frame:
        truth = {"source": "bag", "depth_frame_number": depth.number}
        if not self._needs_align:
            return frame_from_rs(color.frame, depth.frame, self._depth_scale, self.clock.now_ns(), truth)
        self._pair = (depth.frame, color.frame)
        self._composer.invoke(depth.frame)
        frameset = self._composed.wait_for_frame(5000).as_frameset()
        aligned = self._align.process(frameset)
        return frame_from_rs(
            aligned.get_color_frame(), aligned.get_depth_frame(), self._depth_scale, self.clock.now_ns(), truth
        )

    def stop(self) -> None:
        """Stop playback and release the file (bounded in time; safe to call twice)."""
        if self._playback is None:
            return
        self._stopping.set()
        sensors, self._sensors = self._sensors, []

        def halt() -> None:
            for sensor in sensors:
                sensor.stop()
                sensor.close()

        run_bounded(halt, self.stop_timeout_s, f"bag playback stop ({self.path.name})")
        self._playback = None
        self._composer = self._composed = self._align = None

    def info(self) -> SourceInfo:
        """Colour resolution and recorded frame rate (the replay itself is not paced)."""
        if self._info is None:
            self.start()
            self.stop()
        assert self._info is not None
        return self._info


def already_aligned(depth_profile: Any, color_profile: Any) -> bool:
    """True when the recorded depth already has the colour stream's geometry (same intrinsics, identity extrinsics).

    Then alignment is the identity, and rs.align would only punch rounding holes into the depth.
    """
    depth_intr = depth_profile.as_video_stream_profile().get_intrinsics()
    color_intr = color_profile.as_video_stream_profile().get_intrinsics()
    if intrinsics_from_rs(depth_intr) != intrinsics_from_rs(color_intr):
        return False
    extrinsics = depth_profile.get_extrinsics_to(color_profile)
    return bool(
        np.allclose(np.reshape(extrinsics.rotation, (3, 3)), np.eye(3), atol=1e-6)
        and np.allclose(extrinsics.translation, 0.0, atol=1e-6)
    )


@register_source("bag")
def open_bag(argument: str | None, clock: Clock | None = None, stop_timeout_s: float = 2.0) -> BagSource:
    """``bag:FILE`` -> BagSource (a ``.bag`` or ``.db3`` RealSense recording)."""
    if not argument:
        raise ConfigError("camera URI 'bag': expected bag:FILE (a RealSense .bag or .db3 recording)")
    path = Path(argument).expanduser()
    if path.suffix.lower() not in BAG_SUFFIXES:
        raise ConfigError(f"bag source {path}: expected a {' or '.join(BAG_SUFFIXES)} recording")
    if not path.is_file():
        raise DataError(f"bag source: {path} does not exist or is not a file")
    return BagSource(path, clock=clock, stop_timeout_s=stop_timeout_s)
