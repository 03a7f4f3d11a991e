"""Per-stage latency and end-to-end throughput of the inspection pipeline (``edge-ad bench``).

One frame goes through the same stages as on the line, sequentially: capture/decode (the
source's ``read``), geometry + preprocessing (:meth:`Inspector.observe`), inference (the
backend's ``infer`` call only, timed by :class:`TimedBackend`), scoring + decision, and the whole
of it end to end. Every reading comes from an injectable :class:`~edge_ad.clock.Clock`, so the
statistics are tested on a FakeClock and never on real time. Torch-free: the PyTorch eager side is
just another :class:`~edge_ad.backends.base.InferenceBackend` (``trainer/bench_torch.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends.base import InferenceBackend, TensorSpec
from edge_ad.bundle import Bundle
from edge_ad.clock import Clock, elapsed_ms
from edge_ad.errors import CameraError, InferenceError
from edge_ad.frame import Frame
from edge_ad.inspector import Inspector
from edge_ad.sources import FrameSource, SourceExhausted

STAGES = ("capture", "preprocess", "inference", "scoring", "end_to_end")
STAGE_LABELS = {
    "capture": "capture/decode",
    "preprocess": "geometry+preprocess",
    "inference": "inference",
    "scoring": "scoring+decision",
    "end_to_end": "end to end",
}
# Stages whose torch/ORT ratio means something (the others do not involve the model).
RATIO_STAGES = ("inference", "end_to_end")
READ_TIMEOUT_S = 5.0
SCHEMA = "edge-ad-bench/1"


@dataclass(frozen=True)
class StageStats:
    """Latency of one stage over the measured frames, in milliseconds."""

    n: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


def stage_stats(samples_ms: Sequence[float]) -> StageStats:
    """Median, p90, p99 (linear interpolation between ranks, as numpy), mean, min and max of ``samples_ms``."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"stage statistics need at least one finite sample, got {values.size} values")
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50.0, 90.0, 99.0]))
    return StageStats(
        n=int(values.size),
        median_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(values.mean()),
        min_ms=float(values.min()),
        max_ms=float(values.max()),
    )


