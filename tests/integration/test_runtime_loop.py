"""The runtime loop: queue drop accounting, stop conditions, one decision per part, and the real
loop end to end (synthetic line or folder replay -> tiny ONNX bundle on ONNX Runtime -> sim output)."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_ad.clock import FakeClock, MonotonicClock
from edge_ad.decision import Decision, Verdict
from edge_ad.errors import CameraDisconnected, CameraError
from edge_ad.frame import Frame
from edge_ad.frame_queue import FrameQueue
from edge_ad.geometry import Presence
from edge_ad.inspector import Inspector
from edge_ad.line.outputs import SimOutput
from edge_ad.line.reject import RejectTiming
from edge_ad.part_tracker import TrackerConfig
from edge_ad.run_summary import RunSummary
from edge_ad.runtime import InspectionRuntime, RuntimeConfig, run_inspection
from edge_ad.sources import SourceBase, SourceExhausted, SourceInfo, open_source
from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config
from tests.helpers.datasets import make_mvtec3d
from tests.helpers.faults import FakeInspection, FakeObservation

# --- scripted source and fake inspector (no model) ------------------------------------------------

def small_frame(number: int, part_id: int | None) -> Frame:
    truth = {"part_id": part_id, "part_present": part_id is not None, "defective": bool(part_id and part_id % 2)}
    arrival = MonotonicClock().now_ns()
    return Frame(np.zeros((8, 8, 3), np.uint8), None, None, number, number * 33.0, arrival, truth)


class ScriptedSource(SourceBase):
    """Plays a script: (frame_number, part_id) -> a frame; None -> a read timeout; an exception -> raised;
    a callable -> called, then the next step is played."""

    def __init__(self, script: list[Any], then: Callable[[], Any] | None = None) -> None:
        self.script = list(script)
        self.then = then
        self.started = self.stopped = 0
        self.exhausted = threading.Event()

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def info(self) -> SourceInfo:
        return SourceInfo("scripted", 8, 8, 30.0)

    def read(self, timeout_s: float) -> Frame | None:
        if not self.script:
            if self.then is not None:
                return self.then()
            self.exhausted.set()
            raise SourceExhausted("script done")
        step = self.script.pop(0)
        while callable(step):  # a hook between frames (e.g. wait for the inspector)
            step()
            step = self.script.pop(0)
        if step is None:
            return None
        if isinstance(step, Exception):
            raise step
        return small_frame(*step)


class TruthInspector:
    """Presence straight from the frame's truth; rejects odd part ids (the 'defective' ones)."""

    def __init__(self, before_observe: Callable[[], None] | None = None) -> None:
        self.before_observe = before_observe
        self.observed: list[int] = []
        self.scored: list[int] = []

    def observe(self, frame: Frame) -> FakeObservation:
        if self.before_observe is not None:
            self.before_observe()
        self.observed.append(frame.frame_number)
        present = frame.truth.get("part_id") is not None
        presence = Presence(present, 0.2 if present else 0.0, (2, 2, 6, 6) if present else None, False)
        return FakeObservation(frame, presence)

    def score(self, observation: FakeObservation) -> FakeInspection:
        self.scored.append(observation.frame.frame_number)
        verdict = Verdict.REJECT if observation.frame.truth["defective"] else Verdict.ACCEPT
        return FakeInspection(Decision(verdict, "fake", 1.0, 1.0), {"inference": 2.0})


def line_script(parts: int, frames_per_part: int = 3, gap: int = 2) -> list[Any]:
    script: list[Any] = []
    number = 0
    for part_id in range(parts):
        for value in [None] * gap + [part_id] * frames_per_part:
            script.append((number, value))
            number += 1
    return script + [(number + i, None) for i in range(gap)]


def fast_config(**overrides: Any) -> RuntimeConfig:
    base = {
        "lossless": True,
        "read_timeout_s": 0.05,
        "tracker": TrackerConfig(enter_frames=1, leave_frames=1),
        "reject": RejectTiming(delay_s=0.0, pulse_s=0.001),
        "drain_timeout_s": 2.0,
    }
    return RuntimeConfig(**(base | overrides))


def assert_consistent(summary: RunSummary) -> None:
    """Counts that must agree in every run."""
    assert summary.parts == summary.accepted + summary.rejected + summary.fault_rejected
    assert summary.parts == len(summary.part_records)
    assert [r.part_id for r in summary.part_records] == list(range(summary.parts))
    assert sum(summary.fault_reasons.values()) == summary.fault_rejected
    assert summary.pulses["scheduled"] == summary.rejected + summary.fault_rejected
    assert summary.pulses["fired"] + summary.pulses["abandoned"] == summary.pulses["scheduled"]
    assert summary.frames_inspected + summary.drops["queue_full"] + summary.drops["stopped"] == summary.frames_captured
    assert summary.latency["end_to_end"].count == summary.parts


