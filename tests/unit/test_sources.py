"""Frame sources: URI registry, folder replay (order, truth, depth, pacing, end) and the synthetic line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.dataset import open_split
from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Frame, Intrinsics
from edge_ad.sources import FrameSource, SourceExhausted, known_schemes, open_source, parse_uri
from edge_ad.sources.folder import FolderSource, estimate_intrinsics
from edge_ad.sources.synthetic import SyntheticLineSource
from tests.helpers.datasets import make_mvtec3d, make_mvtecad


def drain(source: FrameSource, limit: int = 10_000) -> list[Frame]:
    """Every frame up to the end of a finite, unpaced source."""
    frames: list[Frame] = []
    with source:
        for _ in range(limit):
            try:
                frame = source.read(1.0)
            except SourceExhausted:
                return frames
            assert frame is not None
            frames.append(frame)
    raise AssertionError(f"source did not end within {limit} frames")


def advancing_sleep(clock: FakeClock) -> Any:
    """A sleep that moves the fake clock instead of waiting."""
    return lambda seconds: clock.advance(max(0, round(seconds * 1e9)))


# --- registry -------------------------------------------------------------------------------------


def test_registry_knows_builtin_schemes_and_parses_uris() -> None:
    assert {"folder", "synthetic"} <= set(known_schemes())
    assert parse_uri("folder:/data/x:y") == ("folder", "/data/x:y")
    assert parse_uri("synthetic") == ("synthetic", None)
    assert parse_uri("Synthetic://7") == ("synthetic", "7")


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown source 'webcam'.*folder.*synthetic"):
        open_source("webcam:0")


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="speed_mps.*takes the options: split, fps"):
        open_source("folder:.", speed_mps=1.0)


def test_bad_synthetic_seed_and_missing_folder() -> None:
    with pytest.raises(ConfigError, match="seed must be an integer"):
        open_source("synthetic:abc")
    with pytest.raises(DataError, match="not a directory"):
        open_source("folder:/nonexistent/edge-ad-folder")


# --- folder ---------------------------------------------------------------------------------------


def test_estimate_intrinsics_recovers_a_pinhole() -> None:
    k = Intrinsics(width=40, height=30, fx=55.0, fy=60.0, cx=18.5, cy=16.0)
    depth = np.linspace(0.4, 0.6, 40 * 30, dtype=np.float32).reshape(30, 40)
    depth[::7, ::5] = 0.0  # missing points are ignored
    got = estimate_intrinsics(k.deproject(depth))
    assert got is not None
    assert (got.width, got.height) == (40, 30)
    assert np.allclose([got.fx, got.fy, got.cx, got.cy], [55.0, 60.0, 18.5, 16.0], rtol=1e-4)
    assert estimate_intrinsics(np.zeros((30, 40, 3), np.float32)) is None


def test_folder_replays_test_split_in_order_with_truth_and_depth(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path, n_test_good=2, defects={"crack": 2, "hole": 1}, size=(24, 32))
    split = open_split(root, "test")
    source = open_source(f"folder:{root}")
    assert source.info().frame_is_part and (source.info().width, source.info().height) == (32, 24)
    frames = drain(source)
    assert len(frames) == len(split) == 5
    assert [f.frame_number for f in frames] == list(range(5))
    for index, (frame, sample) in enumerate(zip(frames, split, strict=True)):
        assert frame.truth == {
            "part_id": index,
            "label": sample.label,
            "defective": bool(sample.label),
            "defect_type": sample.defect_type,
            "name": sample.name,
            "part_present": True,
        }
        assert np.array_equal(frame.color, sample.rgb)
        assert np.array_equal(frame.depth, sample.xyz[..., 2])
        # The estimated intrinsics give back the recorded point cloud (the helper's cloud is a pinhole).
        assert np.allclose(frame.xyz(), sample.xyz, atol=1e-5)
    assert [f.truth["defect_type"] for f in frames] == ["good", "good", "crack", "crack", "hole"]


def test_folder_other_split_and_rgb_only(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path / "a", n_validation=3)
    assert len(drain(open_source(f"folder:{root}", split="validation"))) == 3
    rgb_only = make_mvtecad(tmp_path / "b", n_test_good=1, defects={"crack": 1})
    frames = drain(open_source(f"folder:{rgb_only}"))
    assert len(frames) == 2 and all(f.depth is None and f.intrinsics is None and f.xyz() is None for f in frames)


def test_folder_is_exhausted_and_stays_exhausted(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path, n_test_good=1, defects={})
    source = FolderSource(root)
    with source:
        assert source.read(0.1) is not None
        for _ in range(2):
            with pytest.raises(SourceExhausted, match="all 1 samples delivered"):
                source.read(0.1)


def test_folder_pacing_on_a_fake_clock(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path, n_test_good=3, defects={})
    clock = FakeClock(start_ns=5_000)
    source = open_source(f"folder:{root}", fps=10.0, clock=clock, sleep=advancing_sleep(clock))
    with source:
        first = source.read(1.0)
        # The next frame is due 100 ms later: a 30 ms read times out (None), costing 30 ms.
        assert source.read(0.03) is None
        second = source.read(1.0)
        third = source.read(1.0)
    assert first is not None and second is not None and third is not None
    assert [f.arrival_ns for f in (first, second, third)] == [5_000, 100_005_000, 200_005_000]
    assert [f.device_timestamp_ms for f in (first, second, third)] == [0.0, 100.0, 200.0]


# --- synthetic line -------------------------------------------------------------------------------


def box_renderer(seed: int, config: Any, part_xy_m: Any = None, defect: Any = None, *, rig: Any, **_: Any) -> Any:
    """A cheap stand-in for render_scene: a 2 cm tall square part on the rig's belt."""
    z = rig.belt_z.astype(np.float32).copy()
    mask = np.zeros(z.shape, dtype=bool)
    if part_xy_m is not None:
        mask = (np.abs(rig.belt_s - part_xy_m[0]) < 0.03) & (np.abs(rig.belt_t - part_xy_m[1]) < 0.03)
        z[mask] -= 0.02
    rgb = np.full((*z.shape, 3), 80, dtype=np.uint8)
    rgb[mask] = 200 if defect is None else 30
    return SimpleNamespace(rgb=rgb, xyz=rig.intrinsics.deproject(z), object_mask=mask, intrinsics=rig.intrinsics)


