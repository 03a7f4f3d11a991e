"""The inspection loop: capture -> bounded queue -> observe -> track parts -> score -> decide -> reject pulse.

Three threads:

* capture: reads the source into a bounded queue. When the queue is full the *oldest* frame is
  dropped (the line never waits for the inspector; a fresh frame beats a stale one), unless the
  run is lossless (replay as fast as possible), where capture waits instead. Every lost frame is
  counted by reason: ``queue_full``, ``timeout`` (no frame within the read timeout),
  ``duplicate`` (same frame number again), ``gap`` (frame numbers skipped by the source),
  ``camera_error`` (a disconnect, retried with capped backoff) and ``stopped`` (still queued
  when the run ended).
* inspection (the caller's thread): observes every frame, feeds the part tracker, and scores
  only each part's best frame once the part has left; every tracked part gets one decision.
* actuator: drives the reject scheduler so pulses fire at capture time + delay regardless of
  how busy inspection is.

The run stops on max parts, max frames, duration, end of the source, a camera error or
:meth:`InspectionRuntime.request_stop` (wired to SIGINT/SIGTERM by :func:`stop_on_signals`), and
always ends with the tracker flushed, pulses in flight drained and the output back at its safe level.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.decision import Decision, FaultReason, fault
from edge_ad.errors import CameraDisconnected, CameraError, ConfigError
from edge_ad.frame import Frame
from edge_ad.frame_queue import FrameQueue
from edge_ad.line.outputs import DigitalOutput
from edge_ad.line.reject import RejectScheduler, RejectTiming
from edge_ad.part_tracker import ObservationLike, PartTracker, TrackedPart, TrackerConfig
from edge_ad.run_summary import (
    STAGE_END_TO_END,
    STAGE_INFERENCE,
    STAGE_PREPROCESS,
    RunRecorder,
    RunSummary,
    part_record,
)
from edge_ad.sources.base import FrameSource, SourceExhausted

# How often the inspection thread re-checks stop conditions while no frame arrives.
_IDLE_POLL_S = 0.05
# Longest the actuator thread sleeps between edges (bounds its reaction to a new pulse).
_ACTUATOR_TICK_S = 0.002
_BACKOFF_MAX_S = 1.0


class InspectionLike(Protocol):
    """What the loop reads of :class:`edge_ad.inspector.Inspection`."""

    decision: Decision
    timings_ms: Mapping[str, float]


class InspectorLike(Protocol):
    """What the loop needs of :class:`edge_ad.inspector.Inspector`."""

    def observe(self, frame: Frame) -> ObservationLike:
        """Per-frame geometry and preprocessing (never raises for a bad frame)."""
        ...

    def score(self, observation: Any) -> InspectionLike:
        """Model + decision for one observation (never raises: failures are FAULT_REJECT)."""
        ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Queue, stop conditions, tracking and reject timing of one run.

    ``lossless``: capture waits for room instead of dropping the oldest frame (replay at full
    speed, deterministic). ``drain_timeout_s``: how long the stop waits for reject pulses still
    in flight (None: delay + pulse + 1 s).
    """

    queue_size: int = 2
    read_timeout_s: float = 1.0
    lossless: bool = False
    max_parts: int | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reject: RejectTiming = field(default_factory=RejectTiming)
    drain_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ConfigError(f"runtime.queue_size: must be >= 1, got {self.queue_size}")
        if not self.read_timeout_s > 0:
            raise ConfigError(f"runtime.read_timeout_s: must be > 0, got {self.read_timeout_s}")
        for name in ("max_parts", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"runtime.{name}: must be >= 1, got {value}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"runtime.duration_s: must be > 0, got {self.duration_s}")


class InspectionRuntime:
    """One run of the loop over a started source; see the module docstring."""

    def __init__(
        self,
        source: FrameSource,
        inspector: InspectorLike,
        output: DigitalOutput,
        config: RuntimeConfig = RuntimeConfig(),
        clock: Clock | None = None,
    ) -> None:
        self.source = source
        self.inspector = inspector
        self.config = config
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.output = output
        self.scheduler = RejectScheduler(output, self.clock, config.reject)
        self.tracker = PartTracker(config.tracker)
        self.queue = FrameQueue(config.queue_size, config.lossless)
        self.recorder = RunRecorder(source.info().name)
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._capture_error: CameraError | None = None
        self._actuator_stop = threading.Event()

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the loop to stop after the current frame (thread- and signal-safe)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def run(self) -> RunSummary:
        """Run until a stop condition; returns the summary (a fatal camera error stops it with ``error`` set)."""
        started = self.clock.now_ns()
        capture = threading.Thread(target=self._capture_loop, name="edge-ad-capture", daemon=True)
        actuator = threading.Thread(target=self._actuator_loop, name="edge-ad-actuator", daemon=True)
        actuator.start()
        capture.start()
        try:
            reason = self._inspect_loop(started)
        finally:
            self._stop.set()
            self.queue.close()  # releases a capture thread waiting for room (lossless mode)
            for part in self.tracker.flush():
                self._decide(part)
            capture.join(timeout=self.config.read_timeout_s + 2.0)
            # Frames still queued when the run stopped were captured but never inspected.
            self.recorder.drop("stopped", self.queue.clear())
            self._drain()
            self._actuator_stop.set()
            actuator.join(timeout=1.0)
            self.output.close()
        duration_s = (self.clock.now_ns() - started) / 1e9
        pulses = {
            "scheduled": self.scheduler.scheduled,
            "fired": self.scheduler.fired,
            "late": self.scheduler.late,
            "max_lateness_us": self.scheduler.max_late_ns // 1000,
            "abandoned": self.scheduler.pending,
        }
        # A real part last seen within the debounce window before the stop may still have been
        # entering or leaving: it is not counted as missed.
        in_view = self.config.tracker.enter_frames + self.config.tracker.leave_frames
        error = str(self._capture_error) if self._capture_error is not None else None
        return self.recorder.finish(reason, duration_s, pulses, in_view, error)

    def _inspect_loop(self, started_ns: int) -> str:
        config = self.config
        frames = 0
        while True:
            if self._stop.is_set():
                return self._stop_reason or "stopped"
            if config.duration_s is not None and self.clock.now_ns() - started_ns >= config.duration_s * 1e9:
                return "duration"
            item = self.queue.get(_IDLE_POLL_S)
            if item is None:
                continue  # nothing yet; the capture thread counts read timeouts
            if item is FrameQueue.END:
                return "camera_error" if self._capture_error is not None else (self._stop_reason or "source_exhausted")
            frame: Frame = item  # type: ignore[assignment]
            observation = self.inspector.observe(frame)
            self.recorder.stage(STAGE_PREPROCESS, round(getattr(observation, "preprocess_ms", 0.0) * 1e6))
            self.recorder.inspected(frame.frame_number, frame.truth)
            frames += 1
            for part in self.tracker.update(observation):
                self._decide(part)
            if config.max_parts is not None and self.recorder.parts >= config.max_parts:
                return "max_parts"
            if config.max_frames is not None and frames >= config.max_frames:
                return "max_frames"

    def _decide(self, part: TrackedPart) -> Decision:
        """Score the part's best frame (or fault it) and schedule its pulse: exactly once per part."""
        if part.best is None:
            reason = part.main_fault or FaultReason.NO_FRAME.value
            try:
                decision = fault(FaultReason(reason), f"no usable frame among {part.frames} ({dict(part.faults)})")
            except ValueError:  # a reason the decision module does not know: keep it verbatim
                decision = fault(FaultReason.INVALID_DEPTH, f"{reason}: no usable frame among {part.frames}")
        else:
            inspection = self.inspector.score(part.best)
            decision = inspection.decision
            if "inference" in inspection.timings_ms:
                self.recorder.stage(STAGE_INFERENCE, round(inspection.timings_ms["inference"] * 1e6))
        decided = self.clock.now_ns()
        self.recorder.stage(STAGE_END_TO_END, decided - part.capture_ns)
        self.scheduler.schedule(part.part_id, part.capture_ns, decision)
        self.recorder.part(part_record(part, decision, decided))
        return decision

    def _capture_loop(self) -> None:
        last_number: int | None = None
        backoff_s = 0.05
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read(self.config.read_timeout_s)
                except SourceExhausted:
                    return
                except CameraDisconnected:
                    # The camera may come back: count it, back off (capped) and keep reading.
                    self.recorder.drop("camera_error")
                    self._stop.wait(backoff_s)
                    backoff_s = min(2 * backoff_s, _BACKOFF_MAX_S)
                    continue
                except CameraError as exc:
                    self._capture_error = exc
                    return
                if frame is None:
                    self.recorder.drop("timeout")
                    continue
                backoff_s = 0.05
                if last_number is not None:
                    if frame.frame_number == last_number:
                        self.recorder.drop("duplicate")
                        continue
                    if frame.frame_number > last_number + 1:
                        self.recorder.drop("gap", frame.frame_number - last_number - 1)
                last_number = frame.frame_number
                self.recorder.captured()
                if self.queue.put(frame) is not None:
                    self.recorder.drop("queue_full")
        finally:
            self.queue.close()

    def _actuator_loop(self) -> None:
        while not self._actuator_stop.is_set():
            self.scheduler.poll()
            self._actuator_stop.wait(self._until_next_edge_s())

    def _until_next_edge_s(self) -> float:
        next_edge = self.scheduler.next_edge_ns()
        if next_edge is None:
            return _ACTUATOR_TICK_S
        return min(max((next_edge - self.clock.now_ns()) / 1e9, 0.0), _ACTUATOR_TICK_S)

    def _drain(self) -> None:
        """Let pulses in flight fire: their parts are still on the belt heading for the actuator."""
        timing = self.config.reject
        limit = self.config.drain_timeout_s
        if limit is None:
            limit = timing.delay_s + timing.pulse_s + 1.0
        waited = 0.0
        while self.scheduler.pending and waited < limit:
            self._actuator_stop.wait(_ACTUATOR_TICK_S)
            waited += _ACTUATOR_TICK_S


def run_inspection(
    source: FrameSource,
    inspector: InspectorLike,
    output: DigitalOutput,
    config: RuntimeConfig = RuntimeConfig(),
    clock: Clock | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Start ``source``, run the loop until a stop condition, stop the source; returns the summary."""
    with source:
        runtime = InspectionRuntime(source, inspector, output, config, clock)
        with stop_on_signals(runtime) if handle_signals else contextlib.nullcontext():
            return runtime.run()


@contextlib.contextmanager
def stop_on_signals(runtime: InspectionRuntime) -> Iterator[None]:
    """Route SIGINT and SIGTERM to a clean :meth:`InspectionRuntime.request_stop` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        runtime.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
