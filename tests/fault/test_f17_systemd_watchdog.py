"""F17: the systemd watchdog contract (a NOTIFY_SOCKET listener; WATCHDOG_USEC=500000).

Pass: READY=1 only after bundle verify, camera profile verify and the first good inspection; WATCHDOG=1
at <= 250 ms intervals while healthy, stopping within one interval of a fault (F1 stall); STOPPING=1 on
SIGTERM, with the shutdown bounded by stop_timeout_s even though camera.stop() hangs (librealsense #9184).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from edge_ad.clock import MonotonicClock
from edge_ad.line.outputs import SimOutput
from edge_ad.part_tracker import TrackerConfig
from edge_ad.runtime import RuntimeConfig, run_inspection
from edge_ad.runtime_setup import LineIO
from edge_ad.supervisor import State, SupervisorConfig
from edge_ad.systemd import SystemdNotifier
from tests.helpers.faults import (
    MS,
    BackendInspector,
    FaultPlan,
    FaultPlanSource,
    NotifySocketListener,
    build_line,
    notify_env,
)


def test_f17_ready_after_first_good_inspection_pings_while_healthy_only(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with notify_env(address, watchdog_usec=500_000):
        notifier = SystemdNotifier()  # from $NOTIFY_SOCKET / $WATCHDOG_USEC, as under systemd
    line = build_line(FaultPlan().stall(60, 1.0), frames=150, notifier=notifier)
    listener = NotifySocketListener(address, line.clock)
    line.harness.on_tick.append(listener.poll)
    try:
        line.run()
        listener.poll()
    finally:
        listener.close()

    ready = listener.times("READY=1")
    assert len(ready) == 1 and ready[0] >= line.inspector.arrivals[0]  # after the first frame was inspected
    assert not [t for t in listener.times("WATCHDOG=1") if t < ready[0]]
    sup = line.runtime.supervisor
    fault_at = next(t for t, s, _ in sup.transitions if s is State.FAULT)
    recovered = next(t for t, s, _ in sup.transitions if t > fault_at and s is not State.FAULT)
    pings = listener.times("WATCHDOG=1")
    healthy = [t for t in pings if t < fault_at]
    assert max(b - a for a, b in zip(healthy, healthy[1:], strict=False)) <= 250 * MS
    assert fault_at - healthy[-1] <= 500 * MS  # the last ping came within one interval of the fault
    assert not [t for t in pings if fault_at <= t < recovered]  # systemd would now kill the service
    statuses = [m for _, m in listener.messages if m.startswith("STATUS=")]
    assert any(m.startswith("STATUS=FAULT: camera") for m in statuses)
    assert listener.messages[-2][1] == "STOPPING=1"


def test_f17_sigterm_sends_stopping_and_returns_although_camera_stop_hangs(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    clock = MonotonicClock()
    listener = NotifySocketListener(address, clock)
    source = FaultPlanSource(clock=clock, sleep=time.sleep, frames=None, stop_hangs_s=3.0)
    line = LineIO(SimOutput(clock), notifier=SystemdNotifier(address))
    config = RuntimeConfig(read_timeout_s=0.1, tracker=TrackerConfig(enter_frames=1, leave_frames=1),
                           supervisor=SupervisorConfig(stop_timeout_s=0.2), drain_timeout_s=0.5)
    sender = threading.Thread(target=lambda: listener.wait_for("READY=1") and os.kill(os.getpid(), signal.SIGTERM))
    sender.start()
    try:
        summary = run_inspection(source, BackendInspector(), line, config, clock, handle_signals=True)
        returned_while_stop_hung = not source.stop_returned.is_set()
        listener.poll()
    finally:
        sender.join(5.0)
        listener.close()
    assert summary.stop_reason == "SIGTERM"
    assert returned_while_stop_hung and source.stopped == 1  # stop() was called, and not waited for
    messages = [m for _, m in listener.messages]
    assert "STOPPING=1" in messages and messages.index("READY=1") < messages.index("STOPPING=1")
    assert line.reject.closed and line.reject.level is False