# --- queue ----------------------------------------------------------------------------------------


def test_queue_drops_the_oldest_and_reports_each_drop() -> None:
    queue = FrameQueue(maxsize=2)
    dropped = [queue.put(small_frame(i, None)) for i in range(5)]
    assert [d.frame_number if d else None for d in dropped] == [None, None, 0, 1, 2]
    got = [queue.get(0.01) for _ in range(3)]
    assert [g.frame_number for g in got[:2]] == [3, 4] and got[2] is None  # type: ignore[union-attr]
    queue.put(small_frame(5, None))
    queue.close()
    assert queue.get(0.01).frame_number == 5  # type: ignore[union-attr]
    assert queue.get(0.01) is FrameQueue.END


def test_lossless_queue_waits_for_room_instead_of_dropping() -> None:
    queue = FrameQueue(maxsize=1, lossless=True)
    assert queue.put(small_frame(0, None)) is None
    result: list[Any] = []
    writer = threading.Thread(target=lambda: result.append(queue.put(small_frame(1, None))))
    writer.start()
    writer.join(0.05)
    assert writer.is_alive()  # blocked: the queue is full
    assert queue.get(1.0).frame_number == 0  # type: ignore[union-attr]
    writer.join(1.0)
    assert result == [None] and queue.get(1.0).frame_number == 1  # type: ignore[union-attr]


# --- loop with a scripted source ------------------------------------------------------------------


def test_every_part_gets_exactly_one_decision_and_counts_agree() -> None:
    source, inspector, output = ScriptedSource(line_script(6)), TruthInspector(), SimOutput()
    summary = run_inspection(source, inspector, output, fast_config(), MonotonicClock())
    assert (source.started, source.stopped) == (1, 1)
    assert summary.stop_reason == "source_exhausted" and summary.error is None
    assert [r.truth_part_id for r in summary.part_records] == list(range(6))
    assert (summary.parts, summary.accepted, summary.rejected) == (6, 3, 3)
    assert len(inspector.scored) == 6  # one inference per part, not per frame
    assert summary.truth is not None
    assert (summary.truth.recall, summary.truth.false_reject_rate, summary.truth.missed_parts) == (1.0, 0.0, 0)
    # Three pulses fired; parts decided microseconds apart may merge into one high period on the line.
    assert summary.pulses["fired"] == 3 and 1 <= len(output.pulses()) <= 3
    assert all(fall is not None for _, fall in output.pulses()) and output.closed and output.level is False
    assert_consistent(summary)


def test_timeouts_duplicates_and_gaps_are_counted() -> None:
    script = [(0, None), None, (1, 0), (1, 0), (2, 0), (5, 0), None, None, (6, None), (7, None)]
    summary = run_inspection(ScriptedSource(script), TruthInspector(), SimOutput(), fast_config(), MonotonicClock())
    assert summary.drops["timeout"] == 3
    assert summary.drops["duplicate"] == 1
    assert summary.drops["gap"] == 2  # frames 3 and 4 never came
    assert summary.frames_captured == 6 and summary.parts == 1
    assert_consistent(summary)


def test_a_full_queue_drops_the_oldest_frames_and_counts_them() -> None:
    """Inspection blocks on its first frame until capture has read everything: exact drop accounting."""
    first_taken = threading.Event()
    source = ScriptedSource([(0, None), lambda: first_taken.wait(5.0)] + [(i, None) for i in range(1, 20)])

    def block_until_capture_is_done() -> None:
        first_taken.set()
        source.exhausted.wait(5.0)

    inspector = TruthInspector(before_observe=block_until_capture_is_done)
    summary = run_inspection(source, inspector, SimOutput(), fast_config(lossless=False, queue_size=2), MonotonicClock())
    # The first frame was taken before the block; of the other 19 only the newest 2 survived.
    assert inspector.observed == [0, 18, 19]
    assert (summary.frames_captured, summary.frames_inspected, summary.drops["queue_full"]) == (20, 3, 17)
    assert_consistent(summary)


