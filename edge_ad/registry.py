"""Named factories registered with a decorator: backends, frame sources, outputs, backbones, model families.

One implementation so every registry behaves the same: a second registration of a name warns and
wins (a collision is a bug, but reloading a module in a notebook must not crash), and an unknown name
raises ConfigError listing the known ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Generic, TypeVar

from edge_ad.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A ``name -> factory`` mapping of one ``kind`` ("backend", "frame source", ...)."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        super().__init__(entries or {})
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``factory`` under ``name``; a second, different registration warns and wins."""

        def decorator(factory: T) -> T:
            previous = self.get(name)
            if previous is not None and previous is not factory:
                warnings.warn(
                    f"{self.kind} {name!r} registered twice ({_origin(previous)} and {_origin(factory)}); "
                    "the later one is used",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self)

    def lookup(self, name: str, what: str | None = None) -> T:
        """The factory registered as ``name``; ConfigError naming ``what`` and the known names otherwise."""
        if name not in self:
            label = what or f"unknown {self.kind}"
            raise ConfigError(f"{label} {name!r}; known: {', '.join(self.names())}")
        return self[name]

    def copy(self) -> Registry[T]:
        """A registry of the same kind with the same entries (tests register into a copy)."""
        return Registry(self.kind, dict(self))


def _origin(factory: object) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
