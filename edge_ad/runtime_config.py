"""Settings of one inspection run, and what the loop needs of an inspector (see :mod:`edge_ad.runtime`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_ad.decision import Decision, FaultReason
from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.line.reject import RejectTiming
from edge_ad.part_tracker import ObservationLike, TrackerConfig
from edge_ad.supervisor import SupervisorConfig


class InspectionLike(Protocol):
    """What the loop reads of :class:`edge_ad.inspector.Inspection`."""

    decision: Decision
    timings_ms: Mapping[str, float]


class InspectorLike(Protocol):
    """What the loop needs of :class:`edge_ad.inspector.Inspector`."""

    def observe(self, frame: Frame) -> ObservationLike:
        """Per-frame geometry and preprocessing (a bad frame gives an observation with ``fault`` set)."""
        ...

    def score(self, observation: Any) -> InspectionLike:
        """Model + decision for one observation (expected failures are FAULT_REJECT)."""
        ...


@dataclass(frozen=True, eq=False)
class FailedObservation:
    """Stands in for an observation whose stage raised: occupied and faulted, so its part is FAULT_REJECT."""

    frame: Frame
    presence: None = None
    fault: str = FaultReason.INVALID_INPUT.value
    preprocess_ms: float = 0.0


@dataclass(frozen=True)
class RuntimeConfig:
    """Queue, stop conditions, tracking, reject timing and supervision of one run.

    ``lossless``: capture waits for room instead of dropping (replay at full speed). ``drain_timeout_s``:
    how long the stop waits for windows in flight (None: delay + pulse + 1 s). ``supervise``: None = on
    unless lossless (see the module docstring).
    """

    queue_size: int = 2
    read_timeout_s: float = 1.0
    lossless: bool = False
    max_parts: int | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reject: RejectTiming = field(default_factory=RejectTiming)
    drain_timeout_s: float | None = None
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    supervise: bool | None = None

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ConfigError(f"runtime.queue_size: must be >= 1, got {self.queue_size}")
        if not self.read_timeout_s > 0:
            raise ConfigError(f"runtime.read_timeout_s: must be > 0, got {self.read_timeout_s}")
        for name in ("max_parts", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"runtime.{name}: must be >= 1, got {value}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"runtime.duration_s: must be > 0, got {self.duration_s}")

    @property
    def supervised(self) -> bool:
        """Whether deadlines, stall detection and the safe gate apply."""
        return (not self.lossless) if self.supervise is None else self.supervise
