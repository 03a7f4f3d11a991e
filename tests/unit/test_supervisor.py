"""The supervisor state machine, backoff, error-rate breaker, heartbeat and the inference watchdog."""

from __future__ import annotations

import threading

import pytest

from edge_ad.clock import FakeClock
from edge_ad.errors import ConfigError
from edge_ad.line.heartbeat import StatusLines
from edge_ad.line.outputs import SimOutput
from edge_ad.supervisor import Backoff, ErrorRateBreaker, State, Supervisor, SupervisorConfig
from edge_ad.watchdog import InferenceTimeout, InferenceWatchdog

MS = 1_000_000


class Gate:
    def __init__(self) -> None:
        self.held: list[str | None] = []

    def hold_safe(self, reason: str) -> None:
        self.held.append(reason)

    def release_safe(self) -> None:
        self.held.append(None)


def make(**config: object) -> tuple[FakeClock, Supervisor, Gate, dict[str, SimOutput]]:
    clock = FakeClock()
    outputs = {role: SimOutput(clock) for role in ("ready", "fault", "heartbeat")}
    gate = Gate()
    base = {"recover_after": 3} | config
    sup = Supervisor(clock, SupervisorConfig(**base), gate=gate, status=StatusLines(clock, outputs, 0.05))  # type: ignore[arg-type]
    sup.mark_verified("bundle")
    sup.mark_verified("camera")
    return clock, sup, gate, outputs


def test_starting_holds_the_gate_until_the_first_good_frame() -> None:
    clock, sup, gate, outputs = make()
    assert sup.state is State.STARTING and gate.held == ["starting"]
    sup.frame_arrived()
    sup.healthy()
    assert sup.state is State.RUNNING and gate.held[-1] is None and outputs["ready"].level is True


def test_stall_faults_then_frames_recover_through_degraded() -> None:
    clock, sup, gate, outputs = make(stall_fault_ms=250)
    sup.frame_arrived()
    sup.healthy()
    clock.advance_ms(249)
    sup.tick()
    assert sup.state is State.RUNNING
    clock.advance_ms(1)
    sup.tick()
    assert sup.state is State.FAULT and gate.held[-1].startswith("FAULT: camera")  # type: ignore[union-attr]
    assert outputs["fault"].level is True and outputs["ready"].level is False
    toggles = outputs["heartbeat"].timeline[:]
    clock.advance_ms(100)
    sup.healthy()  # no beat in FAULT
    assert outputs["heartbeat"].timeline == toggles
    sup.frame_arrived()
    assert sup.state is State.DEGRADED
    for _ in range(3):
        clock.advance_ms(33)
        sup.healthy()
    assert sup.state is State.RUNNING


def test_three_bad_frames_degrade_and_misses_count_per_part() -> None:
    clock, sup, _, _ = make()
    sup.healthy()
    for _ in range(3):
        sup.invalid_frame("invalid_depth")
    assert sup.state is State.DEGRADED
    for _ in range(3):
        sup.healthy()
    assert sup.state is State.RUNNING
    sup.deadline_miss(1)
    sup.deadline_miss(2)
    sup.healthy()  # a good frame does not end a run of late parts ...
    sup.part_on_time()  # ... a part decided in time does
    sup.deadline_miss(3)
    sup.deadline_miss(4)
    assert sup.state is State.RUNNING
    sup.deadline_miss(5)
    assert sup.state is State.DEGRADED


def test_error_breaker_and_inference_hang_fault_and_clear() -> None:
    clock, sup, _, _ = make(error_limit=5, error_window_s=10.0)
    sup.healthy()
    for _ in range(5):
        sup.stage_error("inference", RuntimeError("x"))
        clock.advance_ms(100)
    assert sup.state is State.RUNNING
    sup.stage_error("inference", RuntimeError("x"))
    assert sup.state is State.FAULT and "errors" in sup.causes
    clock.advance_ms(10_000)
    sup.frame_arrived()  # the camera is fine: only the error rate matters here
    sup.tick()
    assert sup.state is State.DEGRADED
    sup.inference_hung("no answer in 200 ms")
    assert sup.state is State.FAULT and "inference" in sup.causes
    sup.inference_ok()
    assert sup.state is State.DEGRADED


def test_backoff_and_breaker() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.1 and backoff.attempts == 7
    breaker = ErrorRateBreaker(2, 1.0)
    assert [breaker.record(t * 400 * MS) for t in range(4)] == [False, False, True, True]
    assert breaker.over(3 * 400 * MS + 1001 * MS) is False
    with pytest.raises(ConfigError, match="backoff_max_s"):
        SupervisorConfig(backoff_initial_s=1.0, backoff_max_s=0.5)


def test_inference_watchdog_abandons_a_hung_call_and_serves_the_next_on_a_new_worker() -> None:
    release = threading.Event()
    watchdog = InferenceWatchdog(0.05)
    assert watchdog.call(lambda x: x + 1, 1) == 2
    with pytest.raises(InferenceTimeout, match="50 ms"):
        watchdog.call(release.wait)
    assert watchdog.call(lambda: "fresh") == "fresh" and watchdog.workers_started == 2
    with pytest.raises(ZeroDivisionError):
        watchdog.call(lambda: 1 / 0)  # the worker's exception reaches the caller unchanged
    release.set()
    watchdog.close()
