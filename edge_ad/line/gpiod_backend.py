"""libgpiod v2 backends (any Linux board, Jetson on JetPack 6 included): output, edge input, encoder.

``gpiod`` (the v2 Python bindings, ``gpiod.request_lines`` / ``LineSettings``) is imported only when a
line is opened; tests pass ``gpiod_module=`` a fake with the same calls. A line is named by its chip
(``/dev/gpiochipN`` or a chip label such as ``tegra234-gpio``, resolved by the board pin map) and offset.
Edge events carry kernel CLOCK_MONOTONIC timestamps, the same epoch as :class:`~edge_ad.clock.MonotonicClock`;
on another clock the event is stamped when it is read. Like Jetson.GPIO on JetPack 6, a released or
orphaned line reverts to its default state.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import ConfigError
from edge_ad.line.encoder import EdgeCounter
from edge_ad.line.inputs import EdgeBuffer

CONSUMER = "edge-ad"


def load_gpiod(gpiod_module: Any | None = None) -> Any:
    """The gpiod v2 module; ConfigError saying what to install when it is missing or v1."""
    if gpiod_module is not None:
        return gpiod_module
    try:
        import gpiod
    except ImportError as exc:
        raise ConfigError(
            "--gpio gpiod: the libgpiod v2 Python bindings are not installed (`pip install gpiod>=2`)"
        ) from exc
    if not hasattr(gpiod, "request_lines"):
        raise ConfigError("--gpio gpiod: found libgpiod v1 bindings; edge-ad needs v2 (gpiod.request_lines)")
    return gpiod


def _chip_path(chip: str | int, gpiod: Any | None = None) -> str:
    """``/dev/gpiochipN`` for a number, a device name or path, or a chip *label* (``tegra234-gpio``)."""
    if isinstance(chip, int):
        return f"/dev/gpiochip{chip}"
    if chip.startswith("/dev/"):
        return chip
    if chip.startswith("gpiochip") or gpiod is None:
        return f"/dev/{chip}"
    from pathlib import Path

    for path in sorted(Path("/dev").glob("gpiochip*")):
        with gpiod.Chip(str(path)) as handle:
            if handle.get_info().label == chip:
                return str(path)
    raise ConfigError(f"--gpio gpiod: no GPIO chip labelled {chip!r} (see `gpiodetect`)")


class GpiodOutput:
    """One output line, requested INACTIVE (de-energised); ``close`` drives it INACTIVE and releases it."""

    def __init__(self, clock: Clock, chip: str | int, line: int, gpiod_module: Any | None = None,
                 name: str = "reject") -> None:
        self.clock = clock
        self.line = int(line)
        self.name = name
        self._gpiod = load_gpiod(gpiod_module)
        value = self._gpiod.line.Value
        self._values = (value.INACTIVE, value.ACTIVE)
        settings = self._gpiod.LineSettings(direction=self._gpiod.line.Direction.OUTPUT, output_value=value.INACTIVE)
        self._request = self._gpiod.request_lines(
            _chip_path(chip, self._gpiod), consumer=f"{CONSUMER}-{name}", config={self.line: settings}
        )
        self._lock = threading.Lock()
        self.level = False
        self.closed = False

    def set(self, level: bool, t_ns: int) -> None:
        with self._lock:
            if self.closed or bool(level) == self.level:
                return
            self._request.set_value(self.line, self._values[bool(level)])
            self.level = bool(level)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self._request.set_value(self.line, self._values[0])
            self.level = False
            self._request.release()
            self.closed = True


class _EdgeReader:
    """A daemon thread reading rising-edge events of one request and handing them to ``on_edge``."""

    def __init__(self, request: Any, clock: Clock, on_edge: Any, poll_s: float = 0.05) -> None:
        self._request = request
        self._clock = clock
        self._on_edge = on_edge
        self._poll = timedelta(seconds=poll_s)
        self._stop = threading.Event()
        self._kernel_time = isinstance(clock, MonotonicClock)
        self._thread = threading.Thread(target=self._run, name="edge-ad-gpiod-edges", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._request.wait_edge_events(self._poll):
                continue
            for event in self._request.read_edge_events():
                t_ns = int(event.timestamp_ns) if self._kernel_time else self._clock.now_ns()
                self._on_edge(event, t_ns)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class GpiodInput:
    """A rising-edge input line (kernel debounce ``bounce_ms``), edges read by a background thread."""

    def __init__(self, clock: Clock, chip: str | int, line: int, gpiod_module: Any | None = None,
                 bounce_ms: float = 2.0) -> None:
        self.clock = clock
        self.line = int(line)
        gpiod = load_gpiod(gpiod_module)
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.INPUT,
            edge_detection=gpiod.line.Edge.RISING,
            debounce_period=timedelta(milliseconds=bounce_ms),
        )
        self._active = gpiod.line.Value.ACTIVE
        self._request = gpiod.request_lines(_chip_path(chip, gpiod), consumer=f"{CONSUMER}-input", config={self.line: settings})
        self._edges = EdgeBuffer()
        self._reader = _EdgeReader(self._request, clock, lambda _event, t_ns: self._edges.add(t_ns))
        self.closed = False

    def read(self) -> bool:
        return self._request.get_value(self.line) == self._active

    def events(self) -> list[int]:
        return self._edges.take()

    def close(self) -> None:
        if self.closed:
            return
        self._reader.stop()
        self._request.release()
        self.closed = True


class GpiodEncoder:
    """Counts rising edges of line ``line_a``; with ``line_b`` the count goes down while B is active."""

    def __init__(self, clock: Clock, chip: str | int, line_a: int, line_b: int | None = None,
                 gpiod_module: Any | None = None) -> None:
        self.clock = clock
        gpiod = load_gpiod(gpiod_module)
        direction = gpiod.line.Direction.INPUT
        config = {int(line_a): gpiod.LineSettings(direction=direction, edge_detection=gpiod.line.Edge.RISING)}
        if line_b is not None:
            config[int(line_b)] = gpiod.LineSettings(direction=direction)
        self.line_a, self.line_b = int(line_a), line_b
        self._active = gpiod.line.Value.ACTIVE
        self._request = gpiod.request_lines(_chip_path(chip, gpiod), consumer=f"{CONSUMER}-encoder", config=config)
        self._counter = EdgeCounter()
        self._reader = _EdgeReader(self._request, clock, self._on_edge)
        self.closed = False

    def _on_edge(self, _event: Any, _t_ns: int) -> None:
        backwards = self.line_b is not None and self._request.get_value(int(self.line_b)) == self._active
        self._counter.add(-1 if backwards else 1)

    def count(self) -> int:
        return self._counter.value()

    def close(self) -> None:
        if self.closed:
            return
        self._reader.stop()
        self._request.release()
        self.closed = True
