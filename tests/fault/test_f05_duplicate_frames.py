"""F5: the same frame number delivered twice (librealsense #1686) is discarded and counted ``drops.duplicate``.

Pass: no second inspection, no second decision and no second reject window for the part; every part is
decided once and the gate carries the decision out.
"""

from __future__ import annotations

from collections import Counter

from tests.helpers.faults import FaultPlan, build_line, check_each_part_once


def test_f05_duplicates_are_dropped_counted_and_never_inspected_twice() -> None:
    # Delivery 3 and 4 show part 0; 9 shows part 1 (a defective one, so it has a reject window); 14 empty belt.
    line = build_line(FaultPlan().duplicate(3).duplicate(4).duplicate(9).duplicate(14), frames=60)
    summary = line.run()
    assert summary.drops["duplicate"] == 4
    assert summary.frames_captured == summary.frames_inspected == 60
    observed = Counter(line.inspector.observed)
    assert len(observed) == 60 and set(observed.values()) == {1}  # each frame number inspected once
    assert len(line.inspector.scored) == summary.parts == 10  # one inference per part
    windows = Counter(slot.part_id for slot in line.runtime.scheduler.history if slot.raised_ns is not None)
    assert set(windows.values()) <= {1}  # never a second reject window for one part
    assert summary.rejected == 5 and summary.fault_rejected == 0
    check_each_part_once(summary, line.runtime)


def test_f05_a_duplicate_is_not_a_timeout_or_a_gap() -> None:
    line = build_line(FaultPlan().duplicate(20), frames=30)
    summary = line.run()
    assert (summary.drops["duplicate"], summary.drops["gap"], summary.drops["timeout"]) == (1, 0, 0)
    check_each_part_once(summary, line.runtime)