def test_max_frames_and_max_parts_stop_the_run() -> None:
    summary = run_inspection(ScriptedSource(line_script(10)), TruthInspector(), SimOutput(), fast_config(max_frames=7), MonotonicClock())
    assert summary.stop_reason == "max_frames" and summary.frames_inspected == 7
    assert_consistent(summary)
    summary = run_inspection(ScriptedSource(line_script(10)), TruthInspector(), SimOutput(), fast_config(max_parts=4), MonotonicClock())
    assert summary.stop_reason == "max_parts" and summary.parts == 4
    assert_consistent(summary)


def test_duration_is_measured_on_the_injected_clock() -> None:
    clock = FakeClock(step_ns=10_000_000)  # every reading moves time by 10 ms
    endless = ScriptedSource([], then=lambda: small_frame(0, None))
    counter = iter(range(10**9))
    endless.then = lambda: small_frame(next(counter), None)
    summary = run_inspection(endless, TruthInspector(), SimOutput(), fast_config(duration_s=1.0), clock)
    assert summary.stop_reason == "duration" and summary.duration_s >= 1.0


def test_sigint_stops_cleanly_and_restores_the_handler() -> None:
    previous = signal.getsignal(signal.SIGINT)
    counter = iter(range(10**9))

    def next_frame() -> Frame:
        number = next(counter)
        if number == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return small_frame(number, 0 if number >= 5 else None)

    summary = run_inspection(
        ScriptedSource([], then=next_frame), TruthInspector(), SimOutput(), fast_config(), MonotonicClock(),
        handle_signals=True,
    )
    assert summary.stop_reason == "SIGINT"
    assert summary.parts == 1  # the part in view at the stop is flushed and decided
    assert signal.getsignal(signal.SIGINT) is previous


def test_camera_errors_disconnect_is_retried_fatal_error_stops_with_the_error() -> None:
    script = [(0, None), CameraDisconnected("usb reset"), (1, 0), (2, 0), CameraError("wrong profile"), (3, 0)]
    summary = run_inspection(ScriptedSource(script), TruthInspector(), SimOutput(), fast_config(), MonotonicClock())
    assert summary.drops["camera_error"] == 1
    assert summary.stop_reason == "camera_error" and summary.error == "wrong profile"
    assert summary.parts == 1  # the part seen before the failure was still decided
    assert_consistent(summary)


def test_all_fault_part_is_fault_rejected_with_its_reason() -> None:
    class FaultyInspector(TruthInspector):
        def observe(self, frame: Frame) -> FakeObservation:
            if frame.truth["part_id"] is None:
                return super().observe(frame)
            return FakeObservation(frame, None, "invalid_depth")

    inspector = FaultyInspector()
    summary = run_inspection(ScriptedSource(line_script(2)), inspector, SimOutput(), fast_config(), MonotonicClock())
    assert (summary.parts, summary.fault_rejected, summary.fault_reasons) == (2, 2, {"invalid_depth": 2})
    assert inspector.scored == []  # nothing usable: no inference at all
    assert_consistent(summary)


def test_pulses_are_timed_from_capture_not_from_the_decision() -> None:
    clock = MonotonicClock()
    output = SimOutput(clock)
    runtime = InspectionRuntime(
        ScriptedSource(line_script(3)), TruthInspector(), output,
        fast_config(reject=RejectTiming(delay_s=0.2, pulse_s=0.01)), clock,
    )
    summary = runtime.run()
    pulses = runtime.scheduler.history
    assert len(pulses) == summary.rejected == 1
    record = next(r for r in summary.part_records if r.verdict == "reject")
    assert pulses[0].rise_ns == record.capture_ns + 200_000_000
    assert pulses[0].raised_ns is not None and pulses[0].raised_ns >= pulses[0].rise_ns
    assert output.pulses()[0][0] == pulses[0].raised_ns


# --- the real loop: synthetic line / folder -> tiny ONNX bundle -> sim output ---------------------


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), preprocess_config=tiny_preprocess_config())


def run_synthetic(bundle: Path, parts: int, seed: int = 3, **line: Any) -> RunSummary:
    clock = MonotonicClock()
    inspector = Inspector.from_bundle(bundle, clock=clock, intra_op_num_threads=1)
    options = {"width": 64, "height": 64, "speed_mps": 1.5, "realtime": False, "parts": parts} | line
    source = open_source(f"synthetic:{seed}", clock=clock, **options)
    config = RuntimeConfig(lossless=True, reject=RejectTiming(delay_s=0.05, pulse_s=0.005))
    with inspector:
        return run_inspection(source, inspector, SimOutput(clock), config, clock)


