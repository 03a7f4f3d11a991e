"""The ``--metrics-port`` endpoint: ``GET /metrics`` in Prometheus text format from a daemon thread.

Bound to 127.0.0.1 by default: the line computer should not expose an unauthenticated port to the
plant network unless someone chose to. Serving runs in its own thread on a copy of the counters, so
a slow or stuck scraper never touches the inspection loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edge_ad.errors import ConfigError
from edge_ad.monitor.metrics import CONTENT_TYPE

DEFAULT_HOST = "127.0.0.1"
# A scraper that connects and sends nothing must not hold a handler thread forever.
_REQUEST_TIMEOUT_S = 5.0


def _handler(render: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        timeout = _REQUEST_TIMEOUT_S

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            body = render().encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Silence per-request access lines (they would go to stderr on every scrape)."""

    return MetricsHandler


class MetricsServer:
    """HTTP server for ``/metrics``; ``port=0`` picks a free port (read it back from :attr:`port`)."""

    def __init__(self, render: Callable[[], str], port: int, host: str = DEFAULT_HOST) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"--metrics-port: must be in [0, 65535], got {port}")
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(render))
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="edge-ad-metrics", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=2.0)
        self._server.server_close()
