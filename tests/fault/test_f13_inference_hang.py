"""F13: the inference backend hangs and never returns (FakeClock line; the watchdog waits in real time).

Pass: the inference watchdog gives up within infer_timeout_ms -> FAULT_REJECT and state FAULT, gate safe;
systemd WATCHDOG=1 pings stop (so systemd would kill the service); a hung worker is abandoned and a
fresh one serves the next part; a backend that comes back clears the fault.
"""

from __future__ import annotations

from pathlib import Path

from edge_ad.supervisor import State, SupervisorConfig
from edge_ad.systemd import SystemdNotifier
from tests.helpers.faults import (
    MS,
    HangingBackend,
    NotifySocketListener,
    build_line,
    check_each_part_once,
    level_at,
)


def test_f13_hung_inference_faults_the_part_goes_safe_and_stops_the_pings(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    backend = HangingBackend(hang_from=3, hang_count=3)  # calls 3, 4, 5 hang; then it answers again
    line = build_line(frames=90, backend=backend, notifier=SystemdNotifier(address, watchdog_usec=500_000),
                      supervisor=SupervisorConfig(infer_timeout_ms=50, recover_after=5))
    listener = NotifySocketListener(address, line.clock)
    line.harness.on_tick.append(listener.poll)
    try:
        summary = line.run()
    finally:
        backend.release()
        listener.close()

    hung = [r for r in summary.part_records if r.reason == "deadline_miss"]
    assert [r.part_id for r in hung] == [2, 3, 4]
    assert line.runtime.watchdog.timeouts == 3 and line.runtime.watchdog.workers_started == 4  # fresh worker each
    sup = line.runtime.supervisor
    faults = [t for t, s, _ in sup.transitions if s is State.FAULT]
    assert faults and sup.counters["inference_hang"] == 3
    assert level_at(line.reject, faults[0]) is True
    # No WATCHDOG=1 while in FAULT; pings were at <= 250 ms before it and resume after recovery.
    recovered = next(t for t, s, _ in sup.transitions if t > faults[0] and s is not State.FAULT)
    pings = listener.times("WATCHDOG=1")
    assert not [t for t in pings if faults[0] <= t < recovered]
    before = [t for t in pings if t < faults[0]]
    assert faults[0] - before[-1] <= 250 * MS
    assert any(t > recovered for t in pings)
    check_each_part_once(summary, line.runtime)
