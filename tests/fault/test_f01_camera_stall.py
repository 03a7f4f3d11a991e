"""F1: the camera stalls for 2 s at frame 100 (FakeClock).

Pass: each read times out at capture_timeout (100 ms) and is counted; FAULT at stall_fault_ms (250 ms)
with the gate safe <= 270 ms after the last good frame; the part in view when the stall began is
FAULT_REJECT; the heartbeat stops toggling during the stall; no exception escapes; afterwards the
supervisor recovers through DEGRADED.
"""

from __future__ import annotations

from edge_ad.supervisor import State
from tests.helpers.faults import MS, FaultPlan, build_line, check_each_part_once, level_at


def test_f01_camera_stall_goes_safe_in_bound_and_faults_the_part_in_view() -> None:
    line = build_line(FaultPlan().stall(100, 2.0), frames=160)
    summary = line.run()

    assert summary.stop_reason == "source_exhausted" and summary.error is None
    assert summary.drops["timeout"] == 20  # 2 s of 100 ms reads, each counted
    sup = line.runtime.supervisor
    last_good = line.inspector.arrivals[99]
    fault_at = next(t for t, state, _ in sup.transitions if state is State.FAULT)
    assert 250 * MS <= fault_at - last_good <= 270 * MS
    # Gate safe (energize_to_reject: the reject line held on), fault on, ready off.
    assert level_at(line.reject, fault_at) is True
    assert level_at(line.status("fault"), fault_at) and not level_at(line.status("ready"), fault_at)
    assert level_at(line.status("line_stop"), fault_at)
    # The part in view (frames 98, 99, then the stall) missed its slot deadline: FAULT_REJECT.
    stalled = next(r for r in summary.part_records if r.first_frame <= 99 <= r.last_frame)
    assert (stalled.verdict, stalled.reason) == ("fault_reject", "deadline_miss")
    # No heartbeat edge from the fault until frames flow again; beats again afterwards.
    resumed = line.inspector.arrivals[100]
    beats = [t for t, _ in line.status("heartbeat").timeline]
    assert not [t for t in beats if fault_at <= t < resumed]
    assert any(t >= resumed for t in beats)
    states = [state for _, state, _ in sup.transitions]
    assert states[states.index(State.FAULT) + 1] is State.DEGRADED and State.RUNNING in states[states.index(State.FAULT):]
    check_each_part_once(summary, line.runtime)
