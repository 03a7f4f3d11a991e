"""F14: reject timing across belt speeds (FakeEncoder: min, nominal, max, stop-and-go, reverse jitter).

Pass: every window opens at trigger_count + offset_counts - actuator_lead_counts, within 1 count, and
lasts pulse_ms; several parts in flight (FIFO); no window opens while the belt is stopped; a stop longer
than max_hold_s applies the configured policy (fault: undecided parts FAULT_REJECT; hold: keep waiting).
"""

from __future__ import annotations

import pytest

from edge_ad.clock import FakeClock
from edge_ad.decision import Decision, Verdict
from edge_ad.line.outputs import SimOutput
from edge_ad.line.reject import EncoderTiming, RejectScheduler, RejectTiming
from tests.helpers.faults import MS, FakeEncoder

REJECT = Decision(Verdict.REJECT, "above_threshold", 2.0, 2.0)
OFFSET, LEAD, PULSE_MS = 500, 40, 10
PROFILES = {
    "min": [(60.0, 200.0)],
    "nominal": [(60.0, 1000.0)],
    "max": [(60.0, 4000.0)],
    "stop_and_go": [(0.3, 1000.0), (0.4, 0.0), (0.3, 1500.0), (0.5, 0.0), (60.0, 800.0)],
    "reverse_jitter": [(0.2, 1000.0), (0.01, -800.0), (0.2, 1000.0), (0.01, -800.0), (60.0, 1000.0)],
}


def _run(profile: list[tuple[float, float]], triggers_s: list[float], **timing: object):  # type: ignore[no-untyped-def]
    clock = FakeClock(start_ns=0)
    encoder = FakeEncoder(clock, profile)
    output = SimOutput(clock)
    enc_timing = EncoderTiming(OFFSET, LEAD, **timing)  # type: ignore[arg-type]
    scheduler = RejectScheduler(output, clock, RejectTiming(delay_s=0.0, pulse_s=PULSE_MS / 1000), encoder=encoder,
                                encoder_timing=enc_timing)
    pending = sorted((round(t * 1e9), i) for i, t in enumerate(triggers_s))
    decided: set[int] = set()
    while clock.now_ns() < 8_000 * MS:
        now = clock.now_ns()
        while pending and pending[0][0] <= now:
            _, part = pending.pop(0)
            scheduler.reserve(part)  # trigger = the encoder count now
        for part in list(scheduler_parts(scheduler)):
            if part not in decided:
                scheduler.decide(part, REJECT)  # decided well before its slot
                decided.add(part)
        scheduler.poll()
        clock.advance(100_000)  # 0.1 ms actuator tick
    return clock, encoder, output, scheduler


def scheduler_parts(scheduler: RejectScheduler) -> list[int]:
    return [part for part in range(scheduler.reserved) if scheduler.slot_decision(part) is None]


@pytest.mark.parametrize("name", list(PROFILES))
def test_f14_windows_open_at_the_count_and_last_pulse_ms(name: str) -> None:
    triggers = [0.05, 0.12, 0.2, 0.9, 1.0]  # several parts in flight between camera and gate
    _, encoder, output, scheduler = _run(PROFILES[name], triggers)
    slots = sorted(scheduler.history, key=lambda s: s.part_id)
    assert len(slots) == len(triggers) and scheduler.fired == len(triggers)
    for slot in slots:
        assert slot.raised_ns is not None
        assert 0 <= encoder.count_at(slot.raised_ns) - slot.due <= 1, (name, slot)
    assert [s.part_id for s in sorted(slots, key=lambda s: s.raised_ns or 0)] == sorted(s.part_id for s in slots)
    for rise, fall in output.pulses():
        assert fall is not None and (fall - rise) >= PULSE_MS * MS  # merged windows only get longer


def test_f14_no_window_opens_while_the_belt_is_stopped() -> None:
    # Belt runs 0.3 s (300 counts), stops 3 s, runs again: a slot due at 460 counts waits for the restart.
    _, encoder, output, scheduler = _run([(0.3, 1000.0), (3.0, 0.0), (60.0, 1000.0)], [0.0], max_hold_s=5.0)
    (rise, _fall), = output.pulses()
    assert rise >= 3_300 * MS and 0 <= encoder.count_at(rise) - (OFFSET - LEAD) <= 1
    assert not scheduler.belt_stop_exceeded


@pytest.mark.parametrize("policy", ["fault", "hold"])
def test_f14_a_stop_longer_than_max_hold_applies_the_policy(policy: str) -> None:
    clock = FakeClock()
    encoder = FakeEncoder(clock, [(0.1, 1000.0), (60.0, 0.0)])
    scheduler = RejectScheduler(SimOutput(clock), clock, RejectTiming(0.0, 0.01), encoder=encoder,
                                encoder_timing=EncoderTiming(OFFSET, LEAD, max_hold_s=1.0, stop_policy=policy))
    scheduler.reserve(0)
    for _ in range(2000):  # 2 s of a stopped belt
        clock.advance_ms(1)
        scheduler.poll()
    assert scheduler.belt_stop_exceeded
    decision = scheduler.slot_decision(0)
    if policy == "fault":
        assert decision is not None and decision.verdict is Verdict.FAULT_REJECT and scheduler.take_missed() == [0]
    else:
        assert decision is None and scheduler.take_missed() == []
