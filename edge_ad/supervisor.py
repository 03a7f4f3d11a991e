"""The fail-safe supervisor: one state for the whole station, and what each state does to the line.

States (OPC UA machine-vision vocabulary): STARTING -> RUNNING <-> DEGRADED, any -> FAULT -> DEGRADED
-> RUNNING, and STOPPING at the end. FAULT has causes (``camera``, ``inference``, ``errors``,
``belt``); while any is active the gate is held in its safe state (every part rejected), the fault
and line-stop outputs are on, and the heartbeat and systemd ``WATCHDOG=1`` stop -- both are sent only
from :meth:`Supervisor.healthy`, the loop's healthy path. A cause clears by evidence (a frame arrives,
an inference returns, the error rate falls), then DEGRADED until ``recover_after`` good frames.

Rules: no frame for ``stall_fault_ms`` or a disconnect -> FAULT camera (reconnect with capped backoff
0.1, 0.2, 0.4 ... ``backoff_max_s``); an inference past ``infer_timeout_ms`` -> FAULT inference; more
than ``error_limit`` stage errors within ``error_window_s`` -> FAULT errors; ``degrade_after``
consecutive deadline misses or invalid frames -> DEGRADED. ``READY=1`` goes out only once the bundle
and the camera profile are verified and a first frame was inspected good.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.line.heartbeat import StatusLines
from edge_ad.rate_limits import Backoff, ErrorRateBreaker
from edge_ad.systemd import SystemdNotifier

log = logging.getLogger(__name__)
__all__ = ["Backoff", "ErrorRateBreaker", "SafeGate", "State", "Supervisor", "SupervisorConfig"]


class State(str, Enum):
    """Station state."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    FAULT = "FAULT"
    STOPPING = "STOPPING"


