"""Record frames from any source into the MVTec 3D-AD layout, so that a user's own parts train like the benchmark.

Each sample is written with :func:`edge_ad.dataset.write_sample`: the colour image as RGB PNG and
``Frame.xyz()`` (aligned depth deprojected with the colour intrinsics, metres) as xyz TIFF.
Two modes: every frame (``parts=False``: the next ``count`` frames), or one sample per part
passing (``parts=True``): the belt is cut away with :func:`edge_ad.geometry.extract_foreground`,
presence comes from :func:`edge_ad.presence.part_presence`, and :class:`edge_ad.part_tracker.PartTracker`
picks each part's best frame exactly as the line runtime would score it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.dataset import write_sample
from edge_ad.dataset_layout import GOOD, SPLITS
from edge_ad.errors import CameraDisconnected, CameraError, ConfigError, DataError, GeometryError
from edge_ad.frame import Frame
from edge_ad.geometry import ForegroundConfig, Presence, extract_foreground, part_presence
from edge_ad.part_tracker import PartTracker, TrackedPart, TrackerConfig
from edge_ad.sources.base import FrameSource, SourceExhausted, real_sleep

_STEM = re.compile(r"^(\d+)$")
# Pause after a CameraDisconnected before asking again (the source paces its own reconnects).
_DISCONNECTED_PAUSE_S = 0.1


@dataclass(frozen=True)
class RecordTarget:
    """Where samples go: ``category_root/split/defect_type`` (defect_type None: from each part's ground truth)."""

    category_root: Path
    split: str
    defect_type: str | None

    @classmethod
    def parse(cls, out: Path, label_from_truth: bool = False) -> RecordTarget:
        """``ROOT/CATEGORY/SPLIT/TYPE`` (or ``ROOT/CATEGORY/SPLIT`` with ``label_from_truth``) -> target."""
        out = Path(out)
        split_dir = out if label_from_truth else out.parent
        if split_dir.name not in SPLITS:
            expected = "ROOT/CATEGORY/SPLIT" if label_from_truth else "ROOT/CATEGORY/SPLIT/TYPE (e.g. .../train/good)"
            raise ConfigError(
                f"--out {out}: expected {expected} with SPLIT one of {', '.join(SPLITS)}, got split {split_dir.name!r}"
            )
        defect_type = None if label_from_truth else out.name
        if split_dir.name != "test" and defect_type not in (None, GOOD):
            raise ConfigError(f"--out {out}: split {split_dir.name!r} holds good parts only (.../{split_dir.name}/good)")
        if label_from_truth and split_dir.name != "test":
            raise ConfigError(f"--out {out}: labels from ground truth need the test split (.../CATEGORY/test)")
        return cls(split_dir.parent, split_dir.name, defect_type)


@dataclass(frozen=True)
class RecordSettings:
    """How to record: ``count`` samples (frames, or parts with ``parts``), every ``every``-th frame in frame mode.

    ``foreground`` and ``min_area_fraction`` decide part presence (``parts`` only); ``max_idle_s``:
    a source that delivers no frame for this long is a CameraError.
    """

    count: int
    parts: bool = False
    every: int = 1
    foreground: ForegroundConfig = field(default_factory=ForegroundConfig)
    min_area_fraction: float = 0.005
    read_timeout_s: float = 1.0
    max_idle_s: float = 10.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"--count must be >= 1, got {self.count}")
        if self.every < 1:
            raise ConfigError(f"--every must be >= 1, got {self.every}")
        if not 0.0 < self.min_area_fraction < 1.0:
            raise ConfigError(f"min_area_fraction must be in (0, 1), got {self.min_area_fraction}")


@dataclass
class RecordSummary:
    """What a recording did: files written, frames read, timeouts and parts skipped (by reason)."""

    written: list[Path] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    timeouts: int = 0
    disconnects: int = 0
    parts_seen: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    ended: str = "count"


@dataclass(frozen=True, eq=False)
class PartView:
    """One frame as the part tracker sees it (the ObservationLike protocol)."""

    frame: Frame
    presence: Presence | None
    fault: str | None = None


def observe(frame: Frame, foreground: ForegroundConfig, min_area_fraction: float) -> PartView:
    """Part presence in one frame from its depth; a frame with unusable depth is a fault ("invalid_depth")."""
    xyz = frame.xyz()
    if xyz is None:
        raise ConfigError(f"frame {frame.frame_number}: recording one sample per part needs depth; the source has none")
    try:
        mask = extract_foreground(xyz, foreground).mask
    except GeometryError:
        return PartView(frame, None, "invalid_depth")
    return PartView(frame, part_presence(mask, foreground.roi, min_area_fraction))


def next_index(type_dir: Path) -> int:
    """The first free sample index in ``type_dir/rgb`` (recording appends to what is there)."""
    rgb_dir = Path(type_dir) / "rgb"
    if not rgb_dir.is_dir():
        return 0
    indices = [int(m.group(1)) for p in rgb_dir.iterdir() if (m := _STEM.match(p.stem))]
    return max(indices, default=-1) + 1


