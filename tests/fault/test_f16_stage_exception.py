"""F16: an unhandled exception in a stage (the backend raises a RuntimeError on one call, then on many).

Pass: caught at the stage boundary (specific exception families), the part is FAULT_REJECT
(inference_error); the stack trace is logged once with the frame id; the loop goes on; more than 5
errors in 10 s trip the error-rate breaker -> FAULT (gate safe), which clears once the rate falls.
"""

from __future__ import annotations

import logging

import pytest

from edge_ad.supervisor import State
from tests.helpers.faults import RaisingBackend, build_line, check_each_part_once, level_at


def test_f16_one_exception_faults_one_part_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    backend = RaisingBackend(on={5})
    line = build_line(frames=90, backend=backend)
    with caplog.at_level(logging.ERROR):
        summary = line.run()
    failed = [r for r in summary.part_records if r.verdict == "fault_reject"]
    assert [(r.part_id, r.reason) for r in failed] == [(4, "inference_error")]
    assert summary.stop_reason == "source_exhausted" and summary.parts == 15
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1 and f"frame {failed[0].scored_frame}" in logged[0].getMessage()
    assert State.FAULT not in [s for _, s, _ in line.runtime.supervisor.transitions]
    check_each_part_once(summary, line.runtime)


def test_f16_more_than_five_errors_in_ten_seconds_trip_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    backend = RaisingBackend(on=lambda call: 3 <= call <= 9)  # seven failures in a row, ~1.4 s
    line = build_line(frames=60 * 30 // 2, backend=backend)  # 15 s of line
    with caplog.at_level(logging.ERROR):
        summary = line.run()
    sup = line.runtime.supervisor
    fault_at = next(t for t, s, _ in sup.transitions if s is State.FAULT)
    sixth = sorted(r.decided_ns for r in summary.part_records if r.reason == "inference_error")[5]
    assert fault_at == sixth and "errors" in sup.transitions[[t for t, _, _ in sup.transitions].index(fault_at)][2]
    assert level_at(line.reject, fault_at) is True
    assert len([r for r in caplog.records if r.exc_info is not None]) == 1  # traceback once, then counted
    assert sup.counters["error:inference:RuntimeError"] == 7
    cleared = next(t for t, s, _ in sup.transitions if t > fault_at and s is not State.FAULT)
    assert cleared - fault_at <= 10 * 10**9  # the breaker window passed
    check_each_part_once(summary, line.runtime)
