"""The inspection loop: capture -> bounded queue -> observe -> track parts -> score -> decide -> reject slot.

Three threads, each a loop over one step (a test on a FakeClock calls :meth:`InspectionRuntime.step`):

* capture (:class:`edge_ad.capture_loop.CaptureLoop`): reads the source into a bounded queue; the
  *oldest* frame is dropped when it is full (the line never waits), unless the run is lossless (replay
  as fast as possible). Lost frames are counted by reason: ``queue_full``, ``timeout``, ``duplicate``,
  ``gap``, ``camera_error`` (a disconnect: reported, backed off, retried) and ``stopped``.
* inspection (the caller's thread): observes every frame, feeds the part tracker and scores each
  part's best frame once it has left, through the inference watchdog (a hung backend is given up
  after ``infer_timeout_ms``). Every tracked part gets exactly one decision.
* actuator: polls the reject scheduler (windows at trigger + delay; a part without a decision by its
  deadline becomes FAULT_REJECT) and ticks the supervisor (camera stall -> gate safe).

Supervision (``supervise``, default: on unless lossless): reject slots are reserved when a part enters
the view and enforced at their deadline, the camera stall rule applies, and the gate is held safe in
STARTING, FAULT and STOPPING. A lossless replay has no real belt, so none of that applies there.
With a trigger input (``LineIO.trigger``) the slots are the trigger edges' instead, and tracked parts are
matched to them (:mod:`edge_ad.line.part_slots`): every trigger gets exactly one decision.

The run stops on max parts, max frames, duration, end of the source, a fatal camera error or
:meth:`InspectionRuntime.request_stop` (SIGINT/SIGTERM via :func:`stop_on_signals`), and always ends with
the gate safe first, the tracker flushed, windows in flight drained and every output released.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_ad.capture_loop import CaptureLoop
from edge_ad.clock import Clock, MonotonicClock
from edge_ad.decision import Decision, FaultReason, fault
from edge_ad.frame import Frame
from edge_ad.frame_queue import FrameQueue
from edge_ad.line.outputs import DigitalOutput
from edge_ad.line.part_slots import PartSlots, Unseen, as_slot
from edge_ad.line.reject import RejectScheduler
from edge_ad.part_tracker import ObservationLike, PartTracker, TrackedPart
from edge_ad.run_summary import (
    STAGE_END_TO_END,
    STAGE_INFERENCE,
    STAGE_PREPROCESS,
    RunRecorder,
    RunSummary,
    part_record,
)
from edge_ad.runtime_config import FailedObservation, InspectionLike, InspectorLike, RuntimeConfig
from edge_ad.runtime_setup import LineIO, bounded_stop, stop_on_signals
from edge_ad.sources.base import FrameSource
from edge_ad.supervisor import Supervisor
from edge_ad.watchdog import STAGE_ERRORS, InferenceTimeout, InferenceWatchdog

if TYPE_CHECKING:
    from edge_ad.monitor import Monitor

_IDLE_POLL_S = 0.05  # how often inspection re-checks stop conditions while no frame arrives
_ACTUATOR_TICK_S = 0.002  # longest the actuator sleeps between edges (its reaction time)
_DEFAULT_CONFIG = RuntimeConfig()
__all__ = ["InspectionLike", "InspectionRuntime", "InspectorLike", "RuntimeConfig", "run_inspection", "stop_on_signals"]


class InspectionRuntime:
    """One run of the loop over a started source; see the module docstring."""

    def __init__(
        self,
        source: FrameSource,
        inspector: InspectorLike,
        output: DigitalOutput | LineIO,
        config: RuntimeConfig = _DEFAULT_CONFIG,
        clock: Clock | None = None,
        sleep: Callable[[float], object] | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        """``sleep``: how backoff and a stepped drain let time pass (default: real, interruptible waits).

        ``monitor`` (metrics, reject archive, fault log) is told of every frame, drop, fault and
        decision; it never blocks the loop (its archive and logs write from their own threads).
        """
        self.source, self.inspector, self.config = source, inspector, config
        self.monitor = monitor
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.line = output if isinstance(output, LineIO) else LineIO(output)
        self.output = self.line.reject
        supervised = config.supervised
        self.scheduler = RejectScheduler(
            self.output, self.clock, config.reject, self.line.polarity, self.line.encoder, self.line.encoder_timing
        )
        self.supervisor = Supervisor(
            self.clock, config.supervisor, gate=self.scheduler if supervised else None,
            status=self.line.status_lines(self.clock, config.supervisor.heartbeat_period_s),
            notifier=self.line.notifier, detect_stall=supervised,
        )
        self.supervisor.mark_verified("bundle")  # an inspector exists only for a verified bundle
        self.watchdog = InferenceWatchdog(config.supervisor.infer_timeout_ms / 1000)
        self.tracker = PartTracker(config.tracker)
        self.queue = FrameQueue(config.queue_size, config.lossless)
        self.recorder = RunRecorder(source.info().name, on_drop=monitor.on_drop if monitor is not None else None)
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._sleep = sleep
        self.capture = CaptureLoop(source, self.queue, self.recorder, self.supervisor, config.read_timeout_s,
                                   sleep or self._stop.wait, self.line.encoder)
        self.slots = PartSlots(self.scheduler, supervised, self.capture.count_at, self.line.trigger,
                               self.line.trigger_window, config.tracker.enter_frames)
        self.supervisor.mark_verified("camera")  # the source started with its profile (checked by the source)
        self._actuator_stop = threading.Event()
        self._started_ns = self.clock.now_ns()
        self._frames = 0

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the loop to stop after the current frame (thread- and signal-safe)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def run(self) -> RunSummary:
        """Run the three threads until a stop condition; returns the summary."""
        def capture_loop() -> None:
            try:
                while not self._stop.is_set() and self.capture.step():
                    pass
            finally:
                self.queue.close()

        capture = threading.Thread(target=capture_loop, name="edge-ad-capture", daemon=True)
        actuator = threading.Thread(target=self._actuator_loop, name="edge-ad-actuator", daemon=True)
        actuator.start()
        capture.start()
        reason = "stopped"
        try:
            while (reason := self.inspect_once(_IDLE_POLL_S)) is None:  # type: ignore[assignment]
                pass
        finally:
            self._stop.set()
            summary = self.finish(reason, capture, actuator)
        return summary

    def step(self) -> str | None:
        """One capture read, one inspection (no waiting) and one actuator poll; the stop reason once done."""
        if not self._stop.is_set() and not self.capture.step():
            self.queue.close()
        reason = self.inspect_once(0.0)
        self.actuate_once()
        return reason

    def inspect_once(self, timeout_s: float) -> str | None:
        """Inspect the next queued frame (waiting up to ``timeout_s``); the stop reason when the run must end."""
        config = self.config
        if self._stop.is_set():
            return self._stop_reason or "stopped"
        if config.duration_s is not None and self.clock.now_ns() - self._started_ns >= config.duration_s * 1e9:
            return "duration"
        item = self.queue.get(timeout_s)
        if item is None:
            return None  # nothing yet; the capture side counts read timeouts
        if item is FrameQueue.END:
            return "camera_error" if self.capture.error is not None else (self._stop_reason or "source_exhausted")
        frame: Frame = item  # type: ignore[assignment]
        observation = self._observe(frame)
        self.recorder.stage(STAGE_PREPROCESS, round(getattr(observation, "preprocess_ms", 0.0) * 1e6))
        self.recorder.inspected(frame.frame_number, frame.truth)
        self._frames += 1
        closed = self.tracker.update(observation)
        unseen = self.slots.after_update(self.tracker.in_part, frame, closed)
        for part in closed:
            self._decide(part)
        self._record_unseen(unseen)
        if observation.fault is None:
            self.supervisor.healthy()
        if config.max_parts is not None and self.recorder.parts >= config.max_parts:
            return "max_parts"
        if config.max_frames is not None and self._frames >= config.max_frames:
            return "max_frames"
        return None

    def actuate_once(self) -> None:
        """Take trigger edges, poll the scheduler, report missed deadlines and a stopped belt, tick the supervisor."""
        self.slots.poll_triggers()
        self.scheduler.poll()
        for part_id in self.scheduler.take_missed():
            self.supervisor.deadline_miss(part_id)
        if self.line.encoder is not None:
            self.supervisor.belt_stopped(self.scheduler.belt_stop_exceeded)
        self.supervisor.tick()

    def finish(self, reason: str, capture: threading.Thread | None = None,
               actuator: threading.Thread | None = None) -> RunSummary:
        """Gate safe first, then flush, drain and release; returns the summary."""
        self._stop.set()
        self.supervisor.stopping(reason)
        self.queue.close()  # releases a capture thread waiting for room (lossless mode)
        for part in self.tracker.flush():
            self.slots.after_update(False, None, [part])
            self._decide(part)
        self._record_unseen(self.slots.end())
        if capture is not None:
            capture.join(timeout=self.config.read_timeout_s + 2.0)  # a read hung in the driver is abandoned
        self.recorder.drop("stopped", self.queue.clear())  # captured but never inspected
        self._drain(threaded=actuator is not None)
        self._actuator_stop.set()
        if actuator is not None:
            actuator.join(timeout=1.0)
        self._record_unseen(self.slots.end())  # edges during the drain: their parts were never inspected
        self.watchdog.close()
        self.line.close()
        sched = self.scheduler
        pulses = {"scheduled": sched.scheduled, "fired": sched.fired, "late": sched.late,
                  "max_lateness_us": sched.max_late_ns // 1000, "abandoned": sched.pending_rejects,
                  "deadline_misses": sched.deadline_misses, **self.slots.trigger_counts()}
        # A real part last seen within the debounce window before the stop may still have been entering.
        in_view = self.config.tracker.enter_frames + self.config.tracker.leave_frames
        error = str(self.capture.error) if self.capture.error is not None else None
        duration_s = (self.clock.now_ns() - self._started_ns) / 1e9
        return self.recorder.finish(reason, duration_s, pulses, in_view, error)

    def _observe(self, frame: Frame) -> ObservationLike:
        try:
            observation = self.inspector.observe(frame)
        except STAGE_ERRORS as exc:  # a bug or driver error in preprocessing: this frame only
            self.supervisor.stage_error("observe", exc, frame.frame_number)
            self._fault("stage_error", f"observe frame {frame.frame_number}: {type(exc).__name__}: {exc}")
            return FailedObservation(frame)
        if observation.fault is not None:
            self.supervisor.invalid_frame(str(getattr(observation.fault, "value", observation.fault)))
        if self.monitor is not None:
            self.monitor.on_frame(frame, observation)
        return observation

    def _fault(self, reason: str, detail: str) -> None:
        if self.monitor is not None:
            self.monitor.on_fault(reason, detail)

    def _decide(self, part: TrackedPart) -> Decision | None:
        """Score the part's best frame (or fault it) and give its slot the decision: exactly once per part.

        Trigger mode: a part that matched no trigger is a phantom (dirt, a hand): logged, never scored.
        """
        slot = self.slots.claim_slot(part)
        if slot is None:
            self._fault("phantom_part", f"tracked part {part.part_id} (frames {part.first_frame}-{part.last_frame}) "
                        "matched no trigger: no pulse of its own")
            return None
        decision = self.slots.already_faulted(slot)  # its deadline passed while it was still in view
        inspection: InspectionLike | None = None
        if decision is None:
            if part.best is None:
                decision = self._no_usable_frame(part)
            else:
                decision, inspection = self._score(part)
            applied = self.slots.decide(slot, part, decision)
            if applied is decision:
                self.supervisor.part_on_time()
            decision = applied
        self._record(as_slot(part, slot), decision, inspection)
        return decision

    def _record(self, part: TrackedPart, decision: Decision, inspection: InspectionLike | None) -> None:
        decided = self.clock.now_ns()
        if part.frames:  # an unseen trigger (no frame) has no end-to-end latency
            self.recorder.stage(STAGE_END_TO_END, decided - part.capture_ns)
        self.recorder.part(part_record(part, decision, decided))
        if self.monitor is not None:
            # The inspection carries the heatmap for the archive; a fault without one is archived bare.
            scored = inspection if inspection is not None and inspection.decision is decision else None
            self.monitor.on_decision(scored if scored is not None else decision, part)

    def _record_unseen(self, unseen: list[Unseen]) -> None:
        for part, decision in unseen:  # triggers no tracked part matched: already FAULT_REJECT in their slots
            self._fault("unseen_trigger", decision.detail)
            self._record(part, decision, None)

    @staticmethod
    def _no_usable_frame(part: TrackedPart) -> Decision:
        reason = part.main_fault or FaultReason.NO_FRAME.value
        try:
            return fault(FaultReason(reason), f"no usable frame among {part.frames} ({dict(part.faults)})")
        except ValueError:  # a reason the decision module does not know: keep it verbatim
            return fault(FaultReason.INVALID_DEPTH, f"{reason}: no usable frame among {part.frames}")

    def _score(self, part: TrackedPart) -> tuple[Decision, InspectionLike | None]:
        frame = part.best.frame.frame_number  # type: ignore[union-attr]
        try:
            inspection = self.watchdog.call(self.inspector.score, part.best)
        except InferenceTimeout as exc:
            self.supervisor.inference_hung(str(exc))
            self._fault("inference_hung", f"frame {frame}: {exc}")
            return fault(FaultReason.DEADLINE_MISS, f"frame {frame}: {exc}"), None
        except STAGE_ERRORS as exc:  # the stage boundary: this part is FAULT_REJECT, the loop lives on
            self.supervisor.stage_error("inference", exc, frame)
            self._fault("inference_error", f"frame {frame}: {type(exc).__name__}: {exc}")
            return fault(FaultReason.INFERENCE_ERROR, f"frame {frame}: {type(exc).__name__}: {exc}"), None
        self.supervisor.inference_ok()
        if "inference" in inspection.timings_ms:
            self.recorder.stage(STAGE_INFERENCE, round(inspection.timings_ms["inference"] * 1e6))
        return inspection.decision, inspection

    def _actuator_loop(self) -> None:
        while not self._actuator_stop.is_set():
            self.actuate_once()
            next_edge = self.scheduler.next_edge_ns()
            wait = _ACTUATOR_TICK_S if next_edge is None else (next_edge - self.clock.now_ns()) / 1e9
            self._actuator_stop.wait(min(max(wait, 0.0), _ACTUATOR_TICK_S))

    def _drain(self, threaded: bool) -> None:
        """Let windows in flight open and close: their parts are still on the belt heading for the gate."""
        timing = self.config.reject
        limit = self.config.drain_timeout_s
        if limit is None:
            limit = timing.delay_s + timing.pulse_s + 1.0
        waited = 0.0
        while self.scheduler.pending and waited < limit:
            if threaded or self._sleep is None:
                if not threaded:
                    self.actuate_once()
                self._actuator_stop.wait(_ACTUATOR_TICK_S)
            else:
                self._sleep(_ACTUATOR_TICK_S)  # stepped on a fake clock: the sleep polls the actuator
            waited += _ACTUATOR_TICK_S


def run_inspection(
    source: FrameSource,
    inspector: InspectorLike,
    output: DigitalOutput | LineIO,
    config: RuntimeConfig = _DEFAULT_CONFIG,
    clock: Clock | None = None,
    handle_signals: bool = False,
    monitor: Monitor | None = None,
) -> RunSummary:
    """Start ``source``, run the loop until a stop condition, stop the source within a bound; the summary."""
    source.start()
    try:
        runtime = InspectionRuntime(source, inspector, output, config, clock, monitor=monitor)
        with stop_on_signals(runtime) if handle_signals else contextlib.nullcontext():
            return runtime.run()
    finally:
        bounded_stop(source, config.supervisor.stop_timeout_s)