def tracker_for(source: FrameSource, foreground: ForegroundConfig) -> TrackerConfig:
    """Tracker limits for ``source``: per frame for dataset replays, long enough for a slow line's parts."""
    info = source.info()
    limit = TrackerConfig().max_frames_per_part
    if info.frames_per_part is not None:
        limit = max(limit, math.ceil(2 * info.frames_per_part))
    return TrackerConfig(per_frame=info.frame_is_part, max_frames_per_part=limit, roi=foreground.roi)


class Recorder:
    """Writes samples to a :class:`RecordTarget`, numbering on from what the folders already hold."""

    def __init__(self, target: RecordTarget, summary: RecordSummary) -> None:
        self.target = target
        self.summary = summary
        self._next: dict[str, int] = {}

    def write(self, frame: Frame, defect_type: str) -> Path:
        """Write ``frame`` as the next sample of ``defect_type``."""
        type_dir = self.target.category_root / self.target.split / defect_type
        index = self._next.get(defect_type)
        if index is None:
            index = next_index(type_dir)
        path = write_sample(
            self.target.category_root, self.target.split, defect_type, index, frame.color, frame.xyz()
        )
        self._next[defect_type] = index + 1
        self.summary.written.append(path)
        self.summary.by_type[defect_type] += 1
        return path

    def write_part(self, part: TrackedPart) -> Path | None:
        """Write a part's best frame; None (counted in ``skipped``) when it has none or no usable label."""
        if part.best is None:
            self.summary.skipped["no_usable_frame"] += 1
            return None
        frame = part.best.frame
        defect_type = self.target.defect_type
        if defect_type is None:
            defect_type = truth_label(frame)
            if defect_type is None:
                self.summary.skipped["defect_not_visible"] += 1
                return None
        return self.write(frame, defect_type)


def truth_label(frame: Frame) -> str | None:
    """A frame's ground-truth folder name ("good" or the defect type); None if the defect is out of view."""
    truth: dict[str, Any] = dict(frame.truth or {})
    if "defect_type" not in truth or truth["defect_type"] is None:
        raise DataError(
            f"frame {frame.frame_number}: the source carries no ground-truth defect type; "
            "record into a fixed folder (.../test/<type>) instead of labelling from truth"
        )
    if truth.get("defective") and truth.get("defect_visible") is False:
        return None
    return str(truth["defect_type"])


def record(
    source: FrameSource,
    out: Path,
    settings: RecordSettings,
    *,
    label_from_truth: bool = False,
    clock: Clock | None = None,
    on_sample: Callable[[Path], None] | None = None,
) -> RecordSummary:
    """Record ``settings.count`` samples from ``source`` (started and stopped here) into ``out``.

    Ends early, with ``summary.ended == "exhausted"``, when a finite source (folder, bag) runs out.
    Raises CameraError when the source stays silent for ``max_idle_s`` or fails for good.
    """
    clock = clock if clock is not None else MonotonicClock()
    target = RecordTarget.parse(out, label_from_truth)
    if settings.parts is False and label_from_truth:
        raise ConfigError("labels from ground truth need --parts (one sample per part)")
    summary = RecordSummary()
    recorder = Recorder(target, summary)

    def wrote(path: Path | None) -> None:
        if path is not None and on_sample is not None:
            on_sample(path)

    with source:
        tracker = PartTracker(tracker_for(source, settings.foreground)) if settings.parts else None
        last_frame_ns = clock.now_ns()
        while len(summary.written) < settings.count:
            try:
                frame = source.read(settings.read_timeout_s)
            except SourceExhausted:
                summary.ended = "exhausted"
                break
            except CameraDisconnected:
                summary.disconnects += 1
                frame = None
                real_sleep(_DISCONNECTED_PAUSE_S)
            if frame is None:
                summary.timeouts += 1
                idle_s = (clock.now_ns() - last_frame_ns) / 1e9
                if idle_s >= settings.max_idle_s:
                    raise CameraError(f"no frame from the source for {idle_s:.1f} s (limit {settings.max_idle_s} s)")
                continue
            last_frame_ns = clock.now_ns()
            summary.frames += 1
            if tracker is None:
                if (summary.frames - 1) % settings.every == 0:
                    wrote(recorder.write(frame, target.defect_type or GOOD))
                continue
            for part in tracker.update(observe(frame, settings.foreground, settings.min_area_fraction)):
                summary.parts_seen += 1
                wrote(recorder.write_part(part))
        if tracker is not None and len(summary.written) < settings.count:
            # The stream ended with a part in view: it still counts (as on the line).
            for part in tracker.flush():
                summary.parts_seen += 1
                wrote(recorder.write_part(part))
    return summary
