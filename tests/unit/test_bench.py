"""The bench core on a FakeClock: statistics on known numbers, stage attribution, warm-up, faults, rewinds.

The pipeline is real (tiny ONNX bundle, ONNX Runtime, the one preprocessing); only time is fake:
the scripted source and a backend wrapper advance the clock by known amounts, so every stage's
expected latency is known exactly. No assertion here depends on real time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_ad.backends.base import TensorSpec
from edge_ad.backends.onnxruntime import OnnxRuntimeBackend
from edge_ad.bench import (
    ORT_NAME,
    STAGES,
    TORCH_NAME,
    BackendBench,
    StageStats,
    TimedBackend,
    bench_backend,
    bench_report,
    cpu_model_name,
    median_ratios,
    stage_stats,
)
from edge_ad.bundle import Bundle, load_bundle
from edge_ad.clock import FakeClock
from edge_ad.errors import InferenceError
from edge_ad.frame import Frame
from edge_ad.sources import SourceBase, SourceExhausted, SourceInfo
from tests.helpers.bundles import make_box_frame, make_tiny_bundle

INFER_MS = 10.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bench-bundle")))


class ScriptedSource(SourceBase):
    """Box frames; reading frame k advances the clock by ``read_ms[k]``; finite when ``finite``."""

    def __init__(
        self, clock: FakeClock, read_ms: Sequence[float], *, finite: bool = False, no_depth: Sequence[int] = (),
        seed_offset: int = 0,
    ) -> None:
        self.clock, self.read_ms, self.finite, self.no_depth = clock, list(read_ms), finite, set(no_depth)
        self.seed_offset = seed_offset
        self.position = 0  # index into read_ms across rewinds
        self.in_pass = 0
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.in_pass = 0

    def info(self) -> SourceInfo:
        return SourceInfo("scripted", 64, 48, 0.0)

    def read(self, timeout_s: float) -> Frame | None:
        if self.finite and self.in_pass >= len(self.read_ms):
            raise SourceExhausted("scripted: done")
        k = self.position % len(self.read_ms)
        self.position += 1
        self.in_pass += 1
        self.clock.advance_ms(self.read_ms[k])
        frame = make_box_frame(frame_number=k, seed=k + self.seed_offset)
        if k in self.no_depth:
            frame = Frame(frame.color, None, None, k, 0.0, 0)  # rgbd model without depth: a fault
        return frame


class SlowBackend:
    """The real ONNX Runtime backend, but each call "takes" ``INFER_MS`` on the fake clock."""

    def __init__(self, inner: OnnxRuntimeBackend, clock: FakeClock, ms: float = INFER_MS) -> None:
        self.inner, self.clock, self.ms = inner, clock, ms

    def input_spec(self) -> list[TensorSpec]:
        return self.inner.input_spec()

    def output_spec(self) -> list[TensorSpec]:
        return self.inner.output_spec()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.clock.advance_ms(self.ms)
        return self.inner.infer(inputs)

    def close(self) -> None:
        self.inner.close()


def _backend(bundle: Bundle, clock: FakeClock, ms: float = INFER_MS) -> SlowBackend:
    return SlowBackend(OnnxRuntimeBackend(bundle.model_path(), intra_op_num_threads=1), clock, ms)


# --- statistics ---------------------------------------------------------------------------------


def test_stage_stats_on_one_to_hundred() -> None:
    stats = stage_stats(list(range(1, 101)))
    # Linear interpolation between order statistics: rank q/100 * (n - 1).
    assert stats.n == 100
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert (stats.mean_ms, stats.min_ms, stats.max_ms) == (50.5, 1.0, 100.0)


def test_stage_stats_tail_is_not_the_median() -> None:
    stats = stage_stats([10.0] * 9 + [1000.0])
    assert stats.median_ms == 10.0
    assert stats.p90_ms == pytest.approx(10.0 + 0.1 * 990.0)  # rank 8.1
    assert stats.p99_ms == pytest.approx(10.0 + 0.91 * 990.0)  # rank 8.91
    assert stats.mean_ms == pytest.approx(109.0)


def test_stage_stats_single_value_and_unordered_input() -> None:
    assert stage_stats([4.0]) == StageStats(1, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0)
    assert stage_stats([3.0, 1.0, 2.0]).median_ms == 2.0


@pytest.mark.parametrize("values", [[], [1.0, math.nan], [math.inf]])
def test_stage_stats_refuses_empty_or_non_finite(values: list[float]) -> None:
    with pytest.raises(ValueError, match="at least one finite sample"):
        stage_stats(values)


def test_timed_backend_times_the_call_only(bundle: Bundle) -> None:
    clock = FakeClock(start_ns=5_000)
    timed = TimedBackend(_backend(bundle, clock, ms=7.5), clock)
    assert timed.last_ms is None
    inputs = {spec.name: np.zeros(spec.shape, np.float32) for spec in timed.input_spec()}
    clock.advance_ms(100)  # time before the call is not counted
    outputs = timed.infer(inputs)
    assert timed.last_ms == pytest.approx(7.5)
    assert set(outputs) == {"anomaly_map", "score"}
    with pytest.raises(InferenceError):
        timed.infer({"image": inputs["image"]})
    assert timed.last_ms == pytest.approx(7.5)  # a failing call is timed too (it advanced the clock again)


# --- the timing loop ----------------------------------------------------------------------------


def test_bench_backend_attributes_each_stage(bundle: Bundle) -> None:
    clock = FakeClock()
    # Two warm-up frames that are very slow to read, then five with known capture times.
    source = ScriptedSource(clock, [500.0, 400.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    result = bench_backend("ort", bundle, _backend(bundle, clock), source, clock, frames=5, warmup=2)
    assert result.frames == result.loop_frames == 5 and not result.faults
    assert set(result.stages) == set(STAGES)
    assert result.stages["capture"].median_ms == 3.0
    assert result.stages["capture"].max_ms == 5.0  # warm-up excluded
    assert result.stages["inference"].median_ms == INFER_MS
    # Preprocessing and scoring do not advance the fake clock.
    assert result.stages["preprocess"].max_ms == 0.0 and result.stages["scoring"].max_ms == 0.0
    e2e = result.stages["end_to_end"]
    assert (e2e.median_ms, e2e.min_ms, e2e.max_ms) == (13.0, 11.0, 15.0)
    assert result.loop_ms == pytest.approx(sum(k + INFER_MS for k in (1, 2, 3, 4, 5)))
    assert result.fps_from_median == pytest.approx(1000.0 / 13.0)
    assert result.throughput_fps == pytest.approx(5 / 0.065)
    assert source.starts == 1


def test_bench_backend_counts_faults_and_leaves_them_out(bundle: Bundle) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [1.0, 2.0, 3.0, 4.0], no_depth=[1, 3])
    result = bench_backend("ort", bundle, _backend(bundle, clock), source, clock, frames=4, warmup=0)
    assert result.faults == {"invalid_depth": 2}
    assert result.frames == 2 and result.loop_frames == 4
    assert result.stages["capture"].median_ms == 2.0  # frames 0 and 2 only: 1 and 3 ms
    assert result.stages["end_to_end"].max_ms == 3.0 + INFER_MS


def test_bench_backend_without_a_usable_frame_says_why(bundle: Bundle) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [1.0], no_depth=[0])
    with pytest.raises(InferenceError, match=r"none of the 3 measured frames.*invalid_depth"):
        bench_backend("ort", bundle, _backend(bundle, clock), source, clock, frames=3, warmup=0)


def test_bench_backend_rewinds_a_finite_source(bundle: Bundle) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [1.0, 2.0], finite=True)
    result = bench_backend("ort", bundle, _backend(bundle, clock), source, clock, frames=5, warmup=1)
    assert result.frames == 5
    assert source.starts == 3  # the with-block, then two rewinds (after frames 2 and 4)
    assert sorted(result.stages["capture"].to_dict()[k] for k in ("min_ms", "max_ms")) == [1.0, 2.0]


def test_same_frames_give_the_same_inputs_digest(bundle: Bundle) -> None:
    digests = []
    for read_ms, seed_offset in (([1.0, 2.0, 3.0], 0), ([9.0, 9.0, 9.0], 0), ([1.0, 2.0, 3.0], 1)):
        clock = FakeClock()
        source = ScriptedSource(clock, read_ms, seed_offset=seed_offset)
        digests.append(bench_backend("b", bundle, _backend(bundle, clock), source, clock, frames=3, warmup=0).inputs_digest)
    assert digests[0] == digests[1]  # timing differs, frames do not
    assert digests[0] != digests[2]  # other frames, other inputs


def test_bench_backend_refuses_bad_counts(bundle: Bundle) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="frames >= 1"):
        bench_backend("b", bundle, _backend(bundle, clock), ScriptedSource(clock, [1.0]), clock, frames=0, warmup=0)


# --- ratios, machine info, report ---------------------------------------------------------------


def _fake_result(name: str, inference_ms: float, e2e_ms: float, digest: str = "d") -> BackendBench:
    stages = {stage: stage_stats([1.0]) for stage in STAGES}
    stages["inference"] = stage_stats([inference_ms, inference_ms, 100 * inference_ms])
    stages["end_to_end"] = stage_stats([e2e_ms])
    return BackendBench(name, stages, frames=3, loop_frames=3, loop_ms=3 * e2e_ms, inputs_digest=digest)


def test_median_ratios_use_medians() -> None:
    ratios = median_ratios(_fake_result(TORCH_NAME, 30.0, 60.0), _fake_result(ORT_NAME, 10.0, 40.0))
    assert ratios == {"inference": pytest.approx(3.0), "end_to_end": pytest.approx(1.5)}


def test_cpu_model_name_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\n\nprocessor\t: 1\nmodel name\t: Example CPU @ 2.0GHz\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 62.50\n\nSerial\t\t: 1423\nModel\t\t: NVIDIA Jetson Orin Nano\n")
    assert cpu_model_name(x86) == "Example CPU @ 2.0GHz"
    assert cpu_model_name(arm) == "NVIDIA Jetson Orin Nano"
    assert cpu_model_name(tmp_path / "missing") is None


def test_bench_report_with_and_without_torch(bundle: Bundle) -> None:
    setup = {"source": "synthetic", "frames": 3, "warmup": 1, "threads": 2}
    ort, eager = _fake_result(ORT_NAME, 10.0, 40.0), _fake_result(TORCH_NAME, 20.0, 50.0)
    both = bench_report(bundle, setup, [ort, eager])
    assert both["ratios"][f"{TORCH_NAME}/{ORT_NAME}"] == {"inference": pytest.approx(2.0), "end_to_end": pytest.approx(1.25)}
    assert both["same_inputs"] is True
    assert both["backends"][ORT_NAME]["stages"]["inference"]["median_ms"] == 10.0
    assert both["backends"][TORCH_NAME]["fps_from_median"] == pytest.approx(20.0)
    assert both["machine"]["threads"] == 2 and both["machine"]["cpu_count"] >= 1
    assert both["model"]["precision"] == "fp32" and both["frames"] == 3
    alone = bench_report(bundle, setup, [ort], torch_note="skipped")
    assert alone["ratios"] == {} and alone["same_inputs"] is None and alone["torch_note"] == "skipped"
    assert bench_report(bundle, setup, [ort, _fake_result(TORCH_NAME, 20.0, 50.0, digest="x")])["same_inputs"] is False


# --- the torch eager side -------------------------------------------------------------------------


def _torch_tiny_detector() -> Any:
    """The tiny bundle's graph (tests/helpers/bundles.py) as a torch module: same maths, eager."""
    torch = pytest.importorskip("torch")
    from tests.helpers.bundles import COLOR_GAIN, UNSHUFFLE

    class Tiny(torch.nn.Module):
        def forward(self, image: Any, depth: Any, mask: Any) -> tuple[Any, Any]:
            grid = depth.shape[-1] // UNSHUFFLE
            pool = torch.nn.functional.avg_pool2d
            color = pool(image.abs().mean(dim=1, keepdim=True), image.shape[-1] // grid)
            anomaly = (pool(depth.abs(), UNSHUFFLE) + COLOR_GAIN * color) * (pool(mask, UNSHUFFLE) > 0).float()
            return anomaly, anomaly.amax(dim=(1, 2, 3))

    return Tiny()


@pytest.mark.torch
def test_torch_eager_backend_matches_onnxruntime(bundle: Bundle) -> None:
    pytest.importorskip("torch")
    from trainer.bench_torch import TorchEagerBackend

    eager = TorchEagerBackend(_torch_tiny_detector(), bundle.manifest.inputs, ["anomaly_map", "score"])
    assert eager.output_spec() == list(bundle.manifest.outputs)
    runs = {}
    for name, make in (("ort", lambda c: _backend(bundle, c)), ("eager", lambda c: SlowBackend(eager, c, ms=25.0))):
        clock = FakeClock()
        runs[name] = bench_backend(name, bundle, make(clock), ScriptedSource(clock, [1.0, 2.0]), clock, frames=3, warmup=1)
    assert runs["eager"].inputs_digest == runs["ort"].inputs_digest
    assert median_ratios(runs["eager"], runs["ort"])["inference"] == pytest.approx(2.5)
    inputs = {spec.name: np.full(spec.shape, 0.5, np.float32) for spec in bundle.manifest.inputs}
    ort_out = OnnxRuntimeBackend(bundle.model_path(), intra_op_num_threads=1).infer(inputs)
    np.testing.assert_allclose(eager.infer(inputs)["score"], ort_out["score"], rtol=1e-5)
    eager.close()
    with pytest.raises(InferenceError, match="closed"):
        eager.infer(inputs)


@pytest.mark.torch
def test_torch_eager_backend_refuses_a_detector_that_does_not_fit(bundle: Bundle) -> None:
    pytest.importorskip("torch")
    from trainer.bench_torch import TorchEagerBackend

    with pytest.raises(InferenceError, match="expected 3 tensors"):
        TorchEagerBackend(_torch_tiny_detector(), bundle.manifest.inputs, ["anomaly_map", "score", "extra"])
    image, _depth, mask = bundle.manifest.inputs
    wrong = [image, TensorSpec("depth", (1, 1, 40, 40), "float32"), mask]  # a 5x5 map against a 4x4 mask
    with pytest.raises(InferenceError, match="forward failed"):
        TorchEagerBackend(_torch_tiny_detector(), wrong, ["anomaly_map", "score"])
