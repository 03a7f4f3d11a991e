"""F4: one 150 ms gap in the stream, then normal frames: a timeout is not fatal (dimos #3622 regression).

Pass: exactly one ``drops.timeout``; the loop continues; no FAULT; the supervisor is RUNNING again
after the gap (three gaps in a row make it DEGRADED, and N good frames bring it back).
"""

from __future__ import annotations

from edge_ad.supervisor import State
from tests.helpers.faults import FaultPlan, build_line, check_each_part_once


def test_f04_a_single_timeout_is_counted_once_and_the_loop_goes_on() -> None:
    line = build_line(FaultPlan().stall(30, 0.15), frames=90)
    summary = line.run()
    assert summary.drops["timeout"] == 1
    assert summary.stop_reason == "source_exhausted" and summary.frames_inspected == 90
    states = [s for _, s, _ in line.runtime.supervisor.transitions]
    assert State.FAULT not in states and states[:2] == [State.STARTING, State.RUNNING] or states[0] is State.RUNNING
    assert line.runtime.supervisor.counters["capture_timeout"] == 1
    check_each_part_once(summary, line.runtime)


def test_f04_timeouts_between_good_frames_are_not_consecutive_but_bad_frames_in_a_row_degrade() -> None:
    # Three late frames, each 120 ms: a timeout before each, but a good frame between them.
    line = build_line(FaultPlan().slow(30, 0.12).slow(31, 0.12).slow(32, 0.12), frames=90)
    summary = line.run()
    assert summary.drops["timeout"] == 3
    assert [s for _, s, _ in line.runtime.supervisor.transitions if s is not State.STOPPING] == [State.RUNNING]
    check_each_part_once(summary, line.runtime)
    # Three unusable frames in a row do degrade, and good frames bring it back.
    line = build_line(FaultPlan().depth_nan(30, count=3), frames=90)
    summary = line.run()
    states = [s for _, s, _ in line.runtime.supervisor.transitions]
    assert State.FAULT not in states
    degraded = states.index(State.DEGRADED)
    assert State.RUNNING in states[degraded:]
    check_each_part_once(summary, line.runtime, truth=False)  # unusable frames bridge / add a track
