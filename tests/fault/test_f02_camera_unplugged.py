"""F2: the camera is unplugged mid-run and comes back after 3 s (FakeClock).

Pass: gate safe at once (well within stall_fault_ms); ERROR logged with the device serial; reconnect
attempts back off 0.1/0.2/0.4/0.8 s ... capped at backoff_max_s, each counted; after reconnect the
profile is re-verified, the supervisor returns to RUNNING and the heartbeat resumes; the run never exits early.
"""

from __future__ import annotations

import logging

import pytest

from edge_ad.supervisor import State, SupervisorConfig
from tests.helpers.faults import MS, FaultPlan, build_line, check_each_part_once, level_at


def test_f02_unplugged_camera_goes_safe_backs_off_capped_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    config = SupervisorConfig(stall_fault_ms=250, infer_timeout_ms=200, recover_after=5, backoff_max_s=1.0)
    line = build_line(FaultPlan().disconnect(60, 3.0), frames=150, supervisor=config)
    with caplog.at_level(logging.ERROR):
        summary = line.run()

    assert summary.stop_reason == "source_exhausted"  # never exited on the disconnect
    times = line.source.disconnect_times
    gaps = [(b - a) / MS for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:4] == pytest.approx([100, 200, 400, 800], abs=2)
    assert max(gaps) == pytest.approx(1000, abs=2) and all(g <= 1002 for g in gaps)  # capped
    sup = line.runtime.supervisor
    assert summary.drops["camera_error"] == len(times) == sup.counters["camera_disconnect"]
    assert sup.backoff.attempts == len(times)
    fault_at = next(t for t, state, _ in sup.transitions if state is State.FAULT)
    assert fault_at == times[0]  # safe on the first failed read, not after stall_fault_ms
    assert level_at(line.reject, fault_at) is True
    assert any("FP-0001" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    # Back: profile re-verified (same 8x8@30), through DEGRADED to RUNNING, heartbeat again.
    back = line.inspector.arrivals[60]
    states = [s for t, s, _ in sup.transitions if t >= back]
    assert states[:2] == [State.DEGRADED, State.RUNNING]
    assert any(t > back for t, _ in line.status("heartbeat").timeline)
    assert not [t for t, _ in line.status("heartbeat").timeline if fault_at <= t < back]
    check_each_part_once(summary, line.runtime)


def test_f02_a_different_profile_after_reconnect_stops_the_run_with_a_camera_error() -> None:
    from edge_ad.sources.base import SourceInfo

    line = build_line(FaultPlan().disconnect(30, 0.5), frames=90)
    original = line.source.info()
    line.source.actual_info = None
    wrong = SourceInfo("faultplan", 640, 480, 15.0)

    def swap_profile() -> None:
        if line.source.disconnect_raises and line.source.actual_info is None:
            line.source.actual_info = wrong

    line.harness.on_tick.append(swap_profile)
    summary = line.run()
    assert summary.stop_reason == "camera_error"
    assert "640x480@15" in summary.error and f"{original.width}x{original.height}@30" in summary.error
    check_each_part_once(summary, line.runtime)
