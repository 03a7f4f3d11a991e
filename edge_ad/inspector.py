"""One frame in, one decision out: geometry -> preprocess -> backend -> scoring -> decision.

Split in two so the runtime can pick a part's best frame before paying for inference:
:meth:`Inspector.observe` does the cheap per-frame work (depth checks, foreground, part presence,
the model inputs) and :meth:`Inspector.score` runs the model on a chosen observation. Neither
raises for a bad frame or a failing model: the problem becomes a FAULT_REJECT with its reason,
because on the line an exception would mean a part that nobody decided on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends import InferenceBackend, create_backend
from edge_ad.bundle import Bundle, check_backend_matches, load_bundle
from edge_ad.clock import Clock, MonotonicClock, elapsed_ms
from edge_ad.decision import Decision, FaultReason, decide, fault
from edge_ad.errors import ConfigError, DataError, GeometryError, InferenceError, PlaneFitError
from edge_ad.frame import Frame
from edge_ad.geometry import (
    FULL_ROI,
    ForegroundConfig,
    ForegroundResult,
    Presence,
    extract_foreground,
    part_presence,
)
from edge_ad.manifest import ENGINE_DIR
from edge_ad.preprocess import Preprocessed, preprocess, to_model_inputs
from edge_ad.scoring import ScoreResult, score_outputs
from edge_ad.trt_engine_cache import tensorrt_onnx

# Modes whose model reads depth; in "rgb" mode depth only feeds the foreground mask, if present.
DEPTH_MODES = ("depth", "rgbd")


@dataclass(frozen=True, eq=False)
class Observation:
    """What one frame showed: the model inputs, part presence, or why the frame is unusable."""

    frame: Frame
    sample: Preprocessed | None
    presence: Presence | None
    fault: FaultReason | None = None
    fault_detail: str = ""
    preprocess_ms: float = 0.0
    # Lazy mode: the geometry already done, kept so the model inputs are made only if this frame is scored.
    xyz: np.ndarray | None = field(default=None, repr=False)
    foreground: ForegroundResult | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        """True when the frame can be scored (its model inputs may still be made when it is)."""
        return self.fault is None

    @property
    def part_present(self) -> bool | None:
        """Whether a part is in the ROI; None when unknown (no depth, or the frame is unusable)."""
        return None if self.presence is None else self.presence.present


@dataclass(frozen=True, eq=False)
class Inspection:
    """The decision for one observation, the score behind it and per-stage timings in ms."""

    observation: Observation
    decision: Decision
    result: ScoreResult | None
    timings_ms: Mapping[str, float] = field(default_factory=dict)


class Inspector:
    """Runs a verified bundle's preprocessing, model and scoring on frames."""

    def __init__(
        self,
        bundle: Bundle,
        backend: InferenceBackend,
        *,
        clock: Clock | None = None,
        min_area_fraction: float | None = None,
        foreground: ForegroundConfig | None = None,
        lazy: bool = False,
    ) -> None:
        """Pair ``bundle`` with an open ``backend``; BundleError when the backend's I/O differs from the manifest.

        ``foreground`` replaces the bundle's foreground settings: a station's calibrated belt plane and
        region of interest belong to the station, not to the model. ``lazy``: :meth:`observe` does
        only the geometry (depth checks, foreground, presence) and :meth:`score` makes the model inputs
        of the one frame it scores; the line tracks parts on every frame but scores one per part.
        """
        check_backend_matches(
            bundle.manifest, backend.input_spec(), backend.output_spec(), f"backend for {bundle.root}"
        )
        self.bundle = bundle
        self.backend = backend
        self.clock: Clock = clock or MonotonicClock()
        self.min_area_fraction = min_area_fraction
        self.config = bundle.preprocess_config
        if foreground is not None:
            self.config = dataclasses.replace(self.config, foreground=foreground)
        self.threshold = bundle.manifest.scoring.threshold.value
        self.lazy = lazy

    @classmethod
    def from_bundle(
        cls,
        path: Path,
        backend: str = "onnxruntime",
        *,
        clock: Clock | None = None,
        min_area_fraction: float | None = None,
        precision: str | None = None,
        foreground: ForegroundConfig | None = None,
        lazy: bool = False,
        **backend_options: Any,
    ) -> Inspector:
        """Verify the bundle at ``path`` (BundleError if bad) and open its model with ``backend``.

        ``precision`` (fp32 / int8, default: the manifest's) picks the model file by its role; for
        ``backend="tensorrt"`` it is the engine precision (fp16 too), the engine coming from the
        bundle's ``engines/`` folder.
        """
        bundle = load_bundle(path)
        if backend == "tensorrt":
            precision = precision or "fp16"
            backend_options.setdefault("precision", precision)
            backend_options.setdefault("engine_dir", bundle.root / ENGINE_DIR)
            model = tensorrt_onnx(bundle.root, bundle.manifest, precision)
        else:
            model = bundle.model_path(precision)
        engine = create_backend(backend, model, **backend_options)
        return cls(
            bundle, engine, clock=clock, min_area_fraction=min_area_fraction, foreground=foreground, lazy=lazy
        )

    def observe(self, frame: Frame) -> Observation:
        """Geometry and preprocessing for one frame; an unusable frame gives an Observation with ``fault`` set."""
        start = self.clock.now_ns()
        sample: Preprocessed | None = None
        presence: Presence | None = None
        reason: FaultReason | None = None
        detail = ""
        xyz: np.ndarray | None = None
        foreground: ForegroundResult | None = None
        try:
            xyz = self._checked_xyz(frame)
            if self.lazy:
                if xyz is not None and self.config.foreground is not None:
                    foreground = extract_foreground(xyz, self.config.foreground)
            else:
                sample = preprocess(frame.color, xyz, self.config)
                foreground = sample.foreground
            if foreground is not None:
                presence = self._presence(foreground)
        except (GeometryError, DataError, ConfigError) as exc:
            reason, detail = _fault_of(exc)
        if reason is not None:
            sample, presence, xyz, foreground = None, None, None, None
        took = elapsed_ms(start, self.clock.now_ns())
        return Observation(frame, sample, presence, reason, detail, took, xyz, foreground)

    def score(self, observation: Observation) -> Inspection:
        """Model, scoring and decision for an observation; every failure becomes FAULT_REJECT with its reason."""
        timings = {"preprocess": observation.preprocess_ms, "inference": 0.0, "scoring": 0.0}
        if not observation.usable:
            decision = fault(observation.fault or FaultReason.INVALID_INPUT, observation.fault_detail)
            return self._inspection(observation, decision, None, timings)
        sample = observation.sample
        if sample is None:  # lazy mode: this frame is the one scored, so make its model inputs now
            start = self.clock.now_ns()
            try:
                sample = preprocess(observation.frame.color, observation.xyz, self.config, observation.foreground)
            except (GeometryError, DataError, ConfigError) as exc:
                timings["preprocess"] += elapsed_ms(start, self.clock.now_ns())
                return self._inspection(observation, fault(*_fault_of(exc)), None, timings)
            timings["preprocess"] += elapsed_ms(start, self.clock.now_ns())
        start = self.clock.now_ns()
        try:
            outputs = self.backend.infer(to_model_inputs([sample]))
        except InferenceError as exc:
            timings["inference"] = elapsed_ms(start, self.clock.now_ns())
            return self._inspection(observation, fault(FaultReason.INFERENCE_ERROR, str(exc)), None, timings)
        middle = self.clock.now_ns()
        timings["inference"] = elapsed_ms(start, middle)
        result: ScoreResult | None = None
        try:
            result = score_outputs(outputs, self.bundle.manifest.scoring)
            decision = decide(result, self.threshold)
        except InferenceError as exc:
            decision = fault(FaultReason.INVALID_OUTPUT, str(exc))
        timings["scoring"] = elapsed_ms(middle, self.clock.now_ns())
        return self._inspection(observation, decision, result, timings)

    def inspect(self, frame: Frame) -> Inspection:
        """``score(observe(frame))``."""
        return self.score(self.observe(frame))

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _checked_xyz(self, frame: Frame) -> np.ndarray | None:
        """The frame's point cloud, or GeometryError/DataError saying why the frame cannot be used."""
        color = frame.color
        if (
            not isinstance(color, np.ndarray)
            or color.ndim != 3
            or color.shape[2] != 3
            or color.dtype != np.uint8
        ):
            got = f"{color.dtype} {color.shape}" if isinstance(color, np.ndarray) else type(color).__name__
            raise DataError(f"frame {frame.frame_number}: colour must be uint8 (H, W, 3) RGB, got {got}")
        needs_depth = self.config.mode in DEPTH_MODES
        if frame.depth is None or frame.intrinsics is None:
            if needs_depth:
                raise GeometryError(
                    f"frame {frame.frame_number}: model mode {self.config.mode!r} needs depth; "
                    f"frame has {'no depth' if frame.depth is None else 'no intrinsics'}"
                )
            return None
        depth = frame.depth
        if not isinstance(depth, np.ndarray) or depth.shape != color.shape[:2]:
            got = getattr(depth, "shape", type(depth).__name__)
            raise GeometryError(
                f"frame {frame.frame_number}: depth shape {got} does not match colour {color.shape[:2]}"
            )
        if needs_depth and not np.any(np.isfinite(depth) & (depth > 0)):
            # Caught here whatever the foreground settings: a model must never score an empty depth map.
            raise GeometryError(f"frame {frame.frame_number}: no valid depth (all pixels zero or not finite)")
        try:
            return frame.xyz()
        except ValueError as exc:  # intrinsics disagree with the depth size
            raise GeometryError(f"frame {frame.frame_number}: {exc}") from exc

    def _presence(self, foreground: ForegroundResult) -> Presence:
        roi = self.config.foreground.roi if self.config.foreground is not None else FULL_ROI
        if self.min_area_fraction is None:
            return part_presence(foreground.mask, roi)
        return part_presence(foreground.mask, roi, self.min_area_fraction)

    def _inspection(
        self,
        observation: Observation,
        decision: Decision,
        result: ScoreResult | None,
        timings: dict[str, float],
    ) -> Inspection:
        timings["total"] = timings["preprocess"] + timings["inference"] + timings["scoring"]
        return Inspection(observation, decision, result, timings)


def _fault_of(exc: Exception) -> tuple[FaultReason, str]:
    """The fault reason of an error raised while making a frame's model inputs."""
    if isinstance(exc, PlaneFitError):
        return FaultReason.PLANE_FIT, str(exc)
    if isinstance(exc, GeometryError):
        return FaultReason.INVALID_DEPTH, str(exc)
    return FaultReason.INVALID_INPUT, str(exc)
