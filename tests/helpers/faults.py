"""Fault-injection harness: FaultPlan-driven sources, misbehaving backends, a fake encoder, file-backed GPIO
and a systemd notify listener (reliability test plan, B9). No camera, no GPU, no torch.

* :class:`FaultPlan` / :class:`FaultPlanSource`: a small conveyor line (a part every few frames, ground
  truth in ``frame.truth``) with stalls, disconnects, timeouts, duplicates, gaps, counter rollover, missing
  streams, depth holes / NaN, slow frames, a fatal error, a wrong profile and a hanging ``stop``. Time
  passes through ``sleep`` (``FakeClock.advance`` on a fake clock), so a run is deterministic.
* :class:`StubBackend` plus the wrappers :class:`SlowBackend`, :class:`HangingBackend`,
  :class:`RaisingBackend`: the InferenceBackend protocol; wrap a real ONNX Runtime backend or the stub.
* :class:`BackendInspector`: presence from ground truth, score from the backend (so backend faults reach
  the decision the way they do in :class:`edge_ad.inspector.Inspector`).
* :class:`FakeEncoder` (programmable speed profile), :class:`MockGpio` (reads the file-backed sim output,
  with JetPack 6 "line reverts when the owner dies" semantics), :class:`NotifySocketListener`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends.base import TensorSpec
from edge_ad.clock import Clock, FakeClock
from edge_ad.decision import Decision, FaultReason, Verdict, fault
from edge_ad.errors import CameraDisconnected, CameraError, InferenceError
from edge_ad.frame import Frame, Intrinsics
from edge_ad.geometry import Presence
from edge_ad.line.outputs import LineRecord, read_line_file
from edge_ad.sources.base import SourceBase, SourceExhausted, SourceInfo

MS = 1_000_000
ROLLOVER = 2**32


# --- fault plan and source -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected fault, starting at delivery index ``at`` (the ``at``-th frame the source would deliver).

    kinds: ``stall`` (no frame for ``duration_s``: reads time out), ``disconnect`` (reads raise
    CameraDisconnected for ``duration_s``), ``duplicate`` (frame delivered twice), ``gap`` (``count``
    frame numbers skipped), ``rollover`` (frame numbers wrap at 2**32 here), ``missing_color`` /
    ``missing_depth`` (that stream is None), ``depth_holes`` (``value`` = share of zero depth pixels),
    ``depth_nan`` (NaN depth), ``slow`` (frame late by ``duration_s``), ``fatal`` (CameraError).
    ``count``: how many consecutive frames the per-frame kinds affect.
    """

    kind: str
    at: int
    duration_s: float = 0.0
    count: int = 1
    value: float = 0.0

    def covers(self, index: int) -> bool:
        """True when delivery index ``index`` is affected by a per-frame fault."""
        return self.at <= index < self.at + self.count


@dataclass
class FaultPlan:
    """An ordered list of faults, built fluently: ``FaultPlan().stall(100, 2.0).duplicate(150)``."""

    faults: list[Fault] = field(default_factory=list)

    def add(self, kind: str, at: int, **kwargs: Any) -> FaultPlan:
        """Append a fault; returns self."""
        self.faults.append(Fault(kind, at, **kwargs))
        return self

    def stall(self, at: int, duration_s: float) -> FaultPlan:
        return self.add("stall", at, duration_s=duration_s)

    def disconnect(self, at: int, duration_s: float) -> FaultPlan:
        return self.add("disconnect", at, duration_s=duration_s)

    def duplicate(self, at: int) -> FaultPlan:
        return self.add("duplicate", at)

    def gap(self, at: int, skip: int) -> FaultPlan:
        return self.add("gap", at, count=skip)

    def rollover(self, at: int) -> FaultPlan:
        return self.add("rollover", at)

    def missing(self, stream: str, at: int, count: int = 1) -> FaultPlan:
        return self.add(f"missing_{stream}", at, count=count)

    def depth_holes(self, at: int, fraction: float, count: int = 1) -> FaultPlan:
        return self.add("depth_holes", at, value=fraction, count=count)

    def depth_nan(self, at: int, count: int = 1) -> FaultPlan:
        return self.add("depth_nan", at, count=count)

    def slow(self, at: int, duration_s: float, count: int = 1) -> FaultPlan:
        return self.add("slow", at, duration_s=duration_s, count=count)

    def fatal(self, at: int) -> FaultPlan:
        return self.add("fatal", at)

    def at(self, kind: str, index: int) -> Fault | None:
        """The fault of ``kind`` starting at (or, for per-frame kinds, covering) ``index``."""
        for item in self.faults:
            if item.kind == kind and (item.at == index or (kind not in _ONCE and item.covers(index))):
                return item
        return None


