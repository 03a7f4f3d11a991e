"""The FrameSource protocol, its metadata and the URI registry every source registers in.

A source is addressed by a URI ``scheme[:argument]`` (``folder:DIR``, ``synthetic:7``,
``realsense:SERIAL``, ``bag:FILE``) so the production loop runs unchanged under test. Sources
register a factory with :func:`register_source`; :func:`open_source` parses the URI and calls it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.registry import Registry


class SourceExhausted(Exception):
    """Raised by ``read`` when a finite source (folder, bag) has delivered its last frame.

    A timeout is different: ``read`` returns None then, and the caller counts it.
    """


@dataclass(frozen=True)
class SourceInfo:
    """What a source delivers: its name, resolution and nominal frame rate.

    ``frame_is_part`` is True when every frame shows exactly one, different part (a dataset
    replay): the runtime then decides each frame as one part instead of tracking parts across
    frames. ``fps`` is 0 when the source is not paced. ``frames_per_part``: how many frames a part
    stays in view, when the source knows it (the synthetic line), to size the tracker's limits.
    """

    name: str
    width: int
    height: int
    fps: float
    frame_is_part: bool = False
    frames_per_part: float | None = None


@runtime_checkable
class FrameSource(Protocol):
    """A stream of aligned RGB-D frames.

    ``read`` returns the next frame, None when none arrived within ``timeout_s`` (the caller
    counts it, never silently retries), and raises :class:`SourceExhausted` at the end of a
    finite stream. ``stop`` returns within a bounded time and may be called twice.
    """

    def start(self) -> None:
        """Open the device or file and start streaming."""
        ...

    def read(self, timeout_s: float) -> Frame | None:
        """The next frame, None on timeout; raises SourceExhausted at the end of the stream."""
        ...

    def stop(self) -> None:
        """Stop streaming and release the device (bounded, idempotent)."""
        ...

    def info(self) -> SourceInfo:
        """Name, resolution and nominal frame rate."""
        ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SourceBase:
    """Context-manager plumbing shared by the concrete sources (``with source:`` starts and stops it)."""

    def start(self) -> None:
        """Start streaming (subclasses override)."""

    def stop(self) -> None:
        """Stop streaming (subclasses override)."""

    def __enter__(self) -> SourceBase:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def real_sleep(seconds: float) -> None:
    """Default pacing sleep (sources take a ``sleep`` callable so tests can advance a FakeClock instead)."""
    if seconds > 0:
        time.sleep(seconds)


SourceFactory = Callable[..., FrameSource]
_REGISTRY: Registry[SourceFactory] = Registry("frame source")


def register_source(scheme: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register a factory ``factory(argument: str | None, **options) -> FrameSource`` for ``scheme``."""
    return _REGISTRY.register(scheme)


def known_schemes() -> list[str]:
    """The registered URI schemes, sorted."""
    return _REGISTRY.names()


def source_factory(scheme: str) -> SourceFactory | None:
    """The factory registered for ``scheme`` (None when unknown), e.g. to read the options it takes."""
    return _REGISTRY.get(scheme)


def parse_uri(uri: str) -> tuple[str, str | None]:
    """Split ``scheme[:argument]`` (``folder:/data/x`` -> ("folder", "/data/x")); ``scheme://arg`` is accepted too."""
    scheme, sep, argument = uri.partition(":")
    scheme = scheme.strip().lower()
    if not scheme:
        raise ConfigError(f"camera URI {uri!r}: missing scheme; expected one of {', '.join(known_schemes())}")
    if not sep:
        return scheme, None
    if argument.startswith("//"):
        argument = argument[2:]
    return scheme, (argument or None)


def open_source(uri: str, **options: Any) -> FrameSource:
    """Build (not start) the source named by ``uri`` with keyword ``options`` (fps=, split=, clock=, ...).

    Raises ConfigError for an unknown scheme (listing the known ones) or an option the source
    does not take (listing the ones it does).
    """
    scheme, argument = parse_uri(uri)
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise ConfigError(f"camera URI {uri!r}: unknown source {scheme!r}; known sources: {', '.join(known_schemes())}")
    signature = inspect.signature(factory)
    try:
        signature.bind(argument, **options)
    except TypeError as exc:
        accepted = [name for name in list(signature.parameters)[1:]]
        raise ConfigError(
            f"camera URI {uri!r}: {exc}; source {scheme!r} takes the options: {', '.join(accepted) or 'none'}"
        ) from exc
    return factory(argument, **options)
