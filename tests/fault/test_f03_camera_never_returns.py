"""F3: the camera disconnects and never comes back within 10 minutes (FakeClock).

Pass: backoff stays capped; status ``FAULT: camera`` over systemd STATUS=; the line-stop output is
asserted; memory and file handles stay flat (traced allocations grow < 5 MB, open fds constant).
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from edge_ad.supervisor import State, SupervisorConfig
from edge_ad.systemd import SystemdNotifier
from tests.helpers.faults import MS, FaultPlan, NotifySocketListener, build_line, level_at

pytestmark = pytest.mark.slow


def test_f03_camera_gone_for_ten_minutes_stays_safe_capped_and_flat(tmp_path: Path) -> None:
    line_config = SupervisorConfig(stall_fault_ms=250, infer_timeout_ms=200, backoff_max_s=2.0)
    address = str(tmp_path / "notify.sock")
    notifier = SystemdNotifier(address, watchdog_usec=None)
    line = build_line(FaultPlan().disconnect(20, 600.0), frames=30, supervisor=line_config,
                      notifier=notifier, tick_ms=20.0)
    listener = NotifySocketListener(address, line.clock)
    line.harness.on_tick.append(listener.poll)
    fds: list[int] = []
    traced: list[int] = []

    def sample() -> None:
        # Sample once a minute of fake time while the camera is gone.
        if line.source.disconnect_raises and len(fds) < (line.clock.now_ns() - line.source.disconnect_times[0]) // (60_000 * MS):
            fds.append(len(os.listdir("/proc/self/fd")))
            traced.append(tracemalloc.get_traced_memory()[0])

    line.harness.on_tick.append(sample)
    tracemalloc.start()
    try:
        summary = line.run()
    finally:
        tracemalloc.stop()
        listener.close()

    times = line.source.disconnect_times
    assert (times[-1] - times[0]) / MS >= 590_000  # ten minutes of retrying, process alive
    gaps = [(b - a) / MS for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 2000 + 20 and gaps[-1] == pytest.approx(2000, abs=20)  # capped at backoff_max_s
    sup = line.runtime.supervisor
    fault_at = next(t for t, state, _ in sup.transitions if state is State.FAULT)
    assert level_at(line.status("line_stop"), times[-1]) is True and level_at(line.reject, times[-1]) is True
    statuses = [m for t, m in listener.messages if m.startswith("STATUS=FAULT: camera")]
    assert statuses and listener.messages[0][0] <= fault_at + 20 * MS
    assert len(fds) >= 8 and len(set(fds[1:])) == 1  # open fds constant
    assert traced[-1] - traced[1] < 5 * 1024 * 1024
    assert summary.stop_reason == "source_exhausted"
