"""The per-frame inspector: real bundle + ONNX Runtime; faults become FAULT_REJECT, never exceptions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edge_ad.backends.base import TensorSpec
from edge_ad.backends.onnxruntime import OnnxRuntimeBackend
from edge_ad.bundle import load_bundle
from edge_ad.clock import FakeClock
from edge_ad.decision import FaultReason, Verdict
from edge_ad.errors import BundleError, InferenceError
from edge_ad.frame import Frame
from edge_ad.inspector import Inspector
from edge_ad.preprocess import to_model_inputs
from tests.helpers.bundles import (
    make_box_frame,
    make_tiny_bundle,
    tiny_model_reference,
    tiny_preprocess_config,
)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), threshold=1.0)


@pytest.fixture(scope="module")
def inspector(bundle_dir: Path) -> Inspector:
    return Inspector.from_bundle(bundle_dir, clock=FakeClock(step_ns=1_000_000), intra_op_num_threads=1)


class _FailingBackend:
    """Wraps a real backend; fails or corrupts its outputs on demand."""

    def __init__(self, inner: OnnxRuntimeBackend, mode: str) -> None:
        self.inner, self.mode = inner, mode

    def input_spec(self) -> list[TensorSpec]:
        return self.inner.input_spec()

    def output_spec(self) -> list[TensorSpec]:
        return self.inner.output_spec()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.mode == "raise":
            raise InferenceError("CUDA context lost")
        outputs = self.inner.infer(inputs)
        outputs["anomaly_map"] = np.full_like(outputs["anomaly_map"], np.nan)
        return outputs

    def close(self) -> None:
        self.inner.close()


def test_score_matches_reference_and_threshold(inspector: Inspector) -> None:
    inspection = inspector.inspect(make_box_frame())
    observation = inspection.observation
    assert observation.usable and observation.part_present is True
    assert observation.presence.bbox is not None
    inputs = to_model_inputs([observation.sample])
    ref_map, ref_score = tiny_model_reference(inputs["image"], inputs["depth"], inputs["mask"], "max")
    assert inspection.result.score == pytest.approx(float(ref_score[0]), rel=1e-5)
    np.testing.assert_allclose(inspection.result.anomaly_map, ref_map[0, 0], rtol=1e-5, atol=1e-6)
    expected = Verdict.REJECT if ref_score[0] > 1.0 else Verdict.ACCEPT
    assert inspection.decision.verdict is expected
    assert inspection.result.normalized == pytest.approx(inspection.result.score / 1.0)


def test_verdict_follows_the_bundle_threshold(tmp_path: Path, inspector: Inspector) -> None:
    score = inspector.inspect(make_box_frame(bump_m=0.01)).result.score
    low = Inspector.from_bundle(
        make_tiny_bundle(tmp_path / "low", threshold=score * 0.99), intra_op_num_threads=1
    )
    high = Inspector.from_bundle(
        make_tiny_bundle(tmp_path / "high", threshold=score * 1.01), intra_op_num_threads=1
    )
    assert low.inspect(make_box_frame(bump_m=0.01)).decision.verdict is Verdict.REJECT
    assert high.inspect(make_box_frame(bump_m=0.01)).decision.verdict is Verdict.ACCEPT


def test_a_bump_scores_higher_than_a_flat_box(inspector: Inspector) -> None:
    flat = inspector.inspect(make_box_frame()).result.score
    assert inspector.inspect(make_box_frame(bump_m=0.01)).result.score > flat + 0.05


def test_empty_belt_has_no_part_and_scores_zero(inspector: Inspector) -> None:
    inspection = inspector.inspect(make_box_frame(box=None))
    assert inspection.observation.part_present is False
    assert inspection.result.score == 0.0
    assert inspection.decision.verdict is Verdict.ACCEPT


def test_stage_timings_use_the_injected_clock(bundle_dir: Path) -> None:
    clock = FakeClock(start_ns=5_000_000, step_ns=2_000_000)  # every reading advances 2 ms
    with Inspector.from_bundle(bundle_dir, clock=clock, intra_op_num_threads=1) as inspector:
        inspection = inspector.inspect(make_box_frame())
    assert inspection.timings_ms == {"preprocess": 2.0, "inference": 2.0, "scoring": 2.0, "total": 6.0}


def _with(frame: Frame, **changes: object) -> Frame:
    return dataclasses.replace(frame, **changes)


@pytest.mark.parametrize(
    ("make_frame", "reason", "fragment"),
    [
        (lambda f: _with(f, depth=np.zeros_like(f.depth)), FaultReason.INVALID_DEPTH, "no valid depth"),
        (
            lambda f: _with(f, depth=np.full_like(f.depth, np.nan)),
            FaultReason.INVALID_DEPTH,
            "no valid depth",
        ),
        (
            lambda f: _with(
                f, depth=np.where(np.arange(f.depth.size).reshape(f.depth.shape) % 10 == 0, f.depth, np.nan)
            ),
            FaultReason.INVALID_DEPTH,
            "pixels have depth",
        ),
        (lambda f: _with(f, depth=None), FaultReason.INVALID_DEPTH, "needs depth; frame has no depth"),
        (
            lambda f: _with(f, intrinsics=None),
            FaultReason.INVALID_DEPTH,
            "needs depth; frame has no intrinsics",
        ),
        (lambda f: _with(f, depth=f.depth[:-2]), FaultReason.INVALID_DEPTH, "does not match colour"),
        (
            lambda f: _with(f, color=None),
            FaultReason.INVALID_INPUT,
            "colour must be uint8 (H, W, 3) RGB, got NoneType",
        ),
        (lambda f: _with(f, color=f.color.astype(np.float32)), FaultReason.INVALID_INPUT, "got float32"),
        (
            lambda f: _with(
                f, depth=np.random.default_rng(0).uniform(0.3, 1.0, f.depth.shape).astype(np.float32)
            ),
            FaultReason.PLANE_FIT,
            "plane",
        ),
    ],
)
def test_unusable_frames_fault_reject(
    inspector: Inspector, make_frame, reason: FaultReason, fragment: str
) -> None:
    observation = inspector.observe(make_frame(make_box_frame()))
    assert observation.fault is reason and not observation.usable
    assert fragment in observation.fault_detail
    assert observation.sample is None and observation.part_present is None
    inspection = inspector.score(observation)
    assert inspection.decision.verdict is Verdict.FAULT_REJECT
    assert inspection.decision.reason == reason.value
    assert inspection.result is None and inspection.timings_ms["inference"] == 0.0


@pytest.mark.parametrize(
    ("mode", "reason"), [("raise", FaultReason.INFERENCE_ERROR), ("nan", FaultReason.INVALID_OUTPUT)]
)
def test_backend_failures_fault_reject(bundle_dir: Path, mode: str, reason: FaultReason) -> None:
    bundle = load_bundle(bundle_dir)
    backend = _FailingBackend(OnnxRuntimeBackend(bundle.model_path(), intra_op_num_threads=1), mode)
    inspection = Inspector(bundle, backend).inspect(make_box_frame())
    assert inspection.decision.verdict is Verdict.FAULT_REJECT
    assert inspection.decision.reason == reason.value
    assert inspection.decision.score is None


def test_rgb_mode_scores_frames_without_depth(tmp_path: Path) -> None:
    bundle_dir = make_tiny_bundle(
        tmp_path / "rgb", preprocess_config=tiny_preprocess_config("rgb"), threshold=10.0
    )
    with Inspector.from_bundle(bundle_dir, intra_op_num_threads=1) as inspector:
        no_depth = inspector.inspect(_with(make_box_frame(), depth=None))
        with_depth = inspector.inspect(make_box_frame())
    assert no_depth.decision.verdict is Verdict.ACCEPT
    assert not no_depth.observation.sample.has_mask and no_depth.observation.part_present is None
    assert no_depth.result.score > 0  # colour term over the whole image
    assert with_depth.observation.part_present is True and with_depth.observation.sample.has_mask


def test_backend_that_does_not_fit_the_bundle_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    other = make_tiny_bundle(tmp_path / "other", preprocess_config=tiny_preprocess_config(image_size=64))
    wrong_backend = OnnxRuntimeBackend(other / "model.onnx", intra_op_num_threads=1)
    with pytest.raises(BundleError, match="inputs do not match the manifest"):
        Inspector(load_bundle(bundle_dir), wrong_backend)


def test_lazy_inspector_makes_model_inputs_only_for_the_scored_frame(tmp_path: Path) -> None:
    """The line observes every frame but models one per part: same score, preprocessing deferred."""
    bundle = make_tiny_bundle(tmp_path / "bundle")
    eager = Inspector.from_bundle(bundle)
    lazy = Inspector.from_bundle(bundle, lazy=True)
    frame = make_box_frame(bump_m=0.01)
    observed = lazy.observe(frame)
    assert observed.usable and observed.sample is None and observed.part_present
    scored = lazy.score(observed)
    assert scored.result is not None
    assert scored.result.score == pytest.approx(eager.inspect(frame).result.score, rel=1e-6)
    # A frame whose depth is unusable is still refused at observe time, before any model input exists.
    bad = make_box_frame()
    bad.depth[:] = 0.0
    refused = lazy.observe(bad)
    assert not refused.usable and lazy.score(refused).decision.is_fault
