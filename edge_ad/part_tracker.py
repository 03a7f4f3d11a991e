"""One decision per part: turn per-frame presence into parts that enter, are followed and leave.

Pure logic over observations (no model, no clock): the runtime feeds every observation to
:meth:`PartTracker.update` and gets back the parts that just left, each carrying the single best
observation to score. A frame whose depth was unusable (``observation.fault``) counts as
"occupied": when the camera cannot see, a part may be there, and such a part must end in
FAULT_REJECT rather than pass unseen.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.geometry import FULL_ROI, roi_to_pixels


class PresenceLike(Protocol):
    """What the tracker reads of :class:`edge_ad.geometry.Presence` (bbox in frame pixels, end exclusive)."""

    present: bool
    area_fraction: float
    bbox: tuple[int, int, int, int] | None
    touches_roi_edge: bool


class ObservationLike(Protocol):
    """What the tracker reads of :class:`edge_ad.inspector.Observation`."""

    frame: Frame
    presence: PresenceLike | None
    fault: str | None


@dataclass(frozen=True)
class TrackerConfig:
    """Debounce and limits, in frames.

    A part enters after ``enter_frames`` consecutive occupied frames and leaves after
    ``leave_frames`` consecutive empty ones, or is closed after ``max_frames_per_part`` frames (a
    stuck part is then decided, and the frames after it start a new part, rather than never being
    decided). ``per_frame``: every frame is its own part (dataset replay). ``roi``: the normalised
    (x0, y0, x1, y1) presence region (the foreground config's), whose centre "most centred" means.
    """

    enter_frames: int = 2
    leave_frames: int = 2
    max_frames_per_part: int = 120
    per_frame: bool = False
    roi: tuple[float, ...] = FULL_ROI

    def __post_init__(self) -> None:
        for name in ("enter_frames", "leave_frames", "max_frames_per_part"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tracker.{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_frames_per_part < self.enter_frames:
            raise ConfigError(
                f"tracker.max_frames_per_part ({self.max_frames_per_part}) must be >= enter_frames ({self.enter_frames})"
            )
        roi_to_pixels(self.roi, 2, 2)  # validates the box (ConfigError naming it)


@dataclass(frozen=True)
class Placement:
    """How well a frame shows the part: whole inside the ROI, how big, how far off-centre (pixels)."""

    inside: bool
    area_fraction: float
    centre_offset_px: float

    def key(self) -> tuple[bool, float, float]:
        """Sort key, larger is better: fully inside first, then more centred, then larger area.

        Centred before large: a part seen off-centre shows other walls and light than the parts the
        model was trained on (recorded at the centre), while its area changes little with position.
        """
        return (self.inside, -self.centre_offset_px, self.area_fraction)


def placement(presence: PresenceLike, image_size: tuple[int, int], roi: tuple[float, ...]) -> Placement:
    """Placement of a present part in a frame of ``image_size`` (width, height); roi is normalised."""
    if presence.bbox is None:
        return Placement(False, float(presence.area_fraction), math.inf)
    x0, y0, x1, y1 = roi_to_pixels(roi, *image_size)
    bx0, by0, bx1, by1 = presence.bbox
    # Box centre vs ROI centre (both end-exclusive, so the +/- 1 cancel out).
    offset = math.hypot((bx0 + bx1 - x0 - x1) / 2.0, (by0 + by1 - y0 - y1) / 2.0)
    # Touching the ROI border means some of the part may be cut off: never the best view.
    return Placement(not presence.touches_roi_edge, float(presence.area_fraction), offset)


@dataclass
class TrackedPart:
    """A part from entry to exit; ``best`` is the observation to score (None if every frame faulted).

    ``frames`` counts the occupied frames (part seen, or unknown because of a fault) from
    ``first_frame`` to ``last_frame``; empty frames (a dropout, or the ones that closed the part)
    are not the part's.
    """

    part_id: int
    first_frame: int
    first_arrival_ns: int
    last_frame: int = -1
    frames: int = 0
    usable_frames: int = 0
    fault_frames: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    best: ObservationLike | None = None
    best_placement: Placement | None = None
    exit_reason: str = ""
    _truth: dict[Any, tuple[int, Mapping[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def capture_ns(self) -> int:
        """Capture time the reject pulse is timed from: the scored frame's arrival, else the first frame's."""
        return self.best.frame.arrival_ns if self.best is not None else self.first_arrival_ns

    @property
    def all_faults(self) -> bool:
        """True when no frame of the part could be used (it must end in FAULT_REJECT)."""
        return self.best is None

    @property
    def main_fault(self) -> str | None:
        """The most frequent fault reason among the part's frames."""
        return self.faults.most_common(1)[0][0] if self.faults else None

    @property
    def truth(self) -> Mapping[str, Any] | None:
        """Ground truth of the real part seen most often in this track (None without ground truth)."""
        if not self._truth:
            return None
        return max(self._truth.values(), key=lambda item: item[0])[1]

    def add(self, observation: ObservationLike, roi: tuple[float, ...], any_view: bool = False) -> None:
        """Account one frame that belongs to this part.

        A usable frame is a candidate for scoring when it shows the part (present), when presence
        is unknown (no depth: the whole image is the part), or always with ``any_view`` (a dataset
        sample is known to show its part even if the foreground missed it).
        """
        frame = observation.frame
        self.frames += 1
        self.last_frame = frame.frame_number
        truth_id = frame.truth.get("part_id") if frame.truth else None
        if truth_id is not None:
            count, truth = self._truth.get(truth_id, (0, frame.truth))
            self._truth[truth_id] = (count + 1, truth)
        if observation.fault is not None:
            self.fault_frames += 1
            self.faults[str(getattr(observation.fault, "value", observation.fault))] += 1
            return
        presence = observation.presence
        if presence is None:
            candidate = Placement(False, 0.0, math.inf)
        elif presence.present or any_view:
            height, width = frame.color.shape[:2]
            candidate = placement(presence, (width, height), roi)
        else:
            return
        self.usable_frames += 1
        if self.best_placement is None or candidate.key() > self.best_placement.key():
            self.best, self.best_placement = observation, candidate


def occupied(observation: ObservationLike) -> bool:
    """A part is (or may be) in view: present, or unknown (the frame faulted, or has no depth)."""
    if observation.fault is not None or observation.presence is None:
        return True
    return bool(observation.presence.present)


class PartTracker:
    """Debounced part segmentation over a stream of observations; see :class:`TrackerConfig`."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._current: TrackedPart | None = None
        self._pending: list[ObservationLike] = []
        self._empty_run = 0
        self._next_id = 0

    @property
    def in_part(self) -> bool:
        """True while a part has entered and not yet left."""
        return self._current is not None

    def update(self, observation: ObservationLike) -> list[TrackedPart]:
        """Feed one observation; returns the parts that left with it (zero or one)."""
        if self.config.per_frame:
            part = self._open(observation)
            part.add(observation, self.config.roi, any_view=True)
            return [self._close(part, "frame")]
        if self._current is None:
            return self._update_idle(observation)
        part = self._current
        if occupied(observation):
            self._empty_run = 0
            part.add(observation, self.config.roi)
            if part.frames >= self.config.max_frames_per_part:
                return [self._close(part, "max_frames")]
            return []
        self._empty_run += 1
        if self._empty_run >= self.config.leave_frames:
            return [self._close(part, "left")]
        return []

    def flush(self) -> list[TrackedPart]:
        """End of stream: close the part in view, if any (a part still debouncing in is not a part yet)."""
        self._pending.clear()
        if self._current is None:
            return []
        return [self._close(self._current, "end_of_stream")]

    def _update_idle(self, observation: ObservationLike) -> list[TrackedPart]:
        if not occupied(observation):
            self._pending.clear()
            return []
        self._pending.append(observation)
        if len(self._pending) >= self.config.enter_frames:
            part = self._open(self._pending[0])
            for pending in self._pending:
                part.add(pending, self.config.roi)
            self._pending.clear()
            self._empty_run = 0
            self._current = part
            if part.frames >= self.config.max_frames_per_part:
                return [self._close(part, "max_frames")]
        return []

    def _open(self, observation: ObservationLike) -> TrackedPart:
        part = TrackedPart(self._next_id, observation.frame.frame_number, observation.frame.arrival_ns)
        self._next_id += 1
        return part

    def _close(self, part: TrackedPart, reason: str) -> TrackedPart:
        part.exit_reason = reason
        self._current = None
        self._empty_run = 0
        return part