class TimedBackend:
    """An InferenceBackend wrapper that times each ``infer`` call on ``clock`` and nothing else."""

    def __init__(self, inner: InferenceBackend, clock: Clock) -> None:
        """Wrap ``inner``; ``last_ms`` is None until the first call."""
        self.inner = inner
        self.clock = clock
        self.last_ms: float | None = None

    def input_spec(self) -> list[TensorSpec]:
        """The wrapped backend's inputs."""
        return self.inner.input_spec()

    def output_spec(self) -> list[TensorSpec]:
        """The wrapped backend's outputs."""
        return self.inner.output_spec()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the wrapped backend and record how long the call took (failed calls too)."""
        start = self.clock.now_ns()
        try:
            return self.inner.infer(inputs)
        finally:
            self.last_ms = elapsed_ms(start, self.clock.now_ns())

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()


@dataclass(frozen=True)
class BackendBench:
    """One backend's pass over the frames: per-stage statistics, loop time and faults.

    ``loop_frames`` counts every measured frame (faulted ones too) and ``loop_ms`` the time the
    measured loop took, so ``throughput_fps`` is what the pipeline sustained; ``stages`` cover the
    ``frames`` frames that were scored. ``inputs_digest`` fingerprints the model inputs, to show two
    backends were fed the same preprocessed frames.
    """

    name: str
    stages: Mapping[str, StageStats]
    frames: int
    loop_frames: int
    loop_ms: float
    faults: Mapping[str, int] = field(default_factory=dict)
    inputs_digest: str = ""

    @property
    def fps_from_median(self) -> float:
        """1000 / median end-to-end latency."""
        return 1000.0 / self.stages["end_to_end"].median_ms

    @property
    def throughput_fps(self) -> float:
        """Frames per second measured over the whole loop."""
        return self.loop_frames / (self.loop_ms / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "frames": self.frames,
            "loop_frames": self.loop_frames,
            "loop_ms": self.loop_ms,
            "fps_from_median": self.fps_from_median,
            "throughput_fps": self.throughput_fps,
            "faults": dict(self.faults),
            "inputs_digest": self.inputs_digest,
            "stages": {name: self.stages[name].to_dict() for name in STAGES},
        }


def _read_frame(source: FrameSource, clock: Clock) -> tuple[Frame, int, int]:
    """(frame, start_ns, end_ns) of one read; a finite source that runs out is rewound and read again."""
    start = clock.now_ns()
    try:
        frame = source.read(READ_TIMEOUT_S)
    except SourceExhausted:
        source.start()  # replay a folder from its first sample; the rewind is not part of the timing
        start = clock.now_ns()
        frame = source.read(READ_TIMEOUT_S)
    end = clock.now_ns()
    if frame is None:
        raise CameraError(f"frame source {source.info().name}: no frame within {READ_TIMEOUT_S} s")
    return frame, start, end


def bench_backend(
    name: str,
    bundle: Bundle,
    backend: InferenceBackend,
    source: FrameSource,
    clock: Clock,
    *,
    frames: int,
    warmup: int,
) -> BackendBench:
    """Push ``warmup`` + ``frames`` frames from ``source`` through the bundle's pipeline on ``backend``.

    Warm-up frames are not measured. Frames that end in FAULT_REJECT are counted by reason and
    left out of the stage statistics (they skip inference); InferenceError when none could be
    scored. ``source`` is started and stopped here; ``backend`` is left open for the caller.
    """
    if frames < 1 or warmup < 0:
        raise ValueError(f"bench needs frames >= 1 and warmup >= 0, got {frames} and {warmup}")
    timed = TimedBackend(backend, clock)
    inspector = Inspector(bundle, timed, clock=clock)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    faults: Counter[str] = Counter()
    first_fault = ""
    digest = hashlib.blake2b(digest_size=8)
    loop_start = clock.now_ns()
    with source:
        for index in range(warmup + frames):
            if index == warmup:
                loop_start = clock.now_ns()
            frame, start, captured = _read_frame(source, clock)
            observation = inspector.observe(frame)
            inspection = inspector.score(observation)
            end = clock.now_ns()
            if index < warmup:
                continue
            if inspection.decision.is_fault or timed.last_ms is None:
                faults[inspection.decision.reason] += 1
                first_fault = first_fault or inspection.decision.detail
                continue
            samples["capture"].append(elapsed_ms(start, captured))
            samples["preprocess"].append(observation.preprocess_ms)
            samples["inference"].append(timed.last_ms)
            samples["scoring"].append(inspection.timings_ms["scoring"])
            samples["end_to_end"].append(elapsed_ms(start, end))
            digest.update(_inputs_fingerprint(observation.sample))
        loop_ms = elapsed_ms(loop_start, clock.now_ns())
    if not samples["end_to_end"]:
        raise InferenceError(
            f"bench {name}: none of the {frames} measured frames could be scored "
            f"(faults: {dict(faults)}; first: {first_fault or 'no detail'})"
        )
    return BackendBench(
        name=name,
        stages={stage: stage_stats(values) for stage, values in samples.items()},
        frames=len(samples["end_to_end"]),
        loop_frames=frames,
        loop_ms=loop_ms,
        faults=dict(faults),
        inputs_digest=digest.hexdigest(),
    )


def _inputs_fingerprint(sample: Any) -> bytes:
    # Sums, not a hash of every byte: cheap enough to leave inside the timed loop.
    sums = [float(np.sum(sample.image, dtype=np.float64)), float(np.sum(sample.depth, dtype=np.float64))]
    sums.append(float(np.sum(sample.mask, dtype=np.float64)))
    return np.asarray(sums, dtype=np.float64).tobytes()


def median_ratios(numerator: BackendBench, denominator: BackendBench) -> dict[str, float]:
    """``numerator`` median / ``denominator`` median for inference and end to end (> 1: numerator slower)."""
    return {
        stage: numerator.stages[stage].median_ms / denominator.stages[stage].median_ms
        for stage in RATIO_STAGES
    }


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` ("model name" on x86, "Model" on ARM boards), if any."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model") and value.strip():
            found.setdefault(key.strip(), value.strip())
    return found.get("model name") or found.get("Model")


def _version(distribution: str) -> str | None:
    # Package metadata, not an import: naming torch's version must not load torch.
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int) -> dict[str, Any]:
    """CPU count and model, platform and library versions, and the thread count the bench used."""
    from edge_ad.backends.onnxruntime import physical_core_count

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": physical_core_count(),
        "cpu_model": cpu_model_name() or platform.processor() or None,
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "threads": threads,
    }


ORT_NAME = "onnxruntime"
ORT_INT8_NAME = "onnxruntime_int8"  # the bundle's INT8 QDQ model, when it has one
TORCH_NAME = "torch_eager"


def bench_report(
    bundle: Bundle,
    setup: Mapping[str, Any],
    results: Sequence[BackendBench],
    torch_note: str | None = None,
) -> dict[str, Any]:
    """The JSON report: ``setup`` (source, frames, warm-up, threads, ...), each backend, the ratios, the machine.

    Ratios are torch eager median / ONNX Runtime median, present when both backends ran, and
    ONNX Runtime FP32 median / INT8 median (the INT8 speed-up) when the bundle's INT8 model ran.
    """
    by_name = {result.name: result for result in results}
    ort, eager, int8 = by_name.get(ORT_NAME), by_name.get(TORCH_NAME), by_name.get(ORT_INT8_NAME)
    ratios = {f"{TORCH_NAME}/{ORT_NAME}": median_ratios(eager, ort)} if ort and eager else {}
    if ort and int8:
        ratios[f"{ORT_NAME}/{ORT_INT8_NAME}"] = median_ratios(ort, int8)
    model = bundle.manifest.model
    return {
        "schema": SCHEMA,
        "model": {"name": model.name, "family": model.family, "preset": model.preset, "mode": model.mode,
                  "precision": bundle.manifest.precision},
        **setup,
        "stages": list(STAGES),
        "backends": {result.name: result.to_dict() for result in results},
        "ratios": ratios,
        "same_inputs": (ort.inputs_digest == eager.inputs_digest) if ort and eager else None,
        "torch_note": torch_note,
        "machine": machine_info(int(setup.get("threads", 0))),
    }
