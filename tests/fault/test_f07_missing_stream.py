"""F7: a frameset missing its colour or depth stream is unusable; the part gets FAULT_REJECT; three in a row -> DEGRADED."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ad.clock import FakeClock
from edge_ad.decision import FaultReason
from edge_ad.inspector import Inspector
from edge_ad.monitor import Health, Monitor
from edge_ad.supervisor import State
from tests.helpers.bundles import make_box_frame, make_tiny_bundle
from tests.helpers.fault_frames import RecordingBackend, without
from tests.helpers.faults import FaultPlan, build_line, check_each_part_once


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("f07"))


def recording_inspector(bundle: Path) -> tuple[Inspector, RecordingBackend]:
    plain = Inspector.from_bundle(bundle, clock=FakeClock(step_ns=1_000_000), intra_op_num_threads=1)
    backend = RecordingBackend(plain.backend)
    return Inspector(plain.bundle, backend, clock=plain.clock), backend


@pytest.mark.parametrize(("stream", "reason"), [("color", FaultReason.INVALID_INPUT), ("depth", FaultReason.INVALID_DEPTH)])
def test_a_frame_without_a_stream_is_a_fault_and_never_reaches_the_model(bundle: Path, stream: str, reason: FaultReason) -> None:
    inspector, backend = recording_inspector(bundle)
    inspection = inspector.inspect(without(make_box_frame(), stream))
    assert inspection.decision.is_fault and inspection.decision.reason == reason.value
    assert backend.calls == []


def test_three_consecutive_missing_streams_degrade_and_a_good_frame_recovers(bundle: Path) -> None:
    inspector, _ = recording_inspector(bundle)
    monitor = Monitor(clock=FakeClock())
    good = make_box_frame()
    for number, stream in enumerate(["color", "depth"]):
        frame = without(make_box_frame(frame_number=number), stream)
        monitor.on_frame(frame, inspector.observe(frame))
    assert monitor.status().health is Health.OK  # two in a row: not yet
    bad = without(make_box_frame(frame_number=2), "color")
    monitor.on_frame(bad, inspector.observe(bad))
    status = monitor.status()
    assert status.health is Health.DEGRADED and "3 consecutive unusable frames (invalid_input)" in status.reasons
    assert monitor.metrics.faults.value("invalid_input") == 2 and monitor.metrics.faults.value("invalid_depth") == 1
    monitor.on_frame(good, inspector.observe(good))
    assert monitor.status().health is Health.OK
    assert monitor.metrics.registry.snapshot()["health"] == 0


def test_f07_a_part_seen_only_through_broken_framesets_is_fault_rejected_and_the_station_degrades() -> None:
    # Deliveries 8-11 show part 1: two without colour, then two without depth.
    line = build_line(FaultPlan().missing("color", 8, count=2).missing("depth", 10, count=2), frames=60)
    summary = line.run()
    by_part = {r.truth_part_id: r for r in summary.part_records}
    assert by_part[1].verdict == "fault_reject" and by_part[1].reason == "invalid_input"
    assert by_part[1].scored_frame is None and by_part[1].fault_frames == 4
    assert summary.fault_rejected == 1 and summary.parts == 10
    assert line.runtime.supervisor.counters["invalid:invalid_input"] == 4  # the fake inspector: both are invalid_input
    states = [s for _, s, _ in line.runtime.supervisor.transitions]
    assert State.DEGRADED in states and State.RUNNING in states[states.index(State.DEGRADED):]
    check_each_part_once(summary, line.runtime)
