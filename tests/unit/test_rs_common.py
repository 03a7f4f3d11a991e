"""RealSense plumbing without a camera: profile and USB refusal, dedupe and gaps, backoff, bounded stop,
frame conversion, depth pairing, and the live source driven through a fake pyrealsense2."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.errors import CameraDisconnected, CameraError, ConfigError
from edge_ad.sources import open_source
from edge_ad.sources.realsense import RealSenseConfig, RealSenseSource
from edge_ad.sources.rs_common import (
    Backoff,
    DepthPairing,
    FrameNumberGate,
    Stamped,
    StreamMode,
    check_active_profile,
    check_usb_type,
    color_to_rgb,
    frame_from_rs,
    run_bounded,
)

W, H = 8, 6


# --- fakes with the pyrealsense2 methods the sources call ------------------------------------------


class Enum:
    def __init__(self, name: str) -> None:
        self.name = name


STREAM = SimpleNamespace(depth=Enum("depth"), color=Enum("color"))
FORMAT = SimpleNamespace(z16=Enum("z16"), rgb8=Enum("rgb8"), bgr8=Enum("bgr8"))


class Profile:
    def __init__(self, stream: str, width: int, height: int, fps: int, fmt: str, fx: float = 10.0) -> None:
        self._mode = (stream, width, height, fps, fmt)
        self._intr = SimpleNamespace(width=width, height=height, fx=fx, fy=fx + 1, ppx=width / 2, ppy=height / 2)

    def as_video_stream_profile(self) -> Profile:
        return self

    def stream_type(self) -> Enum:
        return Enum(self._mode[0])

    def width(self) -> int:
        return self._mode[1]

    def height(self) -> int:
        return self._mode[2]

    def fps(self) -> int:
        return self._mode[3]

    def format(self) -> Enum:
        return Enum(self._mode[4])

    def get_intrinsics(self) -> Any:
        return self._intr


class RsFrame:
    def __init__(self, data: np.ndarray, profile: Profile, number: int, timestamp: float = 0.0) -> None:
        self.data, self.profile, self.number, self.timestamp = data, profile, number, timestamp

    def __bool__(self) -> bool:
        return True

    def get_data(self) -> np.ndarray:
        return self.data

    def get_profile(self) -> Profile:
        return self.profile

    def get_frame_number(self) -> int:
        return self.number

    def get_timestamp(self) -> float:
        return self.timestamp


class Frameset:
    def __init__(self, number: int, raw_depth: int = 1500) -> None:
        self.depth = RsFrame(np.full((H, W), raw_depth, np.uint16), Profile("depth", W, H, 30, "z16"), number)
        color = np.zeros((H, W, 3), np.uint8)
        color[..., 0] = 200  # red in RGB
        self.color = RsFrame(color, Profile("color", W, H, 30, "rgb8"), number, 1000.0 * number / 30)

    def get_color_frame(self) -> RsFrame:
        return self.color

    def get_depth_frame(self) -> RsFrame:
        return self.depth

    def as_frameset(self) -> Frameset:
        return self


class FakePipeline:
    """Replays a script: a frame number gives a frameset, None a timeout, "raise" a RuntimeError."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.stopped = False

    def start(self, config: Any) -> Any:
        if self.world.start_failures > 0:
            self.world.start_failures -= 1
            raise RuntimeError("No device connected")
        self.world.starts += 1
        device = SimpleNamespace(
            supports=lambda info: True,
            get_info=lambda info: self.world.usb,
            first_depth_sensor=lambda: SimpleNamespace(get_depth_scale=lambda: 0.001),
        )
        return SimpleNamespace(get_streams=lambda: list(self.world.active), get_device=lambda: device)

    def try_wait_for_frames(self, timeout_ms: int) -> tuple[bool, Any]:
        step = self.world.script.pop(0) if self.world.script else None
        if step == "raise":
            raise RuntimeError("Frame didn't arrive / device disconnected")
        if step is None:
            return False, None
        return True, Frameset(step)

    def stop(self) -> None:
        if self.world.stop_hangs.is_set():
            self.world.release.wait(10)
        self.stopped = True


