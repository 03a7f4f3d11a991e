"""The inference watchdog: the scoring call runs in a worker thread and is given up after a deadline.

A backend can hang (a wedged GPU context, a driver deadlock) and never return; the loop must still
decide the part. :meth:`InferenceWatchdog.call` waits at most ``timeout_s`` for the worker; past it
the worker is abandoned (a Python thread cannot be killed: it stays parked in the hung call, daemonic,
counted) and the next call starts a fresh one. Exceptions raised in the worker are re-raised in the
caller, so the stage boundary that catches :data:`STAGE_ERRORS` sits in one place: the runtime.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from edge_ad.errors import ConfigError, EdgeAdError, InferenceError

T = TypeVar("T")

# What a stage may raise that the loop turns into a FAULT_REJECT and a counted error instead of dying.
# Specific families, not `Exception`: a bug such as NameError or AttributeError still surfaces.
STAGE_ERRORS: tuple[type[BaseException], ...] = (
    EdgeAdError, RuntimeError, ValueError, TypeError, ArithmeticError, LookupError, OSError, MemoryError,
)


class InferenceTimeout(InferenceError):
    """The scoring call did not return within the watchdog's timeout."""


class _Job:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn(*job.args)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller, which decides what to catch
                job.error = exc
            job.done.set()


class InferenceWatchdog:
    """Runs calls in a worker with a deadline; ``timeout_s`` None runs them inline (no watchdog)."""

    def __init__(self, timeout_s: float | None, name: str = "edge-ad-inference") -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError(f"supervisor.infer_timeout_ms: must be > 0, got {timeout_s * 1000:g}")
        self.timeout_s = timeout_s
        self.name = name
        self._worker: _Worker | None = None
        self.calls = 0
        self.timeouts = 0
        self.workers_started = 0

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` within the deadline; raises :class:`InferenceTimeout`, or what ``fn`` raised."""
        self.calls += 1
        if self.timeout_s is None:
            return fn(*args)
        if self._worker is None:
            self.workers_started += 1
            self._worker = _Worker(f"{self.name}-{self.workers_started}")
        job = _Job(fn, args)
        self._worker.jobs.put(job)
        if not job.done.wait(self.timeout_s):
            self.timeouts += 1
            self._worker = None  # abandoned: it is stuck in ``fn``; the next call gets a new worker
            raise InferenceTimeout(
                f"inference did not return within {self.timeout_s * 1000:.0f} ms; worker abandoned "
                f"({self.timeouts} so far)"
            )
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Let the current worker exit once idle (an abandoned one stays parked in its hung call)."""
        if self._worker is not None:
            self._worker.jobs.put(None)
            self._worker = None