@dataclass(frozen=True)
class SupervisorConfig:
    """Limits of the supervisor (defaults for a 30 fps line; set them per line)."""

    stall_fault_ms: float = 250.0
    infer_timeout_ms: float = 1000.0
    degrade_after: int = 3
    recover_after: int = 10
    error_limit: int = 5
    error_window_s: float = 10.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    heartbeat_period_s: float = 0.05
    stop_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("stall_fault_ms", "infer_timeout_ms", "error_window_s", "backoff_initial_s",
                     "heartbeat_period_s", "stop_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"supervisor.{name}: must be a finite number > 0, got {value}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                f"supervisor.backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s ({self.backoff_initial_s})"
            )
        for name in ("degrade_after", "recover_after", "error_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"supervisor.{name}: must be >= 1, got {getattr(self, name)}")


class SafeGate(Protocol):
    """What the supervisor needs of the reject scheduler."""

    def hold_safe(self, reason: str) -> None: ...

    def release_safe(self) -> None: ...


class Supervisor:
    """See the module docstring. Thread-safe: capture, inspection and actuator threads all report here."""

    def __init__(
        self,
        clock: Clock,
        config: SupervisorConfig = SupervisorConfig(),
        *,
        gate: SafeGate | None = None,
        status: StatusLines | None = None,
        notifier: SystemdNotifier | None = None,
        detect_stall: bool = True,
    ) -> None:
        self.clock, self.config = clock, config
        self.gate, self.notifier = gate, notifier
        self.status = status or StatusLines(clock, {}, config.heartbeat_period_s)
        self.detect_stall = detect_stall
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.breaker = ErrorRateBreaker(config.error_limit, config.error_window_s)
        self.state = State.STARTING
        self.causes: dict[str, str] = {}
        self.counters: Counter[str] = Counter()
        self.transitions: list[tuple[int, State, str]] = []
        self.verified: set[str] = set()
        self.ready_sent = False
        self._lock = threading.RLock()
        self._degraded = False
        self._bad_run = self._miss_run = self._good_run = 0
        self._last_frame_ns = clock.now_ns()
        self._last_ping_ns: int | None = None
        self._logged: set[str] = set()
        if gate is not None:
            gate.hold_safe("starting")
        self.status.show(ready=False, fault=False)

    # --- events ----------------------------------------------------------------------------------

    def mark_verified(self, what: str) -> None:
        """``bundle`` or ``camera`` (profile) passed its startup check."""
        with self._lock:
            self.verified.add(what)

    def frame_arrived(self) -> None:
        """A frame came from the camera: it is alive (clears a camera fault)."""
        with self._lock:
            self._last_frame_ns = self.clock.now_ns()
            if "camera" in self.causes:
                log.warning("camera is delivering frames again after %d reconnect attempts", self.backoff.attempts)
                self.backoff.reset()
                self._clear("camera")

    def capture_timeout(self) -> None:
        """A read returned no frame within the capture timeout."""
        with self._lock:
            self.counters["capture_timeout"] += 1
            self._bad()

    def camera_lost(self, detail: str) -> float:
        """The camera disconnected; returns how long to back off before the next read (counted attempt)."""
        with self._lock:
            self.counters["camera_disconnect"] += 1
            if "camera" not in self.causes:
                log.error("camera disconnected: %s", detail)
            self._set("camera", f"camera: {detail}")
            return self.backoff.next_delay()

    def invalid_frame(self, reason: str) -> None:
        """A frame could not be used (invalid input, depth, plane)."""
        with self._lock:
            self.counters[f"invalid:{reason}"] += 1
            self._bad()

    def deadline_miss(self, part_id: int) -> None:
        """A part's slot was faulted because no decision arrived by its deadline."""
        with self._lock:
            self.counters["deadline_miss"] += 1
            self._miss_run += 1
            self._good_run = 0
            if self._miss_run >= self.config.degrade_after:
                self._degrade(f"{self._miss_run} consecutive deadline misses (last part {part_id})")

    def part_on_time(self) -> None:
        """A part's decision reached its slot before the deadline (ends a run of misses)."""
        with self._lock:
            self._miss_run = 0

    def stage_error(self, stage: str, exc: BaseException, frame: int | None = None) -> None:
        """An exception caught at a stage boundary: logged with its traceback once per type, counted, rated."""
        with self._lock:
            key = f"{stage}:{type(exc).__name__}"
            self.counters[f"error:{key}"] += 1
            if key not in self._logged:
                self._logged.add(key)
                log.error("%s failed on frame %s: %s", stage, frame, exc, exc_info=exc)
            if self.breaker.record(self.clock.now_ns()):
                self._set("errors", f"errors: more than {self.config.error_limit} in {self.config.error_window_s:g} s")

    def inference_hung(self, detail: str) -> None:
        """The inference watchdog gave up on a call."""
        with self._lock:
            self.counters["inference_hang"] += 1
            log.error("inference hung: %s", detail)
            self._set("inference", f"inference: {detail}")

    def inference_ok(self) -> None:
        """An inference returned in time (clears an inference fault)."""
        with self._lock:
            self._clear("inference")

    def belt_stopped(self, stopped: bool) -> None:
        """The encoder says the belt stopped past its hold limit (or moves again)."""
        with self._lock:
            if stopped:
                self._set("belt", "belt: stopped longer than max_hold_s")
            else:
                self._clear("belt")

    def tick(self) -> None:
        """Periodic checks (actuator thread): camera stall, error rate falling back under its limit."""
        with self._lock:
            now = self.clock.now_ns()
            if self.detect_stall and self.state is not State.STOPPING and "camera" not in self.causes:
                silent_ms = (now - self._last_frame_ns) / 1e6
                if silent_ms >= self.config.stall_fault_ms:
                    self.counters["camera_stall"] += 1
                    log.error("camera stalled: no frame for %.0f ms", silent_ms)
                    self._set("camera", f"camera: no frame for {silent_ms:.0f} ms")
            if "errors" in self.causes and not self.breaker.over(now):
                self._clear("errors")

    def healthy(self) -> None:
        """The loop's healthy path: a frame inspected good. Beats, pings systemd, may declare READY."""
        with self._lock:
            self._bad_run = 0
            self._good_run += 1
            if self._degraded and self._good_run >= self.config.recover_after:
                self._degraded = False
            if self.state is State.STARTING and {"bundle", "camera"} <= self.verified:
                self._update("first good inspection")
            elif self.state is State.DEGRADED:
                self._update(f"{self._good_run} good frames")
            if self.state not in (State.RUNNING, State.DEGRADED):
                return
            if not self.ready_sent and self.notifier is not None:
                self.notifier.ready(f"{self.state.value}: inspecting")
            self.ready_sent = True
            self.status.beat()
            self._ping()

    def stopping(self, reason: str) -> None:
        """The run is ending: STOPPING=1 and the gate safe first, before anything that could hang."""
        with self._lock:
            self._enter(State.STOPPING, reason)

    # --- state ---------------------------------------------------------------------------------------

    def _ping(self) -> None:
        interval = self.notifier.watchdog_interval_ns if self.notifier is not None else None
        if interval is None:
            return
        now = self.clock.now_ns()
        # A quarter of the interval keeps pings at <= half the interval even with a frame period of jitter.
        if self._last_ping_ns is None or now - self._last_ping_ns >= interval // 4:
            self.notifier.watchdog()  # type: ignore[union-attr]
            self._last_ping_ns = now

    def _bad(self) -> None:
        self._bad_run += 1
        self._good_run = 0
        if self._bad_run >= self.config.degrade_after:
            self._degrade(f"{self._bad_run} consecutive timeouts / invalid frames")

    def _degrade(self, why: str) -> None:
        self._degraded = True
        if self.state is State.RUNNING:
            self._enter(State.DEGRADED, why)

    def _set(self, cause: str, detail: str) -> None:
        new = cause not in self.causes
        self.causes[cause] = detail
        if new or self.state is not State.FAULT:
            self._update(detail)

    def _clear(self, cause: str) -> None:
        if self.causes.pop(cause, None) is not None:
            self._degraded = True  # back through DEGRADED: recover_after good frames before RUNNING
            self._good_run = 0
            self._update(f"{cause} recovered")

    def _update(self, why: str) -> None:
        if self.state is State.STOPPING:
            return
        if self.causes:
            target = State.FAULT
        elif self.state is State.STARTING and not ({"bundle", "camera"} <= self.verified and self._good_run):
            target = State.STARTING
        else:
            target = State.DEGRADED if self._degraded else State.RUNNING
        if target is not self.state or target is State.FAULT:
            self._enter(target, why)

    def _enter(self, state: State, why: str) -> None:
        previous, self.state = self.state, state
        text = f"{state.value}: {'; '.join(self.causes.values())}" if state is State.FAULT else f"{state.value}: {why}"
        if previous is not state:
            self.transitions.append((self.clock.now_ns(), state, why))
            log.warning("supervisor %s -> %s (%s)", previous.value, state.value, why)
        if self.gate is not None:
            if state in (State.FAULT, State.STOPPING, State.STARTING):
                self.gate.hold_safe(text)
            else:
                self.gate.release_safe()
        self.status.show(ready=state in (State.RUNNING, State.DEGRADED), fault=state is State.FAULT)
        if self.notifier is not None:
            if state is State.STOPPING:
                self.notifier.stopping(text)
            else:
                self.notifier.status(text)
