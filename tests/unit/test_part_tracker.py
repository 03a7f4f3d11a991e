"""Part tracking: debounce in and out, best-frame choice, faults, forced exits, one decision per part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from edge_ad.decision import FaultReason
from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.geometry import Presence
from edge_ad.part_tracker import PartTracker, TrackedPart, TrackerConfig, placement

W, H = 100, 80


@dataclass(frozen=True, eq=False)
class Obs:
    """The three fields the tracker reads of an inspector Observation."""

    frame: Frame
    presence: Presence | None
    fault: FaultReason | None = None


def frame(number: int, truth: dict[str, Any] | None = None) -> Frame:
    return Frame(np.zeros((H, W, 3), np.uint8), None, None, number, number * 33.0, number * 1000, truth or {})


def seen(number: int, bbox: tuple[int, int, int, int] = (30, 20, 70, 60), **truth: Any) -> Obs:
    """A part at ``bbox`` (inside the full-image ROI unless it touches the border)."""
    x0, y0, x1, y1 = bbox
    touches = x0 <= 0 or y0 <= 0 or x1 >= W or y1 >= H
    area = (x1 - x0) * (y1 - y0) / (W * H)
    return Obs(frame(number, truth), Presence(True, area, bbox, touches))


def empty(number: int) -> Obs:
    return Obs(frame(number), Presence(False, 0.0, None, False))


def faulted(number: int, reason: FaultReason = FaultReason.INVALID_DEPTH) -> Obs:
    return Obs(frame(number), None, reason)


def feed(tracker: PartTracker, observations: list[Obs]) -> list[TrackedPart]:
    parts: list[TrackedPart] = []
    for observation in observations:
        parts += tracker.update(observation)
    return parts + tracker.flush()


def test_a_one_frame_blip_is_not_a_part_but_two_frames_are() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=2, leave_frames=2))
    assert feed(tracker, [empty(0), seen(1), empty(2), empty(3)]) == []
    parts = feed(tracker, [seen(4), seen(5), empty(6), empty(7)])
    assert len(parts) == 1
    # Frames counts the frames that showed (or may have shown) the part; the closing empties are not its.
    assert (parts[0].first_frame, parts[0].last_frame, parts[0].frames, parts[0].exit_reason) == (4, 5, 2, "left")


def test_a_short_dropout_does_not_split_a_part() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=2, leave_frames=3))
    observations = [seen(0), seen(1), empty(2), empty(3), seen(4), seen(5), empty(6), empty(7), empty(8)]
    left = []
    for observation in observations:
        left.append(tracker.update(observation))
    # Only the third consecutive empty frame (8) closes the part.
    assert [len(x) for x in left] == [0] * 8 + [1]
    assert (left[-1][0].first_frame, left[-1][0].last_frame, left[-1][0].usable_frames) == (0, 5, 4)


def test_best_frame_is_the_largest_fully_inside_then_the_most_centred() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=1, leave_frames=1))
    observations = [
        seen(0, (0, 10, 60, 70)),  # biggest, but cut by the left border
        seen(1, (10, 20, 50, 60)),  # inside, 40x40, off-centre
        seen(2, (35, 25, 75, 65)),  # inside, 40x40, centred (box centre 55,45 vs ROI centre 50,40)
        seen(3, (40, 30, 70, 60)),  # inside, smaller
        seen(4, (60, 20, 100, 60)),  # touches the right border
        empty(5),
    ]
    (part,) = feed(tracker, observations)
    assert part.best is observations[2]
    assert part.capture_ns == observations[2].frame.arrival_ns
    assert part.best_placement is not None and part.best_placement.inside


def test_a_cut_view_is_still_scored_when_no_frame_shows_the_whole_part() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=1, leave_frames=1))
    observations = [seen(0, (0, 10, 30, 60)), seen(1, (0, 10, 50, 60)), empty(2)]
    (part,) = feed(tracker, observations)
    assert part.best is observations[1] and not part.best_placement.inside  # type: ignore[union-attr]


def test_placement_centring_uses_the_roi() -> None:
    presence = Presence(True, 0.1, (65, 30, 85, 50), False)
    # The box (centre 75, 40) is centred in the right half of the image, 25 px right of the image centre.
    assert placement(presence, (W, H), (0.5, 0.0, 1.0, 1.0)).centre_offset_px == pytest.approx(0.0)
    assert placement(presence, (W, H), (0.0, 0.0, 1.0, 1.0)).centre_offset_px == pytest.approx(25.0)


def test_a_part_seen_only_through_faults_has_no_best_frame() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=2, leave_frames=2))
    observations = [
        empty(0),
        faulted(1),
        faulted(2, FaultReason.PLANE_FIT),
        faulted(3),
        empty(4),
        empty(5),
    ]
    (part,) = feed(tracker, observations)
    assert part.all_faults and part.best is None
    assert part.fault_frames == 3 and part.main_fault == "invalid_depth"
    assert part.capture_ns == observations[1].frame.arrival_ns


def test_faults_inside_a_part_keep_it_open_and_never_become_best() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=2, leave_frames=2))
    # seen(3) is as centred as seen(0) and larger: the best view; the faulted frames never are.
    observations = [seen(0), faulted(1), faulted(2), seen(3, (25, 15, 75, 65)), empty(4), empty(5)]
    (part,) = feed(tracker, observations)
    assert part.best is observations[3] and part.fault_frames == 2 and not part.all_faults


def test_a_stuck_part_is_closed_after_max_frames_and_tracking_goes_on() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=1, leave_frames=1, max_frames_per_part=4))
    parts = feed(tracker, [seen(i) for i in range(10)] + [empty(10)])
    assert [(p.first_frame, p.last_frame, p.exit_reason) for p in parts] == [
        (0, 3, "max_frames"),
        (4, 7, "max_frames"),
        (8, 9, "left"),
    ]


def test_flush_closes_a_part_in_view_but_not_one_still_debouncing() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=2, leave_frames=2))
    assert feed(tracker, [seen(0), seen(1), seen(2)])[0].exit_reason == "end_of_stream"
    assert feed(tracker, [empty(3), seen(4)]) == []


def test_per_frame_mode_makes_every_frame_one_part() -> None:
    tracker = PartTracker(TrackerConfig(per_frame=True))
    no_depth = Obs(frame(2), None)  # RGB-only sample: presence unknown, still scored
    observations = [seen(0), empty(1), no_depth, faulted(3)]
    parts = feed(tracker, observations)
    assert [p.frames for p in parts] == [1, 1, 1, 1]
    assert [p.best for p in parts] == [observations[0], observations[1], observations[2], None]
    assert [p.exit_reason for p in parts] == ["frame"] * 4


def test_truth_is_the_real_part_seen_most() -> None:
    tracker = PartTracker(TrackerConfig(enter_frames=1, leave_frames=1))
    observations = [
        seen(0, part_id=7, defective=True),
        seen(1, part_id=8, defective=False),
        seen(2, part_id=8, defective=False),
        empty(3),
    ]
    (part,) = feed(tracker, observations)
    assert part.truth is not None and part.truth["part_id"] == 8
    assert feed(PartTracker(TrackerConfig(enter_frames=1)), [seen(0), empty(1), empty(2)])[0].truth is None


@pytest.mark.parametrize("seed", range(5))
def test_every_run_of_frames_becomes_exactly_one_part(seed: int) -> None:
    """Random belts: occupied runs of >= enter frames separated by >= leave empty frames are one part each."""
    rng = np.random.default_rng(seed)
    enter, leave = 2, 3
    observations: list[Obs] = []
    expected: list[tuple[int, int]] = []
    number = 0
    for _ in range(30):
        for _ in range(int(rng.integers(leave, leave + 4))):
            observations.append(empty(number))
            number += 1
        length = int(rng.integers(enter, 12))
        start = number
        for _ in range(length):
            observations.append(faulted(number) if rng.random() < 0.2 else seen(number))
            number += 1
        expected.append((start, start + length - 1))
    parts = feed(PartTracker(TrackerConfig(enter_frames=enter, leave_frames=leave, max_frames_per_part=50)), observations)
    assert [(p.first_frame, p.last_frame) for p in parts] == expected
    assert [p.exit_reason for p in parts] == ["left"] * (len(expected) - 1) + ["end_of_stream"]
    assert [p.part_id for p in parts] == list(range(len(expected)))
    # No frame belongs to two parts.
    spans = [(p.first_frame, p.last_frame) for p in parts]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="enter_frames"):
        TrackerConfig(enter_frames=0)
    with pytest.raises(ConfigError, match="max_frames_per_part"):
        TrackerConfig(enter_frames=5, max_frames_per_part=3)
    with pytest.raises(ConfigError, match="roi"):
        TrackerConfig(roi=(0.5, 0.0, 0.2, 1.0))


def test_best_view_is_the_most_centred_whole_part_not_the_largest() -> None:
    """Off-centre views show other walls and light than the centred training parts: centred wins."""
    tracker = PartTracker(TrackerConfig(enter_frames=1, leave_frames=1))
    off_centre_large = seen(0, (5, 5, 60, 60))
    centred_small = seen(1, (35, 25, 65, 55))
    (part,) = feed(tracker, [off_centre_large, centred_small, empty(2)])
    assert part.best is centred_small
