"""Belt encoder input: a count that grows with belt travel, so rejects follow the part, not the clock.

Keyed to counts, a stopped belt holds its pulses and a slow belt delays them: the classic shift-register
tracking of reject systems. ``sim`` is here; ``jetson`` / ``gpiod`` count rising edges of channel A in a
GPIO callback or reader thread (optionally signed by channel B: quadrature x1), which in Python is good
for a few kHz of edges: use a coarse encoder, or a hardware counter for faster belts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.registry import Registry


@runtime_checkable
class EncoderInput(Protocol):
    """A monotonic-ish belt position in counts (reverse jitter may step it back a little)."""

    def count(self) -> int:
        """The current count."""
        ...

    def close(self) -> None:
        """Stop counting and release the lines (idempotent)."""
        ...


class EdgeCounter:
    """Thread-safe counter the backends' edge callbacks add to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self, step: int = 1) -> None:
        """Count one edge (``-1`` when channel B says the belt runs backwards)."""
        with self._lock:
            self._count += step

    def value(self) -> int:
        """The current count."""
        with self._lock:
            return self._count


EncoderFactory = Callable[..., EncoderInput]
_REGISTRY: Registry[EncoderFactory] = Registry("encoder")


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register ``factory(clock=..., **options) -> EncoderInput`` under ``name`` (warns on a collision)."""
    return _REGISTRY.register(name)


def open_encoder(backend: str, clock: Clock, **options: Any) -> EncoderInput:
    """Open the encoder registered as ``backend``; ConfigError lists the known ones otherwise."""
    factory = _REGISTRY.get(backend)
    if factory is None:
        raise ConfigError(f"--encoder {backend!r}: unknown encoder; known encoders: {', '.join(sorted(_REGISTRY))}")
    return factory(clock=clock, **options)


@register_encoder("sim")
class SimEncoder:
    """A belt at ``counts_per_s`` on ``clock`` (0: moved only by :meth:`advance`)."""

    def __init__(self, clock: Clock, counts_per_s: float = 0.0) -> None:
        self.clock = clock
        self.counts_per_s = counts_per_s
        self._t0 = clock.now_ns()
        self._manual = 0

    def advance(self, counts: int) -> None:
        """Move the belt by ``counts`` (negative: backwards)."""
        self._manual += int(counts)

    def count(self) -> int:
        elapsed_s = (self.clock.now_ns() - self._t0) / 1e9
        return self._manual + int(elapsed_s * self.counts_per_s)

    def close(self) -> None:
        pass


@register_encoder("jetson")
def _open_jetson(clock: Clock, **options: Any) -> EncoderInput:
    from edge_ad.line.jetson import JetsonEncoder

    return JetsonEncoder(clock=clock, **options)


@register_encoder("gpiod")
def _open_gpiod(clock: Clock, **options: Any) -> EncoderInput:
    from edge_ad.line.gpiod_backend import GpiodEncoder

    return GpiodEncoder(clock=clock, **options)
