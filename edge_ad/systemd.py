"""systemd notify protocol without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

``READY=1`` tells systemd the service is up (Type=notify), ``WATCHDOG=1`` is the keep-alive systemd
expects at least every ``WATCHDOG_USEC`` (sd_watchdog_enabled(3) recommends every half of it),
``STATUS=...`` is what ``systemctl status`` shows, ``STOPPING=1`` announces a clean stop. An address
starting with ``@`` is a Linux abstract-namespace socket (a leading NUL byte on the wire).
Nothing here raises: a notify failure is counted and logged once, the inspection loop never stops for it.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def watchdog_usec_from_env(environ: dict[str, str] | None = None) -> int | None:
    """``WATCHDOG_USEC`` when it is meant for this process (``WATCHDOG_PID`` absent or ours), else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.strip() != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; systemd watchdog pings disabled", usec)
        return None
    return value if value > 0 else None


class SystemdNotifier:
    """Sends notify datagrams to ``address`` (default ``$NOTIFY_SOCKET``); a no-op without one."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET") or None
        self.watchdog_usec = watchdog_usec if watchdog_usec is not None else watchdog_usec_from_env()
        self.sent: list[str] = []
        self.errors = 0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # a full socket buffer must never block the loop

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._sock is not None

    @property
    def watchdog_interval_ns(self) -> int | None:
        """systemd's watchdog timeout in ns (None: no watchdog requested)."""
        return None if self.watchdog_usec is None else self.watchdog_usec * 1000

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (counted, logged once) when it could not be sent."""
        if self._sock is None or not lines:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address  # type: ignore[union-attr]
        try:
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:
                log.error("systemd notify to %s failed: %s (further failures only counted)", self.address, exc)
            return False
        self.sent.extend(lines)
        return True

    def ready(self, status: str = "running") -> bool:
        """``READY=1`` with a status line."""
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` keep-alive."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=text`` (one line)."""
        return self.notify(f"STATUS={' '.join(text.split())}")

    def stopping(self, status: str = "stopping") -> bool:
        """``STOPPING=1`` with a status line."""
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