_ONCE = ("stall", "disconnect", "duplicate", "gap", "rollover", "fatal")


def line_truth(index: int, gap: int = 2, frames_per_part: int = 4, defect_every: int = 2) -> dict[str, Any]:
    """Ground truth of delivery index ``index`` on a line of ``gap`` empty frames then a part, repeated."""
    period = gap + frames_per_part
    part_id, offset = divmod(index, period)
    present = offset >= gap
    return {
        "part_id": part_id if present else None,
        "part_present": present,
        "defective": bool(present and part_id % defect_every == defect_every - 1),
    }


def small_frame(number: int, arrival_ns: int, truth: dict[str, Any], size: int = 8) -> Frame:
    """A tiny RGB-D frame (flat depth 0.5 m) carrying ``truth``."""
    depth = np.full((size, size), 0.5, np.float32)
    intrinsics = Intrinsics(size, size, 10.0, 10.0, size / 2, size / 2)
    return Frame(np.zeros((size, size, 3), np.uint8), depth, intrinsics, number, number * 33.3, arrival_ns, truth)


class FaultPlanSource(SourceBase):
    """A paced line (``fps``) of ``frames`` deliveries with :class:`FaultPlan` faults injected.

    ``sleep`` lets time pass (pass ``clock.advance_s``-style callables on a FakeClock: see
    :func:`fake_sleep`). ``frame_factory(index, frame_number, arrival_ns, truth)`` builds a frame
    (default :func:`small_frame`). ``stop_hangs_s``: ``stop`` blocks that long (librealsense #9184).
    ``actual_info``: what ``info`` reports (a wrong profile) when set.
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        clock: Clock,
        sleep: Callable[[float], None],
        frames: int | None = 60,
        fps: float = 30.0,
        frame_factory: Callable[[int, int, int, dict[str, Any]], Frame] | None = None,
        truth: Callable[[int], dict[str, Any]] = line_truth,
        stop_hangs_s: float = 0.0,
        actual_info: SourceInfo | None = None,
    ) -> None:
        self.plan = plan or FaultPlan()
        self.clock = clock
        self.sleep = sleep
        self.frames = frames
        self.period_ns = round(1e9 / fps)
        self.fps = fps
        self.frame_factory = frame_factory or (lambda i, n, t, truth: small_frame(n, t, truth))
        self.truth = truth
        self.stop_hangs_s = stop_hangs_s
        self.actual_info = actual_info
        self.index = 0  # next delivery index
        self.number = 0  # next frame number
        self.started = self.stopped = 0
        self.reads = 0
        self.disconnect_raises = 0
        self.disconnect_times: list[int] = []  # clock time of every read that raised CameraDisconnected
        self.stop_returned = threading.Event()
        self.delivered: list[int] = []  # delivery indexes handed out, in order
        self._due_ns: int | None = None
        self._current: int | None = None
        self._current_due_ns = 0
        self._disconnected_until_ns = 0
        self._fatal_pending = False
        self._pending_duplicate: Frame | None = None

    def info(self) -> SourceInfo:
        return self.actual_info or SourceInfo("faultplan", 8, 8, self.fps)

    def start(self) -> None:
        self.started += 1
        if self._due_ns is None:
            self._due_ns = self.clock.now_ns() + self.period_ns

    def stop(self) -> None:
        self.stopped += 1
        if self.stop_hangs_s:
            time.sleep(self.stop_hangs_s)
        self.stop_returned.set()

    def read(self, timeout_s: float) -> Frame | None:
        self.reads += 1
        if self._due_ns is None:
            self.start()
        if self._pending_duplicate is not None:
            frame, self._pending_duplicate = self._pending_duplicate, None
            return frame
        if self.frames is not None and self.index >= self.frames:
            raise SourceExhausted(f"fault-plan line ended after {self.frames} frames")
        index = self.index
        if self._current != index:
            self._begin(index)
        now = self.clock.now_ns()
        if now < self._disconnected_until_ns:
            self.disconnect_raises += 1
            self.disconnect_times.append(now)
            raise CameraDisconnected(f"faultplan serial FP-0001: unplugged before frame {index}")
        if self._fatal_pending:
            self._fatal_pending = False
            raise CameraError("faultplan: stream profile changed to 640x480@15 (asked 8x8@30)")
        if now < self._current_due_ns:
            self.sleep(min(timeout_s, (self._current_due_ns - now) / 1e9))
            if self.clock.now_ns() < self._current_due_ns:
                return None
        gap = self.plan.at("gap", index)
        if gap is not None:
            self.number += gap.count
        if self.plan.at("rollover", index) is not None:
            self.number = ROLLOVER - 1
        frame = self._make(index)
        self.index += 1
        self.number = (self.number + 1) % ROLLOVER
        self._due_ns = self.clock.now_ns() + self.period_ns
        self.delivered.append(index)
        if self.plan.at("duplicate", index) is not None:
            self._pending_duplicate = frame
        return frame

    def _begin(self, index: int) -> None:
        """Work out when delivery ``index`` is due and which faults come before it."""
        self._current = index
        now = self.clock.now_ns()
        due = max(self._due_ns or now, now)
        for kind in ("slow", "stall"):
            item = self.plan.at(kind, index)
            if item is not None:
                due += round(item.duration_s * 1e9)
        disconnect = self.plan.at("disconnect", index)
        if disconnect is not None:
            self._disconnected_until_ns = now + round(disconnect.duration_s * 1e9)
            due = max(due, self._disconnected_until_ns)
        self._fatal_pending = self.plan.at("fatal", index) is not None
        self._current_due_ns = due

    def _make(self, index: int) -> Frame:
        truth = self.truth(index)
        frame = self.frame_factory(index, self.number, self.clock.now_ns(), truth)
        color, depth = frame.color, frame.depth
        if self.plan.at("missing_color", index) is not None:
            color = None  # type: ignore[assignment]
        if self.plan.at("missing_depth", index) is not None:
            depth = None
        holes = self.plan.at("depth_holes", index)
        if holes is not None and depth is not None:
            depth = depth.copy()
            flat = depth.reshape(-1)
            flat[: round(holes.value * flat.size)] = 0.0
        if self.plan.at("depth_nan", index) is not None and depth is not None:
            depth = np.full_like(depth, np.nan)
        if color is frame.color and depth is frame.depth:
            return frame
        return Frame(color, depth, frame.intrinsics, frame.frame_number, frame.device_timestamp_ms, frame.arrival_ns,
                     frame.truth)


def fake_sleep(clock: FakeClock) -> Callable[[float], None]:
    """A ``sleep`` that advances ``clock`` instead of waiting."""
    return lambda seconds: clock.advance(max(0, round(seconds * 1e9)))


# --- backends --------------------------------------------------------------------------------------


class StubBackend:
    """A backend over an (1, 3, 8, 8) image returning a fixed ``score`` (and a flat anomaly map)."""

    def __init__(self, score: float = 0.1) -> None:
        self.score = score
        self.calls = 0
        self.closed = False

    def input_spec(self) -> list[TensorSpec]:
        return [TensorSpec("image", (1, 3, 8, 8), "float32")]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("anomaly_map", (1, 1, 1, 1), "float32"), TensorSpec("score", (1,), "float32")]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        score = np.float32(inputs["score_hint"][0]) if "score_hint" in inputs else np.float32(self.score)
        return {"anomaly_map": np.full((1, 1, 1, 1), score, np.float32), "score": np.array([score], np.float32)}

    def close(self) -> None:
        self.closed = True


class _Wrapper:
    """Delegates the backend protocol to ``inner`` and counts calls (1-based in ``calls``)."""

    def __init__(self, inner: Any | None = None) -> None:
        self.inner = inner if inner is not None else StubBackend()
        self.calls = 0

    def input_spec(self) -> list[TensorSpec]:
        return self.inner.input_spec()

    def output_spec(self) -> list[TensorSpec]:
        return self.inner.output_spec()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        self.before(self.calls)
        return self.inner.infer(inputs)

    def before(self, call: int) -> None:
        """Hook run before call number ``call`` reaches the inner backend."""

    def close(self) -> None:
        self.inner.close()


class SlowBackend(_Wrapper):
    """Takes ``delay_s`` (through ``sleep``: real or a FakeClock's) on every ``every``-th call."""

    def __init__(self, inner: Any | None = None, *, delay_s: float, every: int = 10,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.delay_s, self.every, self.sleep = delay_s, every, sleep
        self.slow_calls: list[int] = []

    def before(self, call: int) -> None:
        if call % self.every == 0:
            self.slow_calls.append(call)
            self.sleep(self.delay_s)


class HangingBackend(_Wrapper):
    """Never returns from call ``hang_from`` on (until :meth:`release`, so tests can clean up)."""

    def __init__(self, inner: Any | None = None, *, hang_from: int = 1, hang_count: int | None = None) -> None:
        super().__init__(inner)
        self.hang_from, self.hang_count = hang_from, hang_count
        self.released = threading.Event()
        self.hung = 0

    def before(self, call: int) -> None:
        last = None if self.hang_count is None else self.hang_from + self.hang_count - 1
        if call >= self.hang_from and (last is None or call <= last):
            self.hung += 1
            self.released.wait()

    def release(self) -> None:
        self.released.set()


class RaisingBackend(_Wrapper):
    """Raises ``exc_type(message)`` on the calls in ``on`` (an unexpected type by default, as a driver might)."""

    def __init__(self, inner: Any | None = None, *, on: set[int] | Callable[[int], bool],
                 exc_type: type[Exception] = RuntimeError) -> None:
        super().__init__(inner)
        self.on, self.exc_type = on, exc_type
        self.raised: list[int] = []

    def before(self, call: int) -> None:
        hit = self.on(call) if callable(self.on) else call in self.on
        if hit:
            self.raised.append(call)
            raise self.exc_type(f"injected failure on inference call {call}")


# --- inspector -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FakeObservation:
    frame: Frame
    presence: Presence | None
    fault: FaultReason | None = None
    preprocess_ms: float = 0.5


@dataclass(frozen=True)
class FakeInspection:
    decision: Decision
    timings_ms: dict[str, float]


class BackendInspector:
    """Presence from ``frame.truth``; the score from ``backend`` (defective parts score 2.0, good 0.1).

    A frame without colour or depth, or with non-finite / mostly-zero depth, is an invalid observation,
    as the real inspector would make it. ``InferenceError`` becomes FAULT_REJECT like in the real one;
    any other exception escapes, so the runtime's stage boundary is what is tested.
    """

    def __init__(self, backend: Any | None = None, threshold: float = 1.0) -> None:
        self.backend = backend if backend is not None else StubBackend()
        self.threshold = threshold
        self.observed: list[int] = []
        self.scored: list[int] = []
        self.arrivals: dict[int, int] = {}

    def observe(self, frame: Frame) -> FakeObservation:
        self.observed.append(frame.frame_number)
        self.arrivals.setdefault(frame.frame_number, frame.arrival_ns)
        depth = frame.depth
        if frame.color is None or depth is None:
            return FakeObservation(frame, None, FaultReason.INVALID_INPUT)
        valid = np.isfinite(depth) & (depth > 0)
        if valid.mean() < 0.5:
            return FakeObservation(frame, None, FaultReason.INVALID_DEPTH)
        present = frame.truth.get("part_id") is not None
        presence = Presence(present, 0.2 if present else 0.0, (2, 2, 6, 6) if present else None, False)
        return FakeObservation(frame, presence)

    def score(self, observation: FakeObservation) -> FakeInspection:
        self.scored.append(observation.frame.frame_number)
        if observation.fault is not None:
            return FakeInspection(fault(observation.fault), {"inference": 0.0})
        hint = 2.0 if observation.frame.truth.get("defective") else 0.1
        inputs = {"image": np.zeros((1, 3, 8, 8), np.float32), "score_hint": np.array([hint], np.float32)}
        try:
            outputs = self.backend.infer(inputs)
        except InferenceError as exc:
            return FakeInspection(fault(FaultReason.INFERENCE_ERROR, str(exc)), {"inference": 0.0})
        score = float(outputs["score"][0])
        verdict = Verdict.REJECT if score > self.threshold else Verdict.ACCEPT
        return FakeInspection(Decision(verdict, "fake", score, score), {"inference": 1.0})


# --- encoder, GPIO file, systemd socket ------------------------------------------------------------


class FakeEncoder:
    """Belt encoder counts from a speed profile on ``clock``: ``[(duration_s, counts_per_s), ...]``.

    After the last segment the belt keeps the last speed. Negative speeds model reverse jitter.
    """

    def __init__(self, clock: Clock, profile: list[tuple[float, float]], start_count: int = 0) -> None:
        self.clock = clock
        self.t0 = clock.now_ns()
        self.profile = profile
        self.start_count = start_count

    def count_at(self, t_ns: int) -> int:
        """The count at clock time ``t_ns``."""
        elapsed = (t_ns - self.t0) / 1e9
        total = 0.0
        speed = 0.0
        for duration, speed in self.profile:
            step = min(elapsed, duration)
            total += step * speed
            elapsed -= step
            if elapsed <= 0:
                break
        if elapsed > 0:
            total += elapsed * speed
        return self.start_count + int(np.floor(total))

    def count(self) -> int:
        return self.count_at(self.clock.now_ns())

    def time_of_count(self, count: int, step_ns: int = 100_000, limit_s: float = 60.0) -> int | None:
        """First clock time (searched forward in ``step_ns``) at which the count reaches ``count``."""
        t = self.t0
        while t - self.t0 <= limit_s * 1e9:
            if self.count_at(t) >= count:
                return t
            t += step_ns
        return None

    def close(self) -> None:
        pass


@dataclass
class MockGpio:
    """Reads a file-backed sim output (``SimOutput(path=...)``) like a logic analyser on the header pins.

    JetPack 6 semantics: while the owning process lives a line holds the last level it was driven to;
    once the owner is gone (killed, crashed) the line reverts to its default level.
    """

    path: Path

    def records(self) -> list[LineRecord]:
        return read_line_file(self.path)

    def edges(self, name: str) -> list[tuple[int, bool]]:
        """``(t_ns, level)`` edges of line ``name``."""
        return [(r.t_ns, r.level) for r in self.records() if r.name == name and r.kind == "edge"]

    def owner_pid(self, name: str) -> int | None:
        owners = [r.pid for r in self.records() if r.name == name and r.kind == "open"]
        return owners[-1] if owners else None

    def level(self, name: str) -> bool:
        """What the pin reads now: the last driven level while its owner lives, else the default."""
        records = [r for r in self.records() if r.name == name]
        if not records:
            return False
        opened = [r for r in records if r.kind == "open"]
        default = opened[-1].level if opened else False
        pid = opened[-1].pid if opened else None
        if pid is None or not pid_alive(pid) or records[-1].kind == "close":
            return default
        return records[-1].level


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (and is not a zombie we reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split()
        if len(status) > 2 and status[2] == "Z":
            return False
    return True


class NotifySocketListener:
    """A Unix datagram socket standing in for systemd's ``$NOTIFY_SOCKET``; stamps messages on ``clock``.

    ``address`` is a filesystem path, or an abstract name when it starts with ``@``. Call :meth:`poll`
    after each step of a FakeClock test (messages are stamped with the time they were read).
    """

    def __init__(self, address: str, clock: Clock) -> None:
        self.address = address
        self.clock = clock
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock.bind(bind_to)
        self.sock.setblocking(False)
        self.messages: list[tuple[int, str]] = []

    def poll(self) -> list[tuple[int, str]]:
        """Read every waiting datagram; returns the new ``(t_ns, line)`` entries (one per ``KEY=value`` line)."""
        new: list[tuple[int, str]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            now = self.clock.now_ns()
            new.extend((now, line) for line in data.decode().splitlines() if line)
        self.messages.extend(new)
        return new

    def wait_for(self, text: str, timeout_s: float = 5.0) -> bool:
        """Poll (real time) until a message equal to ``text`` arrived."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.poll()
            if any(message == text for _, message in self.messages):
                return True
            time.sleep(0.005)
        return False

    def times(self, text: str) -> list[int]:
        return [t for t, message in self.messages if message == text]

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def notify_env(address: str, watchdog_usec: int | None = None) -> Iterator[None]:
    """Set ``NOTIFY_SOCKET`` (and ``WATCHDOG_USEC``/``WATCHDOG_PID``) for the block."""
    saved = {key: os.environ.get(key) for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    os.environ["NOTIFY_SOCKET"] = address
    if watchdog_usec is not None:
        os.environ["WATCHDOG_USEC"] = str(watchdog_usec)
        os.environ["WATCHDOG_PID"] = str(os.getpid())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- single-threaded runtime on a fake clock -------------------------------------------------------


class StepHarness:
    """Runs an :class:`~edge_ad.runtime.InspectionRuntime` in one thread on a FakeClock.

    Time passes only through :meth:`sleep` (source reads, slow backends, backoff), in ticks of
    ``tick_ms``; after every tick the runtime's actuator step runs, as the actuator thread would, and
    the ``on_tick`` hooks are called (listeners, PLC sampling). Build the source with
    ``sleep=harness.sleep`` and the runtime with ``sleep=harness.sleep``, then :meth:`run`.
    """

    def __init__(self, clock: FakeClock, tick_ms: float = 1.0) -> None:
        self.clock = clock
        self.tick_ns = round(tick_ms * MS)
        self.runtime: Any = None
        self.on_tick: list[Callable[[], None]] = []
        self._lock = threading.RLock()

    def sleep(self, seconds: float) -> None:
        remaining = max(0, round(seconds * 1e9))
        while remaining > 0:
            step = min(self.tick_ns, remaining)
            with self._lock:
                self.clock.advance(step)
                if self.runtime is not None:
                    self.runtime.actuate_once()
                for hook in self.on_tick:
                    hook()
            remaining -= step

    def run(self, runtime: Any, max_steps: int = 200_000) -> Any:
        """Step until the runtime reports a stop reason (or ``max_steps``), then finish; the summary."""
        self.runtime = runtime
        reason = None
        for _ in range(max_steps):
            reason = runtime.step()
            if reason is not None:
                break
        return runtime.finish(reason or "max_steps")


@dataclass
class Line:
    """A runtime wired for fault tests, with everything a test inspects afterwards."""

    clock: FakeClock
    harness: StepHarness
    source: FaultPlanSource
    inspector: BackendInspector
    io: Any  # edge_ad.runtime_setup.LineIO
    runtime: Any  # edge_ad.runtime.InspectionRuntime

    @property
    def reject(self) -> Any:
        return self.io.reject

    def status(self, role: str) -> Any:
        return self.io.status[role]

    def run(self, max_steps: int = 200_000) -> Any:
        return self.harness.run(self.runtime, max_steps)


def build_line(
    plan: FaultPlan | None = None,
    *,
    frames: int = 60,
    backend: Any | None = None,
    polarity: str = "energize_to_reject",
    notifier: Any | None = None,
    encoder: Any | None = None,
    encoder_timing: Any | None = None,
    sim_file: Path | None = None,
    tick_ms: float = 1.0,
    clock: FakeClock | None = None,
    trigger: Any | None = None,
    trigger_window: Any | None = None,
    **config: Any,
) -> Line:
    """A supervised line at 30 fps on a FakeClock (0.1 s reads, 0.5 s reject delay, 20 ms windows).

    ``trigger`` / ``trigger_window``: a part trigger input (see :func:`build_triggered_line`).
    """
    from edge_ad.line.outputs import SimOutput
    from edge_ad.line.reject import Polarity, RejectTiming
    from edge_ad.part_tracker import TrackerConfig
    from edge_ad.runtime import InspectionRuntime, RuntimeConfig
    from edge_ad.runtime_setup import LineIO
    from edge_ad.supervisor import SupervisorConfig

    clock = clock or FakeClock(start_ns=1_000 * MS)
    harness = StepHarness(clock, tick_ms)
    source = FaultPlanSource(plan, clock=clock, sleep=harness.sleep, frames=frames)
    inspector = BackendInspector(backend)
    roles = ("ready", "fault", "line_stop", "heartbeat")
    io = LineIO(
        SimOutput(clock, sim_file, "reject"), Polarity(polarity),
        {role: SimOutput(clock, sim_file, role) for role in roles}, encoder, encoder_timing, notifier,
        trigger=trigger, trigger_window=trigger_window,
    )
    base: dict[str, Any] = {
        "read_timeout_s": 0.1,
        "supervise": True,
        "tracker": TrackerConfig(enter_frames=1, leave_frames=1),
        "reject": RejectTiming(delay_s=0.5, pulse_s=0.02),
        "supervisor": SupervisorConfig(stall_fault_ms=250, infer_timeout_ms=200, recover_after=5),
        "drain_timeout_s": 2.0,
    }
    runtime_config = RuntimeConfig(**(base | config))
    source.start()
    runtime = InspectionRuntime(source, inspector, io, runtime_config, clock, sleep=harness.sleep)
    harness.runtime = runtime
    return Line(clock, harness, source, inspector, io, runtime)


def check_each_part_once(summary: Any, runtime: Any, truth: bool = True) -> None:
    """Every part has exactly one decision, and the gate carries it out: none passes unchecked.

    Each tracked part has one record and one slot holding the same verdict; every rejecting slot's
    window opened; ground truth shows no real part missed, split or invented.
    """
    records = summary.part_records
    assert [r.part_id for r in records] == list(range(summary.parts))
    assert summary.parts == summary.accepted + summary.rejected + summary.fault_rejected
    for record in records:
        decision = runtime.scheduler.slot_decision(record.part_id)
        assert decision is not None, f"part {record.part_id} has no slot decision"
        assert decision.verdict.value == record.verdict, (record, decision)
    opened = {slot.part_id for slot in runtime.scheduler.history if slot.raised_ns is not None}
    rejecting = {r.part_id for r in records if r.verdict != "accept"}
    assert rejecting <= opened, f"reject slots never opened: {sorted(rejecting - opened)}"
    # truth=False where invalid frames legitimately make an extra (FAULT_REJECT) track.
    if truth and summary.truth is not None:
        assert (summary.truth.missed_parts, summary.truth.split_parts, summary.truth.phantom_parts) == (0, 0, 0)


def level_at(output: Any, t_ns: int) -> bool:
    """The level a SimOutput had at clock time ``t_ns`` (from its timeline)."""
    level = False
    for edge_t, edge_level in output.timeline:
        if edge_t > t_ns:
            break
        level = edge_level
    return level


# --- part trigger: a light barrier before the camera -----------------------------------------------


def lose_frames(plan: FaultPlan, at: int, count: int, fps: float = 30.0) -> FaultPlan:
    """The camera loses ``count`` frames before delivery ``at``: that long without a frame, and the numbers skip.

    Use with :func:`line_truth_after_loss` so the frames delivered after the loss show the line as it moved on.
    """
    return plan.slow(at, count / fps).gap(at, count)


def line_truth_after_loss(at: int, count: int, **line: Any) -> Callable[[int], dict[str, Any]]:
    """:func:`line_truth` by *line* index when deliveries from ``at`` on come ``count`` line frames later."""
    return lambda index: line_truth(index if index < at else index + count, **line)


class BarrierTrigger:
    """A light barrier ``lead_s`` before the camera: pulses ``trigger`` as each part of the line reaches it.

    Line frame ``j`` reaches the view at ``t0 + (j + 1) * period`` (the source's pacing), whether or not the
    camera delivers it, so a part lost in a frame gap still passed the barrier. Only parts wholly inside
    ``line_frames`` are announced; ``skip``: parts the barrier misses (phantom tests). ``parts``: the
    real part id of each trigger, in trigger order (= trigger id).
    """

    def __init__(self, trigger: Any, clock: FakeClock, truth: Callable[[int], dict[str, Any]], line_frames: int,
                 lead_s: float, fps: float = 30.0, skip: tuple[int, ...] = ()) -> None:
        self.trigger, self.clock = trigger, clock
        t0, period = clock.now_ns(), round(1e9 / fps)
        firsts: dict[int, int] = {}
        lasts: dict[int, int] = {}
        for j in range(line_frames + 1):  # one past the end: a part still there then is cut off
            part = truth(j)["part_id"]
            if part is not None:
                firsts.setdefault(part, j)
                lasts[part] = j
        wholly_inside = [p for p in sorted(firsts) if lasts[p] < line_frames and p not in skip]
        self.parts = wholly_inside
        self.times = [t0 + (firsts[p] + 1) * period - round(lead_s * 1e9) for p in wholly_inside]
        self.pulsed: list[int] = []

    def tick(self) -> None:
        """Pulse every edge due by now, stamped with its own time (a StepHarness on_tick hook)."""
        while len(self.pulsed) < len(self.times) and self.times[len(self.pulsed)] <= self.clock.now_ns():
            t = self.times[len(self.pulsed)]
            self.trigger.pulse(t)
            self.pulsed.append(t)


def build_triggered_line(
    plan: FaultPlan | None = None,
    *,
    frames: int = 60,
    lost: tuple[int, int] | None = None,
    lead_s: float = 0.02,
    window: tuple[float, float] = (0.0, 0.1),
    skip: tuple[int, ...] = (),
    **kwargs: Any,
) -> tuple[Line, BarrierTrigger]:
    """:func:`build_line` with a barrier trigger; parts of 3 frames after 3 empty ones; ``lost=(at, count)``."""
    from edge_ad.line.inputs import SimInput
    from edge_ad.line.trigger_match import TriggerWindow

    clock = kwargs.pop("clock", None) or FakeClock(start_ns=1_000 * MS)
    plan = plan or FaultPlan()
    at, count = lost if lost is not None else (frames, 0)
    if count:
        lose_frames(plan, at, count)
    trigger = SimInput(clock)
    line = build_line(plan, frames=frames, clock=clock, trigger=trigger, trigger_window=TriggerWindow(*window), **kwargs)
    truth = line_truth_after_loss(at, count, gap=3, frames_per_part=3)
    line.source.truth = truth
    barrier = BarrierTrigger(trigger, clock, lambda j: line_truth(j, gap=3, frames_per_part=3), frames + count,
                             lead_s, skip=skip)
    line.harness.on_tick.append(barrier.tick)
    return line, barrier


def check_each_trigger_once(summary: Any, runtime: Any, barrier: BarrierTrigger) -> dict[int, Any]:
    """Every trigger has exactly one record and one slot holding its verdict, and rejecting slots opened.

    Returns the records by trigger id. A record of a seen part shows the real part its trigger announced
    (no decision lands on another part's slot).
    """
    records = {r.part_id: r for r in summary.part_records}
    assert sorted(r.part_id for r in summary.part_records) == list(range(len(barrier.pulsed))), "one record per trigger"
    assert summary.pulses["triggers"] == len(barrier.pulsed) == summary.parts
    assert summary.parts == summary.accepted + summary.rejected + summary.fault_rejected
    for trigger_id, record in records.items():
        decision = runtime.scheduler.slot_decision(trigger_id)
        assert decision is not None and decision.verdict.value == record.verdict, (record, decision)
        if record.exit_reason != "unseen_trigger":
            assert record.truth_part_id == barrier.parts[trigger_id], record
    opened = {slot.part_id for slot in runtime.scheduler.history if slot.raised_ns is not None}
    rejecting = {r.part_id for r in summary.part_records if r.verdict != "accept"}
    assert rejecting <= opened, f"reject slots never opened: {sorted(rejecting - opened)}"
    return records
