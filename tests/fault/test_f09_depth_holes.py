"""F9: 60 % of the depth pixels are zero (holes).

Pass: zeros are excluded by the validity mask and never reach the plane fit; with the station's
``min_valid_fraction`` above the valid share the frame is INVALID (FAULT_REJECT, not scored); below it the
frame is scored on the valid points only, and no NaN reaches the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge_ad.geometry
from edge_ad.clock import FakeClock, MonotonicClock
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
    zero_fraction,
)


def inspector_with_spy(bundle: Path) -> tuple[Inspector, RecordingBackend]:
    plain = Inspector.from_bundle(bundle, clock=FakeClock(step_ns=1_000_000), intra_op_num_threads=1)
    backend = RecordingBackend(plain.backend)
    return Inspector(plain.bundle, backend, clock=plain.clock), backend


@pytest.fixture
def plane_fits(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every point set handed to the plane fit."""
    seen: list[np.ndarray] = []
    real = edge_ad.geometry.fit_plane

    def spy(points: np.ndarray, **kwargs: Any) -> Any:
        seen.append(points.copy())
        return real(points, **kwargs)

    monkeypatch.setattr(edge_ad.geometry, "fit_plane", spy)
    return seen


def test_f09_below_the_valid_floor_the_frame_is_invalid_and_never_fitted_or_scored(
    tmp_path: Path, plane_fits: list[np.ndarray]
) -> None:
    inspector, backend = inspector_with_spy(station_bundle(tmp_path, min_valid_fraction=0.5))
    inspection = inspector.inspect(zero_fraction(make_box_frame(), 0.6))
    assert inspection.decision.is_fault and inspection.decision.reason == "invalid_depth"
    assert "40.0% of 3072 pixels have depth" in inspection.decision.detail
    assert plane_fits == [] and backend.calls == []


def test_f09_above_the_floor_zeros_are_excluded_from_the_fit_and_inputs_stay_finite(
    tmp_path: Path, plane_fits: list[np.ndarray]
) -> None:
    inspector, backend = inspector_with_spy(station_bundle(tmp_path, min_valid_fraction=0.25))
    inspection = inspector.inspect(zero_fraction(make_box_frame(), 0.6))
    assert len(plane_fits) == 1 and not np.any(np.all(plane_fits[0] == 0, axis=1))  # no (0, 0, 0) point
    assert np.all(plane_fits[0][:, 2] > 0.05)
    (inputs, outputs), = backend.calls
    assert all(np.all(np.isfinite(a)) for a in (*inputs.values(), *outputs.values()))
    assert not inspection.decision.is_fault and np.isfinite(inspection.decision.score)


def test_f09_a_part_seen_only_through_holed_depth_is_fault_rejected(tmp_path: Path) -> None:
    frames = box_line(3)
    part1 = [f.frame_number for f in frames if f.truth.get("part_id") == 1]
    script = [zero_fraction(f, 0.6, seed=f.frame_number) if f.frame_number in part1 else f for f in frames]
    inspector, backend = inspector_with_spy(station_bundle(tmp_path, min_valid_fraction=0.5))
    summary = run_inspection(ListSource(script), inspector, SimOutput(), fast_runtime_config(), MonotonicClock())
    assert_each_part_decided_once(summary, range(3))
    record = next(r for r in summary.part_records if r.truth_part_id == 1)
    assert (record.verdict, record.reason, record.scored_frame) == ("fault_reject", "invalid_depth", None)
    assert summary.fault_reasons == {"invalid_depth": 1} and len(backend.calls) == 2
