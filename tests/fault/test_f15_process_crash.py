"""F15: the runtime process is killed (kill -9) while running the line (file-backed sim GPIO, PLC watching).

Pass: the lines revert to their default level (JetPack 6 semantics) -- with energize-to-accept wiring the
reject gate then diverts every part; the heartbeat stops and the PLC's edge watchdog declares a fault
<= 3 heartbeat periods (150 ms at 50 ms) after the last edge; the outputs were opened de-energised (safe)
before the camera produced its first frame.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config
from tests.helpers.faults import MockGpio, pid_alive
from tests.helpers.plc import PlcSimulator

pytestmark = pytest.mark.slow
HB_PERIOD_NS = 50_000_000


def test_f15_kill_9_leaves_the_gate_diverting_and_the_plc_sees_the_heartbeat_stop(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle", preprocess_config=tiny_preprocess_config())
    gpio_file = tmp_path / "gpio.log"
    args = [sys.executable, "-m", "edge_ad.cli", "run", "--bundle", str(bundle), "--camera", "synthetic:4",
            "--size", "64", "--threads", "1", "--gpio", "sim", "--gpio-file", str(gpio_file),
            "--polarity", "energize_to_accept", "--reject-delay", "0.3", "--no-notify"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gpio = MockGpio(gpio_file)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if gpio_file.exists() and len(gpio.edges("heartbeat")) >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert gpio.level("ready") is True and gpio.owner_pid("reject") == proc.pid
        killed_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    assert not pid_alive(proc.pid)
    # JetPack 6: every line is back at its default (de-energised) level; nobody wrote a "close".
    assert [r.kind for r in gpio.records() if r.kind == "close"] == []
    for role in ("reject", "ready", "heartbeat"):
        assert gpio.level(role) is False
    # Positive release: a part passing the gate now is diverted.
    after = (time.monotonic_ns(), time.monotonic_ns() + 10**8)
    assert PlcSimulator.diverted([*gpio.edges("reject"), (after[0], False)], after, "energize_to_accept")
    # The heartbeat was toggling, then stopped: the PLC trips within 3 periods of its last edge.
    time.sleep(4 * HB_PERIOD_NS / 1e9)  # the PLC keeps scanning after the crash
    beats = gpio.edges("heartbeat")
    assert beats[-1][0] <= killed_ns  # no edge after the kill
    plc = PlcSimulator(hb_timeout_ns=3 * HB_PERIOD_NS)
    tripped = plc.heartbeat_fault_at(beats, beats[-1][0], time.monotonic_ns())
    assert tripped == beats[-1][0] + 3 * HB_PERIOD_NS  # <= 150 ms after the last heartbeat edge
    # Safe state first: every output was opened (at its safe level) before the first edge of any line.
    records = gpio.records()
    first_edge = next(i for i, r in enumerate(records) if r.kind == "edge")
    assert {r.name for r in records[:first_edge] if r.kind == "open"} >= {"reject", "ready", "fault", "heartbeat"}