def line(seed: int = 1, **options: Any) -> SyntheticLineSource:
    options = {"width": 48, "height": 48, "speed_mps": 1.0, "realtime": False, "renderer": box_renderer} | options
    source = open_source(f"synthetic:{seed}", **options)
    assert isinstance(source, SyntheticLineSource)
    return source


def test_synthetic_line_is_deterministic_per_seed() -> None:
    a, b, c = drain(line(5, parts=3)), drain(line(5, parts=3)), drain(line(6, parts=3))
    assert len(a) == len(b) > 0
    for fa, fb in zip(a, b, strict=True):
        assert fa.frame_number == fb.frame_number and fa.truth == fb.truth
        assert np.array_equal(fa.color, fb.color) and np.array_equal(fa.depth, fb.depth)
    assert [f.truth for f in a] != [f.truth for f in c] or not all(
        np.array_equal(fa.depth, fc.depth) for fa, fc in zip(a, c, strict=False)
    )


def test_parts_enter_cross_and_leave_one_at_a_time() -> None:
    source = line(2, parts=4, gap_m=0.05)
    frames = drain(source)
    ids = [f.truth["part_id"] for f in frames]
    # Runs of the same part id, separated by empty-belt frames, in increasing order.
    runs: list[tuple[Any, int]] = []
    for value in ids:
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    assert [value for value, _ in runs] == [None, 0, None, 1, None, 2, None, 3, None]
    assert all(3 <= count <= source.info().frames_per_part + 1 for value, count in runs if value is not None)
    assert all(count >= 2 for value, count in runs[1:-1] if value is None)
    assert frames[0].truth["part_present"] is False
    present = [f for f in frames if f.truth["part_present"]]
    assert all(f.truth["defective"] == (f.truth["defect_type"] != "good") for f in present)
    # The part moves with the belt: its x position grows within a run.
    xs = [f.truth["part_xy_m"][0] for f in frames if f.truth["part_id"] == 1]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 0.05


