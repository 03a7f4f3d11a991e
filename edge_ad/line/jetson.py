"""Jetson.GPIO backends (BOARD pin numbering): output, rising-edge input and edge-counting encoder.

``Jetson.GPIO`` is imported only when a line is opened (it raises on import off a Jetson). Tests pass
``gpio_module=`` a fake with the same calls: ``setmode(BOARD)``, ``setup(pin, OUT, initial=LOW)``,
``output``, ``input``, ``add_event_detect(pin, RISING, callback=, bouncetime=)``,
``remove_event_detect``, ``cleanup(pin)``.

JetPack 6 caveat: a header pin is a GPIO only if the boot configuration's pinmux says so (set it with
``jetson-io``), and the pin reverts to that default state when the process exits (jetson-gpio #110,
#117): nothing the software does survives a crash, so the reject line must be wired fail-safe.
"""

from __future__ import annotations

import threading
from typing import Any

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.line.encoder import EdgeCounter
from edge_ad.line.inputs import EdgeBuffer

_setmode_lock = threading.Lock()


def load_jetson_gpio(gpio_module: Any | None = None) -> Any:
    """The Jetson.GPIO module in BOARD mode; ConfigError saying what to install when it is missing."""
    if gpio_module is None:
        try:
            import Jetson.GPIO as gpio_module  # noqa: N813 (the library's own spelling)
        except (ImportError, RuntimeError) as exc:  # RuntimeError: imported on a non-Jetson machine
            raise ConfigError(
                f"--gpio jetson: Jetson.GPIO is not usable here ({exc}); on a Jetson install it with "
                "`pip install Jetson.GPIO` and add the user to the gpio group, elsewhere use --gpio sim or gpiod"
            ) from exc
    with _setmode_lock:
        current = gpio_module.getmode() if hasattr(gpio_module, "getmode") else None
        if current is None:
            gpio_module.setmode(gpio_module.BOARD)
        elif current != gpio_module.BOARD:
            raise ConfigError("--gpio jetson: Jetson.GPIO is already in another numbering mode; edge-ad uses BOARD")
    return gpio_module


def _pin(pin: Any, role: str) -> int:
    if isinstance(pin, bool) or not isinstance(pin, int) or not 1 <= pin <= 40:
        raise ConfigError(f"{role}.pin: must be a 40-pin header BOARD number 1..40, got {pin!r}")
    return pin


class JetsonOutput:
    """One output pin, set up de-energised (LOW) and returned to LOW and released on ``close``."""

    def __init__(self, clock: Clock, pin: int, gpio_module: Any | None = None, name: str = "reject") -> None:
        self.clock = clock
        self.pin = _pin(pin, name)
        self.name = name
        self._gpio = load_jetson_gpio(gpio_module)
        self._gpio.setup(self.pin, self._gpio.OUT, initial=self._gpio.LOW)
        self._lock = threading.Lock()
        self.level = False
        self.closed = False

    def set(self, level: bool, t_ns: int) -> None:
        """Drive the pin HIGH (energised) or LOW; ignored after close."""
        with self._lock:
            if self.closed or bool(level) == self.level:
                return
            self._gpio.output(self.pin, self._gpio.HIGH if level else self._gpio.LOW)
            self.level = bool(level)

    def close(self) -> None:
        """LOW, then release the pin (cleanup of this pin only: other lines keep their state)."""
        with self._lock:
            if self.closed:
                return
            self._gpio.output(self.pin, self._gpio.LOW)
            self.level = False
            self._gpio.cleanup(self.pin)
            self.closed = True


class JetsonInput:
    """A rising-edge input pin: edges are timestamped on ``clock`` in the library's callback thread."""

    def __init__(
        self, clock: Clock, pin: int, gpio_module: Any | None = None, bounce_ms: int = 2, name: str = "trigger"
    ) -> None:
        self.clock = clock
        self.pin = _pin(pin, name)
        self._gpio = load_jetson_gpio(gpio_module)
        self._gpio.setup(self.pin, self._gpio.IN)
        self._edges = EdgeBuffer()
        self._gpio.add_event_detect(self.pin, self._gpio.RISING, callback=self._on_edge, bouncetime=bounce_ms)
        self.closed = False

    def _on_edge(self, _channel: int) -> None:
        self._edges.add(self.clock.now_ns())

    def read(self) -> bool:
        return bool(self._gpio.input(self.pin))

    def events(self) -> list[int]:
        return self._edges.take()

    def close(self) -> None:
        if self.closed:
            return
        self._gpio.remove_event_detect(self.pin)
        self._gpio.cleanup(self.pin)
        self.closed = True


class JetsonEncoder:
    """Counts rising edges of ``pin_a``; with ``pin_b`` the count goes down while B is high (reverse)."""

    def __init__(
        self, clock: Clock, pin_a: int, pin_b: int | None = None, gpio_module: Any | None = None
    ) -> None:
        self.clock = clock
        self.pin_a = _pin(pin_a, "encoder.a")
        self.pin_b = _pin(pin_b, "encoder.b") if pin_b is not None else None
        self._gpio = load_jetson_gpio(gpio_module)
        self._counter = EdgeCounter()
        self._gpio.setup(self.pin_a, self._gpio.IN)
        if self.pin_b is not None:
            self._gpio.setup(self.pin_b, self._gpio.IN)
        self._gpio.add_event_detect(self.pin_a, self._gpio.RISING, callback=self._on_edge)
        self.closed = False

    def _on_edge(self, _channel: int) -> None:
        backwards = self.pin_b is not None and bool(self._gpio.input(self.pin_b))
        self._counter.add(-1 if backwards else 1)

    def count(self) -> int:
        return self._counter.value()

    def close(self) -> None:
        if self.closed:
            return
        self._gpio.remove_event_detect(self.pin_a)
        self._gpio.cleanup([p for p in (self.pin_a, self.pin_b) if p is not None])
        self.closed = True
