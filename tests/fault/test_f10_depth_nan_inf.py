"""F10: NaN / inf patches, out-of-range depth (65.535 m) and raw uint16 depth with 65535 saturation.

Pass: either the frame is INVALID (FAULT_REJECT, the backend never called) or it is scored with finite
backend inputs and outputs and a finite score; never a NaN score, never an exception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.frame import Frame
from edge_ad.inspector import Inspector
from tests.helpers.bundles import make_box_frame
from tests.helpers.fault_frames import RecordingBackend, patch, raw_uint16, station_bundle, with_depth


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return station_bundle(tmp_path_factory.mktemp("f10"))


def inspect(bundle: Path, frame: Frame) -> tuple[object, RecordingBackend]:
    plain = Inspector.from_bundle(bundle, clock=FakeClock(step_ns=1_000_000), intra_op_num_threads=1)
    backend = RecordingBackend(plain.backend)
    return Inspector(plain.bundle, backend, clock=plain.clock).inspect(frame), backend


def finite_calls(backend: RecordingBackend) -> bool:
    return all(np.all(np.isfinite(a)) for inputs, outputs in backend.calls for a in (*inputs.values(), *outputs.values()))


@pytest.mark.parametrize(
    "value", [np.nan, np.inf, -np.inf, 65.535, -0.5], ids=["nan", "inf", "-inf", "65535mm-as-m", "negative"]
)
def test_f10_a_bad_patch_is_masked_out_and_the_score_stays_finite(bundle: Path, value: float) -> None:
    inspection, backend = inspect(bundle, patch(make_box_frame(), value))  # a quarter of the part's side
    decision = inspection.decision  # type: ignore[attr-defined]
    assert len(backend.calls) == 1 and finite_calls(backend)
    assert not decision.is_fault and np.isfinite(decision.score) and np.isfinite(decision.normalized)


@pytest.mark.parametrize("value", [np.nan, np.inf, 65.535], ids=["nan", "inf", "out-of-range"])
def test_f10_a_frame_that_is_all_bad_is_invalid_and_never_scored(bundle: Path, value: float) -> None:
    frame = make_box_frame()
    inspection, backend = inspect(bundle, with_depth(frame, np.full_like(frame.depth, value)))
    decision = inspection.decision  # type: ignore[attr-defined]
    assert decision.is_fault and decision.reason == "invalid_depth" and decision.score is None
    assert backend.calls == []


def test_f10_raw_uint16_depth_with_65535_saturation_is_refused_not_scored(bundle: Path) -> None:
    # Millimetre units read as metres put every pixel far beyond z_max: the frame is unusable, not scored.
    inspection, backend = inspect(bundle, raw_uint16(make_box_frame(), saturate_box=(0.2, 0.2, 0.5, 0.5)))
    decision = inspection.decision  # type: ignore[attr-defined]
    assert decision.is_fault and decision.reason == "invalid_depth" and backend.calls == []


def test_f10_nan_patches_in_a_part_of_the_line_keep_every_decision_finite(bundle: Path) -> None:
    frames = [patch(make_box_frame(frame_number=i, seed=i), np.nan, box=(0.1 * i, 0.1, 0.1 * i + 0.2, 0.3)) for i in range(5)]
    for frame in frames:
        inspection, backend = inspect(bundle, frame)
        decision = inspection.decision  # type: ignore[attr-defined]
        assert finite_calls(backend)
        assert decision.is_fault or np.isfinite(decision.score)
