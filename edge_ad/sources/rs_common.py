"""Shared pieces of the RealSense sources (live ``realsense`` and ``bag`` playback), camera-free.

Everything here works on objects that merely look like pyrealsense2's (duck typing: the methods
named below), so the profile checks, frame-number accounting, reconnect backoff, bounded stop and
frame conversion are unit-tested with small fakes. pyrealsense2 itself is never imported here.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version

from edge_ad.errors import CameraError, ConfigError
from edge_ad.frame import Frame, Intrinsics

log = logging.getLogger(__name__)

# Colour formats a Frame can be made of without a conversion library (RGB is the Frame's order).
COLOR_FORMATS = ("rgb8", "bgr8")


def enum_name(value: Any) -> str:
    """``rs.stream.depth`` -> "depth" (pybind11 enums have ``.name``; ``str`` gives "stream.depth")."""
    name = getattr(value, "name", None)
    return str(name if isinstance(name, str) else str(value).rsplit(".", 1)[-1]).lower()


@dataclass(frozen=True)
class StreamMode:
    """One video stream as requested or as delivered: ``stream`` "depth"/"color", size, rate, format."""

    stream: str
    width: int
    height: int
    fps: int
    format: str

    def __str__(self) -> str:
        return f"{self.stream} {self.width}x{self.height} {self.format} @ {self.fps} fps"


def stream_mode(profile: Any) -> StreamMode:
    """The StreamMode of an ``rs.video_stream_profile`` (or anything with the same methods)."""
    video = profile.as_video_stream_profile() if hasattr(profile, "as_video_stream_profile") else profile
    return StreamMode(
        enum_name(profile.stream_type()), int(video.width()), int(video.height()), int(profile.fps()),
        enum_name(profile.format()),
    )


def check_active_profile(requested: list[StreamMode], active: list[StreamMode], where: str) -> None:
    """Refuse to stream when the camera delivers anything but what was requested (CameraError naming both)."""
    by_stream = {mode.stream: mode for mode in active}
    problems = []
    for want in requested:
        got = by_stream.get(want.stream)
        if got is None:
            problems.append(f"{want.stream}: requested {want}, camera delivers no {want.stream} stream")
        elif got != want:
            problems.append(f"{want.stream}: requested {want}, camera delivers {got}")
    if problems:
        raise CameraError(f"{where}: active profile does not match the configuration: " + "; ".join(problems))


def check_usb_type(actual: str | None, required: str | None, where: str) -> None:
    """Refuse a camera on a slower USB link than ``required`` (e.g. "3"): USB 2 cannot carry RGB-D at rate."""
    if required is None:
        return
    try:
        need = Version(required)
    except InvalidVersion as exc:
        raise ConfigError(f"realsense min_usb: {required!r} is not a USB version such as '3' or '3.2'") from exc
    try:
        have = Version(actual) if actual else None
    except InvalidVersion:
        have = None
    if have is None:
        raise CameraError(f"{where}: USB type {actual!r} is unknown, required USB >= {required}")
    if have < need:
        raise CameraError(
            f"{where}: camera is on USB {actual}, required USB >= {required} "
            "(plug it into a USB 3 port with a USB 3 cable)"
        )


def intrinsics_from_rs(intr: Any) -> Intrinsics:
    """``rs.intrinsics`` (width, height, fx, fy, ppx, ppy) -> :class:`Intrinsics` (distortion ignored:
    D4xx colour streams are rectified or carry near-zero coefficients)."""
    return Intrinsics(int(intr.width), int(intr.height), float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy))


def depth_to_metres(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    """z16 depth units -> float32 metres; 0 (no measurement) stays 0."""
    if not (math.isfinite(depth_scale) and depth_scale > 0):
        raise CameraError(f"depth scale must be > 0 m per unit, got {depth_scale}")
    return np.asarray(raw, dtype=np.float32) * np.float32(depth_scale)


def color_to_rgb(data: np.ndarray, fmt: str) -> np.ndarray:
    """Colour pixels in ``fmt`` ("rgb8"/"bgr8") as a contiguous uint8 RGB copy."""
    pixels = np.asarray(data, dtype=np.uint8)
    if fmt == "bgr8":
        pixels = pixels[..., ::-1]
    elif fmt != "rgb8":
        raise CameraError(f"colour format {fmt!r} is not supported; use one of {', '.join(COLOR_FORMATS)}")
    return np.ascontiguousarray(pixels)


def frame_from_rs(
    color: Any, depth: Any, depth_scale: float, arrival_ns: int, truth: Mapping[str, Any] | None = None
) -> Frame:
    """An aligned pair of rs frames (depth already aligned to colour) -> :class:`Frame`.

    Pixel data is copied, so the rs frames can go back to librealsense's pool at once. The frame
    number and device timestamp are the colour frame's: the colour stream drives the Frame.
    """
    profile = color.get_profile()
    intrinsics = intrinsics_from_rs(profile.as_video_stream_profile().get_intrinsics())
    rgb = color_to_rgb(np.asanyarray(color.get_data()), enum_name(profile.format()))
    metres = depth_to_metres(np.asanyarray(depth.get_data()), depth_scale)
    if rgb.shape[:2] != metres.shape or rgb.shape[:2] != (intrinsics.height, intrinsics.width):
        raise CameraError(
            f"aligned depth {metres.shape} does not match colour {rgb.shape[:2]} "
            f"(intrinsics {intrinsics.width}x{intrinsics.height}): depth is not aligned to colour"
        )
    return Frame(
        rgb, metres, intrinsics, int(color.get_frame_number()), float(color.get_timestamp()), arrival_ns,
        dict(truth or {}),
    )


class FrameNumberGate:
    """Drops repeated frames and counts the ones the camera skipped, by frame number.

    A number not above the last admitted one is a duplicate (librealsense can hand the same frame
    out twice after a stall); a jump of more than one counts the missing frames as a gap.
    :meth:`reset` forgets the last number (a reconnected camera counts from 0 again).
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.duplicates = 0
        self.missing = 0
        self.gaps = 0

    def admit(self, number: int) -> bool:
        """True if frame ``number`` is new (counting any gap before it), False for a duplicate."""
        if self.last is not None:
            if number <= self.last:
                self.duplicates += 1
                return False
            if number > self.last + 1:
                self.gaps += 1
                self.missing += number - self.last - 1
        self.last = number
        return True

    def reset(self) -> None:
        """Start over (after a reconnect); the counters keep their totals."""
        self.last = None