def test_defect_share_follows_defect_rate() -> None:
    source = line(3, defect_rate=0.3)
    parts = [source.part(i) for i in range(2000)]
    share = sum(p.defect is not None for p in parts) / len(parts)
    assert 0.27 < share < 0.33
    assert {p.defect for p in parts if p.defect} == {"dent", "bump", "stain", "crack", "missing", "contamination"}
    good_line = line(3, defect_rate=0.0)
    assert all(good_line.part(i).defect is None for i in range(200))


def test_realtime_line_paces_and_skips_frames_it_was_too_slow_for() -> None:
    clock = FakeClock()
    source = line(1, realtime=True, fps=20.0, clock=clock, sleep=advancing_sleep(clock))
    with source:
        assert source.read(1.0).frame_number == 0  # type: ignore[union-attr]
        assert source.read(0.01) is None  # next frame is due at 50 ms
        assert source.read(1.0).frame_number == 1  # type: ignore[union-attr]
        clock.advance_ms(130)  # the reader was busy for 2.6 frame periods
        late = source.read(1.0)
    assert late is not None and late.frame_number == 3 and late.arrival_ns == 180_000_000
    assert late.device_timestamp_ms == 150.0


def test_real_renderer_line_shows_parts_with_valid_depth() -> None:
    source = open_source("synthetic:4", width=48, height=48, speed_mps=1.5, realtime=False, parts=1)
    frames = drain(source)
    with_part = [f for f in frames if f.truth["part_present"]]
    assert with_part and len(with_part) < len(frames)
    for frame in frames:
        assert frame.color.shape == (48, 48, 3) and frame.depth is not None and frame.depth.dtype == np.float32
        assert np.count_nonzero(frame.depth > 0) > 0.5 * frame.depth.size
    # A part stands out of the belt: some pixels are closer to the camera than anything on an empty frame.
    empty = next(f for f in frames if not f.truth["part_present"])
    middle = with_part[len(with_part) // 2]
    assert np.percentile(middle.depth[middle.depth > 0], 1) < np.percentile(empty.depth[empty.depth > 0], 1) - 0.005


def test_frame_step_handles_gaps_repeats_wraps_and_restarts() -> None:
    from edge_ad.capture_loop import COUNTER_MODULUS, frame_step

    assert frame_step(10, 11) == 1
    assert frame_step(10, 14) == 4  # three frames lost
    assert frame_step(10, 10) == 0  # repeated frame
    assert frame_step(10, 7) == -3  # an older frame delivered late
    assert frame_step(COUNTER_MODULUS - 2, 1) == 3  # across the wrap: two lost, not four billion
    assert frame_step(COUNTER_MODULUS - 1, 0) == 1  # a clean wrap is no gap
    assert frame_step(5_000_000, 3) == 1  # counter restarted (reconnect): next frame, no gap


def test_synthetic_line_can_stand_at_a_datasets_station() -> None:
    """rig_seed: the line's camera and belt are those of the dataset generated with that seed."""
    from edge_ad.synth import SynthConfig, dataset_rig

    config = SynthConfig(width=64, height=64)
    line = open_source("synthetic:5", rig_seed=2, width=64, height=64)
    expected = dataset_rig(2, config)
    assert line.rig.intrinsics == expected.intrinsics
    assert np.allclose(line.rig.belt_s, expected.belt_s)
    other = open_source("synthetic:5", width=64, height=64)
    assert not np.allclose(other.rig.belt_s, expected.belt_s)