class FakeWorld:
    """A fake pyrealsense2 module and the state of its one camera."""

    def __init__(self, script: list[Any], usb: str = "3.2", active: list[Profile] | None = None) -> None:
        self.script = script
        self.usb = usb
        self.active = active or [Profile("depth", 640, 480, 30, "z16"), Profile("color", 640, 480, 30, "rgb8")]
        self.starts = 0
        self.start_failures = 0
        self.resets = 0
        self.stop_hangs = threading.Event()
        self.release = threading.Event()
        self.pipelines: list[FakePipeline] = []

    def module(self) -> Any:
        def pipeline() -> FakePipeline:
            self.pipelines.append(FakePipeline(self))
            return self.pipelines[-1]

        def reset() -> None:
            self.resets += 1

        device = SimpleNamespace(get_info=lambda info: "123", hardware_reset=reset)
        identity = SimpleNamespace(process=lambda frames: frames)
        return SimpleNamespace(
            stream=STREAM, format=FORMAT,
            camera_info=SimpleNamespace(usb_type_descriptor="usb", serial_number="serial"),
            config=lambda: SimpleNamespace(enable_device=lambda s: None, enable_stream=lambda *a: None),
            pipeline=pipeline, align=lambda stream: identity,
            context=lambda: SimpleNamespace(query_devices=lambda: [device]),
        )


def source(world: FakeWorld, clock: FakeClock, **config: Any) -> RealSenseSource:
    return RealSenseSource("123", RealSenseConfig(**config), clock=clock, rs=world.module())


# --- pure helpers ---------------------------------------------------------------------------------


def test_profile_mismatch_names_requested_and_actual() -> None:
    want = [StreamMode("depth", 848, 480, 30, "z16"), StreamMode("color", 640, 480, 30, "rgb8")]
    check_active_profile(want, list(want), "cam")  # exact match passes
    got = [StreamMode("depth", 640, 480, 15, "z16")]
    with pytest.raises(CameraError) as info:
        check_active_profile(want, got, "realsense:123")
    text = str(info.value)
    assert "realsense:123" in text
    assert "requested depth 848x480 z16 @ 30 fps, camera delivers depth 640x480 z16 @ 15 fps" in text
    assert "camera delivers no color stream" in text


@pytest.mark.parametrize(("actual", "required", "ok"), [("3.2", "3", True), ("3.0", "3.2", False), ("2.1", "3", False),
                                                         ("2.1", None, True), ("", "3", False)])
def test_usb_type_check(actual: str, required: str | None, ok: bool) -> None:
    if ok:
        check_usb_type(actual, required, "cam")
    else:
        with pytest.raises(CameraError, match=r"USB"):
            check_usb_type(actual, required, "cam")
    with pytest.raises(ConfigError):
        check_usb_type("3.2", "fast", "cam")


def test_gate_drops_duplicates_and_counts_gaps() -> None:
    gate = FrameNumberGate()
    admitted = [n for n in (5, 6, 6, 7, 10, 9, 11, 15) if gate.admit(n)]
    assert admitted == [5, 6, 7, 10, 11, 15]
    assert (gate.duplicates, gate.gaps, gate.missing) == (2, 2, 2 + 3)
    gate.reset()  # a reconnected camera counts from 0 again: not a duplicate
    assert gate.admit(0) and gate.duplicates == 2


