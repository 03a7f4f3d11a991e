"""Reject slots: reserved at the trigger, FAULT_REJECT at the deadline, keyed by part id, both polarities,
the safe hold, and late decisions that never make a second pulse."""

from __future__ import annotations

import pytest

from edge_ad.clock import FakeClock
from edge_ad.decision import Decision, Verdict
from edge_ad.errors import ConfigError, EdgeAdError
from edge_ad.line.outputs import SimOutput
from edge_ad.line.reject import Polarity, RejectScheduler, RejectTiming

MS = 1_000_000
REJECT = Decision(Verdict.REJECT, "above_threshold", 2.0, 2.0)
ACCEPT = Decision(Verdict.ACCEPT, "at_or_below_threshold", 0.1, 0.1)


def make(polarity: Polarity = Polarity.ENERGIZE_TO_REJECT, lead_ms: float = 0.0):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    output = SimOutput(clock)
    timing = RejectTiming(delay_s=0.3, pulse_s=0.02, actuator_lead_s=lead_ms / 1000)
    return clock, output, RejectScheduler(output, clock, timing, polarity)


def run_to(clock: FakeClock, scheduler: RejectScheduler, end_ms: int) -> None:
    while clock.now_ns() < end_ms * MS:
        clock.advance_ms(1)
        scheduler.poll()


def test_a_reserved_part_without_a_decision_is_fault_rejected_at_its_deadline() -> None:
    clock, output, scheduler = make(lead_ms=30)
    scheduler.reserve(0, trigger=0)  # due at 300 - 30 = 270 ms
    run_to(clock, scheduler, 269)
    assert scheduler.slot_decision(0) is None and output.timeline == []
    run_to(clock, scheduler, 300)
    decision = scheduler.slot_decision(0)
    assert decision is not None and (decision.verdict, decision.reason) == (Verdict.FAULT_REJECT, "deadline_miss")
    assert output.pulses() == [(270 * MS, 290 * MS)] and scheduler.take_missed() == [0]
    # The result that arrives afterwards is counted and dropped; it never makes a second pulse.
    assert scheduler.decide(0, ACCEPT) is False and scheduler.late_decisions == 1
    run_to(clock, scheduler, 600)
    assert output.pulses() == [(270 * MS, 290 * MS)] and scheduler.deadline_misses == 1


def test_decisions_land_on_their_own_part_whatever_the_order() -> None:
    clock, output, scheduler = make()
    for part, trigger_ms in ((0, 0), (1, 50), (2, 100)):
        scheduler.reserve(part, trigger=trigger_ms * MS)
    clock.advance_ms(120)
    scheduler.decide(2, REJECT)  # the last part's result comes first
    scheduler.decide(0, ACCEPT)
    scheduler.decide(1, REJECT)
    run_to(clock, scheduler, 600)
    assert output.pulses() == [(350 * MS, 370 * MS), (400 * MS, 420 * MS)]
    assert [s.part_id for s in scheduler.history] == [2, 1]
    with pytest.raises(EdgeAdError, match="part 9, which has no slot"):
        scheduler.decide(9, REJECT)


def test_energize_to_accept_drives_on_only_for_parts_accepted_in_time() -> None:
    clock, output, scheduler = make(Polarity.ENERGIZE_TO_ACCEPT)
    scheduler.reserve(0, trigger=0)
    scheduler.reserve(1, trigger=100 * MS)
    scheduler.reserve(2, trigger=200 * MS)  # never decided: must not be energised
    clock.advance_ms(50)
    scheduler.decide(0, ACCEPT)
    scheduler.decide(1, REJECT)
    run_to(clock, scheduler, 800)
    assert output.pulses() == [(300 * MS, 320 * MS)]  # only part 0's window is ON
    assert scheduler.slot_decision(2).verdict is Verdict.FAULT_REJECT  # type: ignore[union-attr]
    assert (scheduler.scheduled, scheduler.fired) == (2, 2)  # part 1 and the faulted part 2


def test_a_safe_hold_forces_the_reject_level_in_both_polarities() -> None:
    for polarity, held_level in ((Polarity.ENERGIZE_TO_REJECT, True), (Polarity.ENERGIZE_TO_ACCEPT, False)):
        clock, output, scheduler = make(polarity)
        scheduler.reserve(0, trigger=0)
        scheduler.decide(0, ACCEPT)
        clock.advance_ms(290)
        scheduler.hold_safe("camera stalled")
        run_to(clock, scheduler, 400)
        assert output.level is held_level
        assert scheduler.forced_rejects == (1 if polarity is Polarity.ENERGIZE_TO_ACCEPT else 0)
        scheduler.release_safe()
        assert output.level is False


def test_timing_and_encoder_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="actuator_lead_s"):
        RejectTiming(delay_s=0.1, actuator_lead_s=0.2)
    with pytest.raises(ConfigError, match="encoder needs encoder timing"):
        RejectScheduler(SimOutput(), FakeClock(), encoder=object())  # type: ignore[arg-type]