def test_real_loop_on_the_synthetic_line_decides_every_part_once(tiny_bundle: Path) -> None:
    summary = run_synthetic(tiny_bundle, parts=8, defect_rate=0.5)
    assert summary.stop_reason == "source_exhausted"
    assert summary.parts == 8
    truth = summary.truth
    assert truth is not None
    assert [r.truth_part_id for r in summary.part_records] == list(range(8))
    assert (truth.missed_parts, truth.split_parts, truth.phantom_parts) == (0, 0, 0)
    assert truth.defective_parts + truth.good_parts == 8 and truth.defective_parts > 0
    # Every part was scored on a frame that showed it, exactly once.
    assert all(r.scored_frame is not None and r.first_frame <= r.scored_frame <= r.last_frame for r in summary.part_records)
    assert summary.latency["inference"].count == 8
    assert set(summary.drops.values()) == {0}
    assert_consistent(summary)


def test_real_loop_with_a_tiny_threshold_rejects_every_part(tmp_path: Path) -> None:
    """The tiny model cannot rank dents reliably, so decisions are checked at the two extremes."""
    bundle = make_tiny_bundle(tmp_path / "strict", preprocess_config=tiny_preprocess_config(), threshold=1e-6)
    summary = run_synthetic(bundle, parts=3, seed=5, defect_rate=0.5)
    assert (summary.parts, summary.rejected) == (3, 3)
    assert summary.truth is not None and summary.truth.recall in (1.0, None)
    assert summary.truth.false_reject_rate in (1.0, None)
    assert summary.pulses["fired"] == 3
    assert_consistent(summary)


def test_real_loop_replays_a_folder_one_part_per_sample(tmp_path: Path, tiny_bundle: Path) -> None:
    root = make_mvtec3d(tmp_path, n_test_good=2, defects={"crack": 2}, size=(48, 64))
    clock = MonotonicClock()
    source = open_source(f"folder:{root}", clock=clock)
    config = RuntimeConfig(lossless=True, tracker=TrackerConfig(per_frame=True), reject=RejectTiming(0.01, 0.005))
    with Inspector.from_bundle(tiny_bundle, clock=clock, intra_op_num_threads=1) as inspector:
        summary = run_inspection(source, inspector, SimOutput(clock), config, clock)
    assert summary.parts == 4 and [r.truth_part_id for r in summary.part_records] == [0, 1, 2, 3]
    assert [r.truth_defect_type for r in summary.part_records] == ["good", "good", "crack", "crack"]
    assert_consistent(summary)


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_run_on_the_synthetic_line_writes_the_summary(tiny_bundle: Path, tmp_path: Path) -> None:
    from edge_ad.cli import app

    out = tmp_path / "summary.json"
    args = ["run", "--bundle", str(tiny_bundle), "--camera", "synthetic", "--seed", "2", "--gpio", "sim",
            "--max-parts", "3", "--size", "64", "--speed", "1.5", "--no-realtime", "--threads", "1",
            "--reject-delay", "0.02", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fault-rejected" in result.output
    data = json.loads(out.read_text())
    assert data["parts"] == 3 and data["source"] == "synthetic:2"
    assert data["parts"] == data["accepted"] + data["rejected"] + data["fault_rejected"]


def test_cli_refuses_a_bad_bundle_before_touching_camera_or_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_ad.line.outputs
    import edge_ad.sources
    from edge_ad.cli import app

    bundle = make_tiny_bundle(tmp_path / "b", preprocess_config=tiny_preprocess_config())
    (bundle / "model.onnx").write_bytes(b"truncated")
    opened: list[str] = []
    monkeypatch.setattr(edge_ad.sources, "open_source", lambda *a, **k: opened.append("camera"))
    monkeypatch.setattr(edge_ad.line.outputs, "open_output", lambda *a, **k: opened.append("gpio"))
    result = CliRunner().invoke(app, ["run", "--bundle", str(bundle), "--camera", "synthetic", "--max-parts", "1"])
    assert result.exit_code == 4, result.output
    assert opened == []


def test_cli_rejects_options_the_camera_does_not_take(tiny_bundle: Path, tmp_path: Path) -> None:
    from edge_ad.cli import app

    root = make_mvtec3d(tmp_path, n_test_good=1, defects={})
    result = CliRunner().invoke(app, ["run", "--bundle", str(tiny_bundle), "--camera", f"folder:{root}", "--speed", "1"])
    assert result.exit_code == 2 and "speed_mps" in result.output
    result = CliRunner().invoke(app, ["run", "--bundle", str(tiny_bundle), "--camera", f"folder:{root}", "--seed", "1"])
    assert result.exit_code == 2 and "--seed" in result.output
