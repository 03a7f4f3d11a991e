"""systemd notify without libsystemd: datagrams to a path or abstract socket, WATCHDOG_USEC parsing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from edge_ad.clock import FakeClock
from edge_ad.systemd import SystemdNotifier, watchdog_usec_from_env
from tests.helpers.faults import NotifySocketListener, notify_env


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    listener = NotifySocketListener(address, FakeClock())
    with notify_env(address, watchdog_usec=500_000):
        notifier = SystemdNotifier()
    try:
        assert notifier.enabled and notifier.watchdog_interval_ns == 500_000_000
        assert notifier.ready("RUNNING") and notifier.watchdog() and notifier.status("FAULT:\n camera") and notifier.stopping()
        listener.poll()
    finally:
        notifier.close()
        listener.close()
    assert [m for _, m in listener.messages] == [
        "READY=1", "STATUS=RUNNING", "WATCHDOG=1", "STATUS=FAULT: camera", "STOPPING=1", "STATUS=stopping",
    ]


def test_abstract_namespace_address() -> None:
    address = f"@edge-ad-test-{uuid.uuid4().hex}"
    listener = NotifySocketListener(address, FakeClock())
    notifier = SystemdNotifier(address)
    try:
        assert notifier.watchdog()
        listener.poll()
    finally:
        notifier.close()
        listener.close()
    assert [m for _, m in listener.messages] == ["WATCHDOG=1"]


def test_no_socket_is_a_silent_no_op_and_a_dead_socket_is_counted(tmp_path: Path) -> None:
    with notify_env(""):
        os.environ.pop("NOTIFY_SOCKET")
        assert SystemdNotifier().notify("READY=1") is False
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens"))
    assert notifier.watchdog() is False and notifier.watchdog() is False and notifier.errors == 2


def test_watchdog_usec_is_only_for_the_named_pid() -> None:
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "500000"}) == 500_000
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}) == 500_000
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "soon"}) is None