class Backoff:
    """Capped exponential backoff on a monotonic clock: when the next reconnect attempt is due.

    After the k-th consecutive failure the next attempt waits ``min(initial_s * factor**(k-1), max_s)``;
    a success resets it.
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 8.0, factor: float = 2.0) -> None:
        if not (initial_s > 0 and max_s >= initial_s and factor >= 1):
            raise ConfigError(
                f"reconnect backoff: need 0 < initial_s <= max_s and factor >= 1, got {initial_s}, {max_s}, {factor}"
            )
        self.initial_s, self.max_s, self.factor = initial_s, max_s, factor
        self.failures = 0
        self.next_attempt_ns: int | None = None

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (0 -> no wait)."""
        if failures <= 0:
            return 0.0
        return min(self.initial_s * self.factor ** (failures - 1), self.max_s)

    def ready(self, now_ns: int) -> bool:
        """True when an attempt may be made now."""
        return self.next_attempt_ns is None or now_ns >= self.next_attempt_ns

    def failed(self, now_ns: int) -> float:
        """Record a failed attempt at ``now_ns``; returns the wait before the next one."""
        self.failures += 1
        wait = self.delay_s(self.failures)
        self.next_attempt_ns = now_ns + round(wait * 1e9)
        return wait

    def succeeded(self) -> None:
        """Record a success: the next failure starts from ``initial_s`` again."""
        self.failures = 0
        self.next_attempt_ns = None


def run_bounded(action: Callable[[], object], timeout_s: float, what: str) -> bool:
    """Run ``action`` in a daemon thread and wait at most ``timeout_s``; False if it is still running.

    ``pipeline.stop()`` can hang for good on a camera that vanished (librealsense #9184): the
    caller must get control back, and a stuck daemon thread cannot keep the process alive at exit.
    An exception inside ``action`` is logged and counts as finished.
    """
    done = threading.Event()

    def worker() -> None:
        try:
            action()
        except (RuntimeError, CameraError, OSError) as exc:  # librealsense raises RuntimeError
            log.warning("%s failed: %s", what, exc)
        finally:
            done.set()

    thread = threading.Thread(target=worker, name=f"edge-ad {what}", daemon=True)
    thread.start()
    if not done.wait(timeout_s):
        log.warning("%s did not return within %.1f s; left behind in a daemon thread", what, timeout_s)
        return False
    return True


@dataclass(frozen=True)
class Stamped:
    """A captured rs frame with the two numbers pairing needs (the frame itself is opaque here)."""

    frame: Any
    number: int
    timestamp_ms: float


class DepthPairing:
    """Pairs each colour frame with the depth frame nearest in device time, reading depth in order.

    Recordings hold two independent streams (frame numbers differ between them); the colour
    stream drives. Feed depth frames in order with :meth:`push` while :meth:`needs_depth` says so
    for the pending colour timestamp; then :meth:`choose` gives the nearest depth frame within
    ``max_offset_ms`` (None: no depth close enough, the colour frame has no partner).
    """

    def __init__(self, max_offset_ms: float) -> None:
        self.max_offset_ms = max_offset_ms
        self.before: Stamped | None = None  # latest depth at or before the colour time
        self.after: Stamped | None = None  # first depth after it
        self.depth_ended = False

    def needs_depth(self, color_ms: float) -> bool:
        """True while one more depth frame could change the choice for a colour frame at ``color_ms``."""
        self._shift(color_ms)
        return self.after is None and not self.depth_ended

    def push(self, depth: Stamped | None) -> None:
        """The next depth frame in stream order, or None at the end of the depth stream."""
        if depth is None:
            self.depth_ended = True
        elif self.after is None:
            self.after = depth
        else:
            raise ValueError("DepthPairing.push: a later depth frame is already pending; call needs_depth first")

    def choose(self, color_ms: float) -> Stamped | None:
        """The depth frame nearest to ``color_ms`` (ties go to the earlier one), if within the limit."""
        self._shift(color_ms)
        candidates = [d for d in (self.before, self.after) if d is not None]
        if not candidates:
            return None
        best = min(candidates, key=lambda d: abs(d.timestamp_ms - color_ms))
        return best if abs(best.timestamp_ms - color_ms) <= self.max_offset_ms else None

    def _shift(self, color_ms: float) -> None:
        # A pending depth frame at or before the colour time becomes the new "before".
        if self.after is not None and self.after.timestamp_ms <= color_ms:
            self.before, self.after = self.after, None
