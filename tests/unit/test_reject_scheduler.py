"""Reject scheduling on a fake clock: pulse at capture + delay, several parts in flight, order, lateness."""

from __future__ import annotations

import pytest

from edge_ad.clock import FakeClock
from edge_ad.decision import Decision, FaultReason, Verdict, fault
from edge_ad.errors import ConfigError
from edge_ad.line.outputs import DigitalOutput, SimOutput, known_outputs, open_output
from edge_ad.line.reject import RejectScheduler, RejectTiming

MS = 1_000_000
REJECT = Decision(Verdict.REJECT, "above_threshold", 2.0, 2.0)
ACCEPT = Decision(Verdict.ACCEPT, "at_or_below_threshold", 0.1, 0.1)


def make(delay_ms: float = 500, pulse_ms: float = 50) -> tuple[FakeClock, SimOutput, RejectScheduler]:
    clock = FakeClock()
    output = SimOutput(clock)
    return clock, output, RejectScheduler(output, clock, RejectTiming(delay_ms / 1000, pulse_ms / 1000))


def run_until(clock: FakeClock, scheduler: RejectScheduler, end_ms: int, step_ms: int = 1) -> None:
    """Poll every ``step_ms`` up to ``end_ms`` (what the actuator thread does)."""
    while clock.now_ns() < end_ms * MS:
        clock.advance_ms(step_ms)
        scheduler.poll()


def test_pulse_rises_at_capture_plus_delay_and_lasts_its_width() -> None:
    clock, output, scheduler = make(delay_ms=500, pulse_ms=50)
    clock.advance_ms(1200)  # decided 200 ms after capture: the result time must not matter
    pulse = scheduler.schedule(part_id=0, capture_ns=1000 * MS, decision=REJECT)
    assert pulse is not None and pulse.rise_ns == 1500 * MS
    clock.advance_ms(299)
    assert scheduler.poll() is False and output.timeline == []
    clock.advance_ms(1)
    assert scheduler.poll() is True
    clock.advance_ms(49)
    assert scheduler.poll() is True
    clock.advance_ms(1)
    assert scheduler.poll() is False
    assert output.timeline == [(1500 * MS, True), (1550 * MS, False)]
    assert (scheduler.scheduled, scheduler.fired, scheduler.late, scheduler.pending) == (1, 1, 0, 0)


def test_accept_schedules_nothing_and_fault_reject_pulses() -> None:
    clock, output, scheduler = make()
    assert scheduler.schedule(0, 0, ACCEPT) is None
    faulted = scheduler.schedule(1, 100 * MS, fault(FaultReason.INVALID_DEPTH))
    assert faulted is not None and faulted.verdict is Verdict.FAULT_REJECT
    run_until(clock, scheduler, 1000)
    assert output.pulses() == [(600 * MS, 650 * MS)]


def test_several_parts_in_flight_fire_in_capture_order() -> None:
    clock, output, scheduler = make(delay_ms=500, pulse_ms=40)
    clock.advance_ms(350)
    # All three decided before the first reaches the actuator; the middle one decided last.
    scheduler.schedule(0, 0, REJECT)
    scheduler.schedule(2, 200 * MS, fault(FaultReason.PLANE_FIT))
    scheduler.schedule(1, 100 * MS, REJECT)
    assert scheduler.pending == 3 and scheduler.next_edge_ns() == 500 * MS
    run_until(clock, scheduler, 1000)
    assert output.pulses() == [(500 * MS, 540 * MS), (600 * MS, 640 * MS), (700 * MS, 740 * MS)]
    assert [p.part_id for p in sorted(scheduler.history, key=lambda p: p.raised_ns or 0)] == [0, 1, 2]
    assert scheduler.fired == 3 and scheduler.late == 0


def test_overlapping_pulses_merge_on_the_output() -> None:
    clock, output, scheduler = make(delay_ms=100, pulse_ms=50)
    scheduler.schedule(0, 0, REJECT)
    scheduler.schedule(1, 30 * MS, REJECT)
    run_until(clock, scheduler, 300)
    assert output.pulses() == [(100 * MS, 180 * MS)]
    assert scheduler.fired == 2


def test_a_late_decision_still_fires_a_full_pulse_and_is_counted() -> None:
    clock, output, scheduler = make(delay_ms=100, pulse_ms=50)
    clock.advance_ms(170)  # the part passed the actuator's due time 70 ms ago
    scheduler.schedule(0, 0, REJECT)
    scheduler.poll()
    clock.advance_ms(50)
    scheduler.poll()
    assert output.pulses() == [(170 * MS, 220 * MS)]
    assert scheduler.late == 1 and scheduler.max_late_ns == 70 * MS


def test_timing_is_validated() -> None:
    with pytest.raises(ConfigError, match="delay_s"):
        RejectTiming(delay_s=-0.1)
    with pytest.raises(ConfigError, match="pulse_s"):
        RejectTiming(pulse_s=0.0)


def test_sim_output_returns_to_safe_level_on_close_and_stays_there() -> None:
    clock = FakeClock(start_ns=10)
    output = open_output("sim", clock=clock)
    assert isinstance(output, SimOutput) and isinstance(output, DigitalOutput)
    output.set(True, 10)
    output.set(True, 11)  # no edge: already high
    clock.advance(90)
    output.close()
    output.set(True, 200)
    assert output.timeline == [(10, True), (100, False)] and output.level is False
    assert output.ignored_after_close == 1


def test_unknown_output_lists_the_known_ones() -> None:
    assert "sim" in known_outputs()
    with pytest.raises(ConfigError, match="unknown output.*sim"):
        open_output("relay-board", clock=FakeClock())


def test_jitter_within_the_tolerance_is_not_late() -> None:
    clock = FakeClock()
    output = SimOutput(clock)
    scheduler = RejectScheduler(output, clock, RejectTiming(delay_s=0.1, pulse_s=0.05, late_tolerance_s=0.002))
    scheduler.schedule(0, 0, REJECT)
    scheduler.schedule(1, 200 * MS, REJECT)
    clock.advance_ms(101)  # polled 1 ms after the first pulse was due
    scheduler.poll()
    clock.advance_ms(202)  # and 3 ms after the second was due
    scheduler.poll()
    assert scheduler.late == 1 and scheduler.max_late_ns == 3 * MS
