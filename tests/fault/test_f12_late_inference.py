"""F12: late inference (a slow backend on every 10th call; encoder belt at max speed; FakeClock).

Pass: late parts get FAULT_REJECT at their gate position (the window still opens at the right encoder
count); deadline misses are counted; no result is ever applied to another part (slot by part id);
three consecutive misses -> DEGRADED.
"""

from __future__ import annotations

from edge_ad.line.reject import EncoderTiming
from edge_ad.supervisor import State, SupervisorConfig
from tests.helpers.faults import FakeEncoder, SlowBackend, build_line, check_each_part_once

MAX_SPEED = 3000.0  # counts per second
OFFSET = 600  # counts from a part's trigger to the gate: 200 ms at max speed


def _line(every: int, frames: int):  # type: ignore[no-untyped-def]
    from edge_ad.clock import FakeClock

    clock = FakeClock(start_ns=10**9)
    encoder = FakeEncoder(clock, [(3600.0, MAX_SPEED)])
    holder: dict = {}
    # The backend takes 1.5x the ~70 ms left between a part's decision and its deadline.
    backend = SlowBackend(delay_s=0.105, every=every, sleep=lambda s: holder["line"].harness.sleep(s))
    line = build_line(frames=frames, backend=backend, encoder=encoder, encoder_timing=EncoderTiming(OFFSET, 20),
                      clock=clock, supervisor=SupervisorConfig(infer_timeout_ms=5000, recover_after=5))
    holder["line"] = line
    return line, encoder, backend


def test_f12_late_parts_fault_reject_at_their_own_gate_position() -> None:
    line, encoder, backend = _line(every=10, frames=400)
    summary = line.run()
    late = [r for r in summary.part_records if r.reason == "deadline_miss"]
    assert backend.slow_calls and len(late) == len(backend.slow_calls)
    assert summary.pulses["deadline_misses"] == len(late) == line.runtime.supervisor.counters["deadline_miss"]
    # Every part whose inference was slow is the one faulted: call n scored part n-1 (one call per part).
    assert sorted(r.part_id for r in late) == [call - 1 for call in backend.slow_calls]
    # Each reject window opened at its slot's encoder count (trigger + offset - lead), within 1 count.
    for slot in line.runtime.scheduler.history:
        assert slot.raised_ns is not None
        assert 0 <= encoder.count_at(slot.raised_ns) - slot.due <= 1, slot
    assert line.runtime.scheduler.late_decisions == len(late)  # the late results were dropped, not applied
    check_each_part_once(summary, line.runtime)


def test_f12_three_consecutive_misses_degrade() -> None:
    line, _, _ = _line(every=1, frames=40)
    summary = line.run()
    assert summary.fault_rejected >= 3  # (the part flushed at the end is decided early, in time)
    states = [s for _, s, _ in line.runtime.supervisor.transitions]
    assert State.DEGRADED in states and State.FAULT not in states
    check_each_part_once(summary, line.runtime)
