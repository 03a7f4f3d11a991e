"""F11: no belt plane can be fitted (valid depth on one image row, or a cloud without a dominant plane).

Pass: PlaneFitError becomes ``plane_fit`` -> FAULT_REJECT, counted by reason, never scored, no crash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.clock import FakeClock, MonotonicClock
from edge_ad.errors import PlaneFitError
from edge_ad.frame import Frame
from edge_ad.geometry import fit_plane
from edge_ad.inspector import Inspector
from edge_ad.line.outputs import SimOutput
from edge_ad.runtime import run_inspection
from tests.helpers.bundles import make_box_frame
from tests.helpers.fault_frames import (
    ListSource,
    RecordingBackend,
    assert_each_part_decided_once,
    box_line,
    fast_runtime_config,
    station_bundle,
    with_depth,
)


def cluttered(frame: Frame, seed: int = 0) -> Frame:
    """Depth uniformly spread over 0.3-0.7 m: no plane holds a quarter of the points."""
    rng = np.random.default_rng(seed)
    return with_depth(frame, rng.uniform(0.3, 0.7, size=frame.depth.shape).astype(np.float32))


def one_row(frame: Frame) -> Frame:
    """Valid depth on a single image row only (collinear rays)."""
    depth = np.zeros_like(frame.depth)
    depth[10] = frame.depth[10]
    return with_depth(frame, depth)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # min_valid_fraction 0: let even a single valid row through to the plane fit (the fit must refuse it).
    return station_bundle(tmp_path_factory.mktemp("f11"), min_valid_fraction=0.0)


def spied(bundle: Path) -> tuple[Inspector, RecordingBackend]:
    plain = Inspector.from_bundle(bundle, clock=FakeClock(step_ns=1_000_000), intra_op_num_threads=1)
    backend = RecordingBackend(plain.backend)
    return Inspector(plain.bundle, backend, clock=plain.clock), backend


def test_f11_collinear_points_are_refused_by_the_fit() -> None:
    line = np.stack([np.linspace(-0.1, 0.1, 200), np.zeros(200), np.full(200, 0.5)], axis=1)
    with pytest.raises(PlaneFitError, match="collinear"):
        fit_plane(line)


@pytest.mark.parametrize(("corrupt", "detail"), [(cluttered, "no dominant plane"), (one_row, "single image row")])
def test_f11_a_degenerate_frame_is_a_plane_fit_fault_and_never_scored(bundle: Path, corrupt: object, detail: str) -> None:
    inspector, backend = spied(bundle)
    inspection = inspector.inspect(corrupt(make_box_frame()))  # type: ignore[operator]
    assert inspection.decision.is_fault and inspection.decision.reason == "plane_fit"
    assert detail in inspection.decision.detail
    assert backend.calls == []


def test_f11_parts_without_a_plane_are_fault_rejected_and_counted(bundle: Path) -> None:
    frames = box_line(4)
    bad = {f.frame_number for f in frames if f.truth.get("part_id") in (1, 2)}
    script = [cluttered(f, f.frame_number) if f.frame_number in bad else f for f in frames]
    inspector, backend = spied(bundle)
    summary = run_inspection(ListSource(script), inspector, SimOutput(), fast_runtime_config(), MonotonicClock())
    assert_each_part_decided_once(summary, range(4))
    assert summary.fault_reasons == {"plane_fit": 2}
    assert [r.verdict for r in summary.part_records if r.truth_part_id in (1, 2)] == ["fault_reject"] * 2
    assert summary.pulses["fired"] >= 2 and len(backend.calls) == 2
