"""F24: overload soak on a FakeClock: the synthetic line at 60 fps into an inspector with a 30 fps budget,
for 10**5 frames (the wall-clock version is ``tests/benchmarks/soak.py``).

The runtime's own capture step, bounded drop-oldest queue, tracker, slots and supervisor run single-
threaded: capture reads every frame as the camera delivers it; the inspector, busy for one 33 ms budget per
frame, takes the newest queued frame whenever it is free. Pure logic (a stub renderer), so it runs in seconds.

Pass: the queue stays at <= 2 and the excess is counted ``drops.queue_full``; the latency of inspected
frames stays under the deadline; every part gets exactly one decision (zero lost, split or invented) and
the gate carries every reject out; RSS and open file descriptors stay flat.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.frame import Frame
from edge_ad.line.outputs import SimOutput
from edge_ad.line.reject import RejectTiming
from edge_ad.monitor import Monitor
from edge_ad.part_tracker import TrackerConfig
from edge_ad.runtime import InspectionRuntime, RuntimeConfig
from edge_ad.sources import open_source
from edge_ad.supervisor import SupervisorConfig
from tests.helpers.fault_frames import open_fds, rss_bytes
from tests.helpers.faults import BackendInspector, check_each_part_once

pytestmark = pytest.mark.slow

FRAMES = 100_000
CAMERA_FPS = 60.0
BUDGET_NS = round(1e9 / 30.0)  # one inspection per 30 fps frame period
DEADLINE_NS = 100_000_000  # capture -> inspected, for a frame that is inspected at all
SIZE = 32


def stub_renderer() -> Any:
    """The synthetic line's renderer interface, returning cached arrays (the part fills the view while near)."""
    empty = SimpleNamespace(rgb=np.zeros((SIZE, SIZE, 3), np.uint8), xyz=np.full((SIZE, SIZE, 3), 0.5, np.float32),
                            object_mask=np.zeros((SIZE, SIZE), bool), intrinsics=None)
    part = SimpleNamespace(rgb=empty.rgb, xyz=empty.xyz, object_mask=np.ones((SIZE, SIZE), bool), intrinsics=None)

    def render(seed: int, config: Any, part_xy_m: Any = None, **_: Any) -> Any:
        return empty if part_xy_m is None else part

    return render


class BudgetInspector(BackendInspector):
    """The fault harness's truth-driven inspector, plus the capture -> pick-up latency of every frame."""

    def __init__(self, clock: FakeClock, monitor: Monitor) -> None:
        super().__init__()
        self.clock, self.monitor = clock, monitor
        self.latency_ns: list[int] = []

    def observe(self, frame: Frame) -> Any:
        # The result is ready one budget after the pick-up.
        self.latency_ns.append(self.clock.now_ns() + BUDGET_NS - frame.arrival_ns)
        observation = super().observe(frame)
        self.monitor.on_frame(frame, observation)
        return observation


def test_f24_overload_soak_on_a_fake_clock() -> None:
    clock = FakeClock(start_ns=10**9)
    monitor = Monitor(clock=clock)
    runtime_box: list[InspectionRuntime] = []

    def sleep(seconds: float) -> None:
        clock.advance(max(0, round(seconds * 1e9)))
        if runtime_box:
            runtime_box[0].actuate_once()

    source = open_source("synthetic:4", fps=CAMERA_FPS, speed_mps=0.15, width=SIZE, height=SIZE, realtime=True,
                         renderer=stub_renderer(), clock=clock, sleep=sleep)
    # Part looks (shape, texture) are only read by the renderer, which is stubbed: skip drawing them.
    source._sample_part = lambda *args: None  # type: ignore[attr-defined]
    passage_s = source.frames_per_part / CAMERA_FPS  # type: ignore[attr-defined]
    config = RuntimeConfig(
        queue_size=2, lossless=False, supervise=True, read_timeout_s=0.1,
        tracker=TrackerConfig(enter_frames=2, leave_frames=2, max_frames_per_part=10_000),
        reject=RejectTiming(delay_s=passage_s + 0.5, pulse_s=0.02),
        supervisor=SupervisorConfig(stall_fault_ms=250, infer_timeout_ms=5_000),
    )
    inspector = BudgetInspector(clock, monitor)
    source.start()
    runtime = InspectionRuntime(source, inspector, SimOutput(clock), config, clock, sleep=sleep)
    runtime_box.append(runtime)
    fds, free_at, max_queue, rss_early = open_fds(), 0, 0, 0
    captured = 0
    while captured < FRAMES:
        assert runtime.capture.step()
        captured += 1
        max_queue = max(max_queue, len(runtime.queue))
        if clock.now_ns() >= free_at and len(runtime.queue):
            assert runtime.inspect_once(0.0) is None
            free_at = clock.now_ns() + BUDGET_NS
        if captured == FRAMES // 5:
            rss_early = rss_bytes()
    summary = runtime.finish("max_frames")
    rss_growth = rss_bytes() - rss_early

    assert summary.frames_captured == FRAMES and max_queue <= 2
    assert summary.drops["queue_full"] + summary.frames_inspected + summary.drops["stopped"] == FRAMES
    assert summary.drops["queue_full"] >= 0.45 * FRAMES  # twice the budget: about half the frames never inspected
    assert (summary.drops["gap"], summary.drops["timeout"]) == (0, 0)  # lost frames are queue drops, not camera loss
    latency = np.asarray(inspector.latency_ns)
    assert np.percentile(latency, 99) < DEADLINE_NS and latency.max() < DEADLINE_NS
    # Zero lost parts: every real part decided once, by the gate, within its deadline.
    assert summary.parts > 300 and summary.truth is not None and summary.truth.missed_parts == 0
    assert summary.pulses["deadline_misses"] == 0 and summary.fault_rejected == 0
    check_each_part_once(summary, runtime)
    assert monitor.metrics.frames.value() == summary.frames_inspected
    # Flat resources: no descriptor leak; memory growth over the last 80 % is the recorder's per-frame samples only.
    assert open_fds() == fds
    assert rss_growth < 16 * 1024 * 1024, f"RSS grew by {rss_growth / 1e6:.1f} MB"
