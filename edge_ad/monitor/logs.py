"""Structured JSON logs that cannot stall the loop, and faults logged once rather than per frame.

Records go through a :class:`DroppingQueueHandler` into a bounded queue; a
:class:`logging.handlers.QueueListener` thread formats them as one JSON object per line and writes
them (by default to a :class:`~logging.handlers.RotatingFileHandler`). A stalled disk therefore
fills the queue, and further records are dropped and counted, instead of blocking the caller.
:class:`FaultLog` turns a fault that repeats every frame into one ERROR line with its context, a
periodic "repeated N times" line, and an INFO line when it clears.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ad._fields import check_range
from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import ConfigError

LOGGER_NAME = "edge_ad"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# LogRecord attributes that are not user context (everything else passed via ``extra`` is).
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


@dataclass(frozen=True)
class LogConfig:
    """Where JSON logs go and how they rotate.

    ``max_bytes`` > 0 and ``backup_count`` >= 1 are enforced: with ``backupCount=0`` a
    RotatingFileHandler never rolls over and the file grows until the disk is full (bpo-29105).
    ``queue_size`` bounds the records waiting for the writer thread.
    """

    path: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backup_count: int = 5
    queue_size: int = 1000
    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        check_range("logging", "max_bytes", self.max_bytes, low=0, low_open=True)
        if self.backup_count < 1:
            raise ConfigError(
                f"logging.backup_count: must be >= 1, got {self.backup_count} "
                "(with 0 the log file never rotates and grows without limit)"
            )
        check_range("logging", "queue_size", self.queue_size, low=1)
        if self.level.upper() not in _LEVELS:
            raise ConfigError(f"logging.level: must be one of {', '.join(_LEVELS)}, got {self.level!r}")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC ISO 8601), level, logger, msg, the ``extra`` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single JSON line."""
        ts = dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that drops (and counts) a record when the bounded queue is full, never blocking."""

    def __init__(self, log_queue: queue.Queue[Any]) -> None:
        super().__init__(log_queue)
        self.dropped = 0
        self._lock = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Merge args into msg and render the traceback now (the listener formats the rest as JSON)."""
        copy = logging.makeLogRecord(vars(record))
        copy.msg = record.getMessage()
        copy.args = None
        if record.exc_info:
            copy.exc_text = logging.Formatter().formatException(record.exc_info)
        copy.exc_info = None
        return copy

    def enqueue(self, record: logging.LogRecord) -> None:
        """Put without waiting; a full queue costs the record, not the caller's time."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    def stop_within(self, timeout_s: float) -> bool:
        """Like ``stop`` but bounded: a handler stuck on a dead disk must not hang shutdown."""
        thread = self._thread  # type: ignore[attr-defined]  # QueueListener keeps it private
        if thread is None:
            return True
        try:
            self.queue.put(self._sentinel, timeout=timeout_s)  # type: ignore[attr-defined]
        except queue.Full:
            return False
        thread.join(timeout_s)
        self._thread = None  # type: ignore[attr-defined]
        return not thread.is_alive()


class LogPipeline:
    """Bounded queue -> listener thread -> handlers, attached to the ``edge_ad`` logger.

    ``handlers`` default to a RotatingFileHandler on ``config.path`` (or stderr without a path);
    tests pass their own (a blocking one, a list collector).
    """

    def __init__(self, config: LogConfig = LogConfig(), handlers: Sequence[logging.Handler] | None = None) -> None:
        self.config = config
        if handlers is None:
            handlers = [self._default_handler(config)]
        formatter = JsonFormatter()
        for handler in handlers:
            if handler.formatter is None:
                handler.setFormatter(formatter)
        self.handlers = list(handlers)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=config.queue_size)
        self.queue_handler = DroppingQueueHandler(self.queue)
        self._listener = _Listener(self.queue, *self.handlers, respect_handler_level=True)
        self.logger = logging.getLogger(LOGGER_NAME)
        self._started = False

    @staticmethod
    def _default_handler(config: LogConfig) -> logging.Handler:
        if config.path is None:
            return logging.StreamHandler()
        try:
            config.path.parent.mkdir(parents=True, exist_ok=True)
            return logging.handlers.RotatingFileHandler(
                config.path, maxBytes=config.max_bytes, backupCount=config.backup_count, encoding="utf-8"
            )
        except OSError as exc:
            raise ConfigError(f"logging.path {config.path}: cannot open the log file: {exc}") from exc

    @property
    def dropped(self) -> int:
        """Records lost because the queue was full."""
        return self.queue_handler.dropped

    def start(self) -> LogPipeline:
        """Attach to the ``edge_ad`` logger and start the writer thread."""
        if not self._started:
            self.logger.setLevel(self.config.level.upper())
            self.logger.addHandler(self.queue_handler)
            self._listener.start()
            self._started = True
        return self

    def close(self, timeout_s: float = 2.0) -> bool:
        """Detach, flush what is queued (bounded by ``timeout_s``) and close the handlers; False if it timed out."""
        if not self._started:
            return True
        self.logger.removeHandler(self.queue_handler)
        finished = self._listener.stop_within(timeout_s)
        if finished:
            for handler in self.handlers:
                handler.close()
        self._started = False
        return finished


class FaultLog:
    """Log each fault once with its context, then at most every ``repeat_every_s`` a count; log when it clears."""

    def __init__(
        self, logger: logging.Logger | None = None, clock: Clock | None = None, repeat_every_s: float = 60.0
    ) -> None:
        check_range("logging", "repeat_every_s", repeat_every_s, low=0.0, low_open=True)
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME + ".faults")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.repeat_every_ns = round(repeat_every_s * 1e9)
        self._lock = threading.Lock()
        # reason -> [occurrences since first, occurrences since last line, time of last line]
        self._active: dict[str, list[int]] = {}

    def fault(self, reason: str, detail: str = "", **context: Any) -> bool:
        """Record one occurrence; returns True when it produced a log line."""
        now = self.clock.now_ns()
        with self._lock:
            state = self._active.get(reason)
            if state is None:
                self._active[reason] = [1, 0, now]
                first, repeated = True, 0
            else:
                state[0] += 1
                state[1] += 1
                if now - state[2] < self.repeat_every_ns:
                    return False
                first, repeated = False, state[1]
                state[1], state[2] = 0, now
        # A context key that names a LogRecord attribute would make logging raise: prefix it.
        fields = {"fault": reason, "detail": detail}
        fields.update({(f"ctx_{k}" if k in _STANDARD_ATTRS else k): v for k, v in context.items()})
        if first:
            self.logger.error("fault %s: %s", reason, detail, extra=fields)
        else:
            fields["repeated"] = repeated
            self.logger.warning("fault %s repeated %d more times: %s", reason, repeated, detail, extra=fields)
        return True

    def clear(self, reason: str) -> bool:
        """The fault ended: one INFO line with its total count; the next occurrence logs again. True if it was active."""
        with self._lock:
            state = self._active.pop(reason, None)
        if state is None:
            return False
        self.logger.info("fault %s cleared after %d occurrences", reason, state[0], extra={"fault": reason, "occurrences": state[0]})
        return True

    def active(self) -> dict[str, int]:
        """Faults not yet cleared, with their occurrence counts."""
        with self._lock:
            return {reason: state[0] for reason, state in self._active.items()}