def test_backoff_schedule_is_exponential_capped_and_resets() -> None:
    clock = FakeClock()
    backoff = Backoff(initial_s=0.5, max_s=3.0)
    waits = [backoff.failed(clock.now_ns()) for _ in range(6)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert not backoff.ready(clock.now_ns())
    clock.advance_ms(2999)
    assert not backoff.ready(clock.now_ns())
    clock.advance_ms(1)
    assert backoff.ready(clock.now_ns())
    backoff.succeeded()
    assert backoff.failed(clock.now_ns()) == 0.5
    with pytest.raises(ConfigError):
        Backoff(initial_s=2.0, max_s=1.0)


def test_run_bounded_returns_when_the_action_hangs() -> None:
    release = threading.Event()
    assert run_bounded(lambda: None, 1.0, "quick") is True
    start = time.monotonic()
    assert run_bounded(lambda: release.wait(10), 0.05, "hanging stop") is False
    assert time.monotonic() - start < 5.0  # generous: only proves it did not wait for the action
    release.set()

    def boom() -> None:
        raise RuntimeError("device lost")

    assert run_bounded(boom, 1.0, "failing stop") is True  # logged, not raised


def test_frame_from_rs_scales_depth_and_carries_colour_intrinsics() -> None:
    frames = Frameset(7, raw_depth=1234)
    frames.depth.data[0, 0] = 0
    frame = frame_from_rs(frames.color, frames.depth, 0.001, arrival_ns=99)
    assert frame.depth is not None and frame.depth.dtype == np.float32
    assert frame.depth[1, 1] == pytest.approx(1.234) and frame.depth[0, 0] == 0.0
    assert frame.intrinsics is not None and (frame.intrinsics.fx, frame.intrinsics.fy) == (10.0, 11.0)
    assert frame.frame_number == 7 and frame.arrival_ns == 99
    assert frame.device_timestamp_ms == pytest.approx(1000 * 7 / 30)
    assert tuple(frame.color[0, 0]) == (200, 0, 0)
    xyz = frame.xyz()
    assert xyz is not None and xyz[1, 1, 2] == pytest.approx(1.234)
    # Depth of another size is not aligned: refused.
    frames.depth.data = np.zeros((H + 1, W), np.uint16)
    with pytest.raises(CameraError, match="not aligned"):
        frame_from_rs(frames.color, frames.depth, 0.001, 0)


def test_bgr_colour_becomes_rgb() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255
    assert tuple(color_to_rgb(bgr, "bgr8")[0, 0]) == (0, 0, 255)
    with pytest.raises(CameraError, match="yuyv"):
        color_to_rgb(bgr, "yuyv")


def _pair_all(colors: list[float], depths: list[float], limit: float) -> list[float | None]:
    pairing = DepthPairing(max_offset_ms=limit)
    feed = iter(depths)
    out: list[float | None] = []
    for ts in colors:
        while pairing.needs_depth(ts):
            nxt = next(feed, None)
            pairing.push(None if nxt is None else Stamped(None, int(nxt), nxt))
        chosen = pairing.choose(ts)
        out.append(None if chosen is None else chosen.timestamp_ms)
    return out


def test_depth_pairing_takes_the_nearest_depth_in_time() -> None:
    # Same timestamps (our recordings), offset streams (the D435 bag: colour 100 ms before depth) and a gap.
    assert _pair_all([0, 33, 66], [0, 33, 66], 34) == [0, 33, 66]
    assert _pair_all([713.5], [815.1, 981.8], 167) == [815.1]
    assert _pair_all([0, 33, 66, 100], [0, 40, 200], 34) == [0, 40, 40, None]
    assert _pair_all([10], [], 34) == [None]


# --- the live source through a fake pyrealsense2 ---------------------------------------------------


def test_live_source_reads_aligned_frames_and_drops_duplicates() -> None:
    world = FakeWorld(script=[0, 1, 1, 1, 4, None])
    clock = FakeClock()
    cam = source(world, clock)
    with cam:
        numbers = [cam.read(0.1) for _ in range(3)]
        assert [f.frame_number for f in numbers if f is not None] == [0, 1, 4]
        assert cam.read(0.1) is None  # a timeout is reported, not waited out
    assert cam.counters["duplicates"] == 2 and cam.counters["missing"] == 2
    frame = numbers[0]
    assert frame is not None and frame.depth is not None and frame.depth[0, 0] == pytest.approx(1.5)
    assert world.pipelines[0].stopped


def test_refuses_to_start_on_wrong_profile_or_slow_usb() -> None:
    world = FakeWorld(script=[], active=[Profile("depth", 640, 480, 15, "z16"), Profile("color", 640, 480, 30, "rgb8")])
    with pytest.raises(CameraError, match=r"requested depth 640x480 z16 @ 30 fps, camera delivers depth 640x480 z16 @ 15 fps"):
        source(world, FakeClock()).start()
    assert world.pipelines[0].stopped  # the refused camera is released
    with pytest.raises(CameraError, match=r"USB 2.1"):
        source(FakeWorld(script=[], usb="2.1"), FakeClock()).start()
    source(FakeWorld(script=[], usb="2.1"), FakeClock(), min_usb=None).start()  # allowed when asked
    failing = FakeWorld(script=[])
    failing.start_failures = 1
    with pytest.raises(CameraError, match="cannot start streaming"):
        source(failing, FakeClock()).start()


def test_stall_disconnects_and_reconnects_on_capped_backoff_with_hardware_reset() -> None:
    world = FakeWorld(script=[0, None, None])
    clock = FakeClock()
    cam = source(world, clock, stall_s=1.0, backoff_initial_s=0.5, backoff_max_s=1.0)
    cam.start()
    assert cam.read(0.1) is not None
    assert cam.read(0.1) is None  # a short silence is only a timeout
    clock.advance_ms(1500)
    with pytest.raises(CameraDisconnected, match="no frame for 1.5 s"):
        cam.read(0.1)
    assert world.pipelines[0].stopped and cam.counters["stalls"] == 1
    # Not due yet: no attempt, no reset.
    with pytest.raises(CameraDisconnected, match="next reconnect attempt"):
        cam.read(0.1)
    assert world.starts == 1 and world.resets == 0
    # Due, but the camera is still gone: one attempt, a hardware reset, the next wait doubles (capped at 1 s).
    world.start_failures = 5
    clock.advance_ms(500)
    with pytest.raises(CameraDisconnected, match=r"reconnect failed .* next attempt in 1.0 s"):
        cam.read(0.1)
    assert world.resets == 1
    clock.advance_ms(999)
    with pytest.raises(CameraDisconnected, match="next reconnect attempt"):
        cam.read(0.1)
    assert world.resets == 1
    # Back: the next due attempt streams again and numbering restarts.
    world.start_failures = 0
    world.script = [0, 1]
    clock.advance_ms(1)
    frame = cam.read(0.1)
    assert frame is not None and frame.frame_number == 0
    assert cam.counters["reconnects"] == 1 and cam.counters["duplicates"] == 0
    cam.stop()


def test_runtime_error_while_streaming_is_a_disconnect() -> None:
    world = FakeWorld(script=["raise"])
    cam = source(world, FakeClock())
    cam.start()
    with pytest.raises(CameraDisconnected, match="streaming failed"):
        cam.read(0.1)
    cam.stop()
    cam.stop()  # idempotent


def test_stop_is_bounded_when_pipeline_stop_hangs() -> None:
    world = FakeWorld(script=[0])
    cam = source(world, FakeClock(), stop_timeout_s=0.05)
    cam.start()
    world.stop_hangs.set()
    start = time.monotonic()
    cam.stop()
    assert time.monotonic() - start < 5.0
    assert not world.pipelines[0].stopped  # still hanging in its daemon thread
    world.release.set()


def test_realsense_uri_and_options() -> None:
    world = FakeWorld(script=[])
    cam = open_source("realsense:123", fps=15, rs=world.module())
    assert isinstance(cam, RealSenseSource) and cam.serial == "123" and cam.config.fps == 15
    assert cam.info().name == "realsense:123"
    with pytest.raises(ConfigError, match="fps"):
        open_source("realsense", fps=12.5)
    with pytest.raises(ConfigError, match="color_format"):
        open_source("realsense", color_format="yuyv")
    with pytest.raises(ConfigError, match="decimation"):
        RealSenseConfig(decimation=0)
