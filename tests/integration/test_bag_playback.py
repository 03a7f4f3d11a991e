"""``bag:FILE`` playback: the shared D435 recording, and recordings made here through a software device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Frame, Intrinsics
from edge_ad.sources import SourceExhausted, open_source
from edge_ad.sources.bag import BagSource

pytestmark = pytest.mark.realsense


def drain(uri: str) -> tuple[list[Frame], dict[str, int]]:
    """Every frame of a recording, read as fast as playback gives them."""
    source = open_source(uri)
    assert isinstance(source, BagSource)
    frames: list[Frame] = []
    with source:
        for _ in range(10_000):
            try:
                frame = source.read(5.0)
            except SourceExhausted:
                return frames, source.counters
            assert frame is not None, "playback stalled"
            frames.append(frame)
    raise AssertionError("playback did not end")


def test_shared_d435_recording_plays_aligned_with_scale_and_intrinsics(realsense_bag: Path) -> None:
    frames, counters = drain(f"bag:{realsense_bag}")
    # 2 depth frames and 1 colour frame: one Frame, colour-driven, with the nearer depth frame.
    assert len(frames) == 1 and counters["unpaired"] == 0
    frame = frames[0]
    intr = frame.intrinsics
    assert intr is not None and (intr.width, intr.height) == (640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == pytest.approx((613.204, 613.419, 319.939, 239.183), abs=1e-3)
    assert frame.color.shape == (480, 640, 3) and frame.color.dtype == np.uint8
    # Aligned to colour: colour resolution, metres (z16 * 0.001), 0 where missing.
    assert frame.depth is not None and frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    valid = frame.depth > 0
    assert 0.85 < valid.mean() <= 1.0
    assert 1.40 < float(np.median(frame.depth[valid])) < 1.60
    # Every depth value is a whole number of millimetres: the 0.001 depth scale was applied.
    mm = frame.depth[valid] * 1000.0
    assert np.allclose(mm, np.round(mm), atol=0.02)
    assert frame.frame_number == 162 and frame.truth["depth_frame_number"] == 169
    xyz = frame.xyz()
    assert xyz is not None and np.allclose(xyz[..., 2], frame.depth)


def _frames(n: int, size: tuple[int, int] = (48, 64)) -> list[Frame]:
    height, width = size
    intr = Intrinsics(width, height, 50.0, 52.0, (width - 1) / 2, (height - 1) / 2)
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        color = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        depth = (0.4 + 0.001 * k + 0.0001 * np.arange(width, dtype=np.float32))[None, :].repeat(height, 0)
        depth[k % height, :5] = 0.0  # some missing depth
        out.append(Frame(color, depth.astype(np.float32), intr, k + 3, 0.0, 0))
    return out


def test_software_recording_replays_every_frame_exactly_and_deterministically(tmp_path: Path) -> None:
    from tests.helpers.rs_recording import record_frames

    recorded = _frames(40)
    path = tmp_path / "session.db3"
    assert record_frames(path, recorded) == 40
    first, counters = drain(f"bag:{path}")
    again, _ = drain(f"bag://{path}")
    assert counters == {"unpaired": 0, "duplicates": 0, "missing": 0}
    assert [f.frame_number for f in first] == [f.frame_number for f in recorded]
    assert [f.frame_number for f in again] == [f.frame_number for f in recorded]
    for want, got, got2 in zip(recorded, first, again, strict=True):
        assert np.array_equal(got.color, want.color)
        assert want.depth is not None and got.depth is not None
        np.testing.assert_allclose(got.depth, want.depth, atol=0.0006)  # z16 millimetre quantization
        assert np.array_equal(got.depth == 0, want.depth == 0)
        assert got.intrinsics is not None and got.intrinsics.fx == pytest.approx(50.0) and got.intrinsics.fy == pytest.approx(52.0)
        assert np.array_equal(got.depth, got2.depth)


def test_bag_uri_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.bag or \.db3"):
        open_source(f"bag:{tmp_path / 'x.mp4'}")
    with pytest.raises(DataError, match="does not exist"):
        open_source(f"bag:{tmp_path / 'missing.bag'}")
    with pytest.raises(ConfigError, match="expected bag:FILE"):
        open_source("bag")
    junk = tmp_path / "junk.bag"
    junk.write_bytes(b"not a recording")
    with pytest.raises(DataError, match="cannot open"):
        open_source(f"bag:{junk}").start()
