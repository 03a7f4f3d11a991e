"""F6: skipped frame numbers are counted ``drops.gap`` (by how many); a counter rollover at 2**32 is not a drop.

Pass: ``drops.gap`` == the numbers skipped; a part seen across the gap is decided once; after a rollover
nothing is counted lost, duplicates are still caught, and every part is decided once. With a trigger
input (light barrier), a part whose trigger fell in the gap gets FAULT_REJECT, parts seen on either
side keep their real decisions, and every trigger gets exactly one decision.
"""

from __future__ import annotations

from tests.helpers.faults import (
    MS,
    ROLLOVER,
    FaultPlan,
    build_line,
    build_triggered_line,
    check_each_part_once,
    check_each_trigger_once,
)


def test_f06_a_gap_of_three_numbers_is_counted_three_times() -> None:
    line = build_line(FaultPlan().gap(9, skip=3), frames=60)  # inside part 1 (deliveries 8-11)
    summary = line.run()
    assert summary.drops["gap"] == 3
    assert (summary.drops["duplicate"], summary.drops["timeout"]) == (0, 0)
    assert summary.frames_inspected == 60 and summary.parts == 10
    check_each_part_once(summary, line.runtime)


def test_f06_rollover_is_not_a_drop_and_duplicates_after_it_are_still_caught() -> None:
    line = build_line(FaultPlan().duplicate(21), frames=60)
    # A real counter counts up to 2**32 - 1 and wraps to 0 (FaultPlan.rollover jumps there from any number,
    # which is a genuine 4-billion-frame gap, so the wrap is set up by starting the counter just below it).
    line.source.number = ROLLOVER - 20
    summary = line.run()
    numbers = line.inspector.observed
    wrap = numbers.index(ROLLOVER - 1)
    assert numbers[wrap - 1 : wrap + 2] == [ROLLOVER - 2, ROLLOVER - 1, 0]  # the counter wrapped
    assert (summary.drops["gap"], summary.drops["duplicate"]) == (0, 1)
    assert summary.frames_inspected == 60
    check_each_part_once(summary, line.runtime)


def test_f06_a_part_whose_trigger_fell_in_the_gap_is_fault_rejected() -> None:
    # Parts are 3 frames long after 3 empty ones; the camera loses line frames 15-17, all of part 2,
    # while the light barrier (20 ms before the view) still announces every part.
    line, barrier = build_triggered_line(frames=60, lost=(15, 3))
    summary = line.run()
    assert summary.drops["gap"] == 3
    records = check_each_trigger_once(summary, line.runtime, barrier)
    assert barrier.parts == list(range(10))  # ten parts passed the barrier, so ten triggers
    lost = records[2]
    assert (lost.verdict, lost.reason, lost.exit_reason, lost.frames) == ("fault_reject", "no_frame", "unseen_trigger", 0)
    # Parts seen on either side of the gap keep their real decisions (odd parts are defective).
    for trigger_id, record in records.items():
        if trigger_id != 2:
            assert record.verdict == ("reject" if trigger_id % 2 else "accept"), record
            assert record.frames == 3 and record.truth_part_id == trigger_id
    assert summary.pulses["unseen_trigger"] == 1 and summary.pulses["phantom_part"] == 0
    # The gate carried it out: part 2's window is due at its trigger + the reject delay and opened then
    # (within the 1 ms actuator tick).
    slot = next(s for s in line.runtime.scheduler.history if s.part_id == 2)
    assert slot.due == barrier.times[2] + 500 * MS
    assert slot.raised_ns is not None and 0 <= slot.raised_ns - slot.due < MS


def test_f06_a_gap_over_the_first_frames_of_a_part_keeps_its_real_decision() -> None:
    # The camera loses the first two frames of part 3 (line frames 21-22): it sees the part 87 ms after
    # its trigger, inside the 100 ms window, so the part is decided on what was seen.
    line, barrier = build_triggered_line(frames=60, lost=(21, 2))
    summary = line.run()
    assert summary.drops["gap"] == 2
    records = check_each_trigger_once(summary, line.runtime, barrier)
    assert (records[3].verdict, records[3].frames, records[3].truth_part_id) == ("reject", 1, 3)
    assert summary.fault_rejected == 0 and summary.pulses["unseen_trigger"] == 0


def test_f06_triggers_across_a_counter_rollover_each_get_one_decision() -> None:
    line, barrier = build_triggered_line(frames=60, lost=(27, 3))  # part 4 lost, right after the wrap
    line.source.number = ROLLOVER - 25  # the counter wraps at delivery 25
    summary = line.run()
    assert summary.drops["gap"] == 3 and summary.drops["duplicate"] == 0
    records = check_each_trigger_once(summary, line.runtime, barrier)
    assert [t for t, r in records.items() if r.verdict == "fault_reject"] == [4]
