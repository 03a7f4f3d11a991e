"""``edge-ad record``: frames and parts into the MVTec 3D-AD layout, from any source, and the whole
record -> replay -> record -> train -> evaluate chain through a RealSense recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_ad.cli import app
from edge_ad.dataset import open_split
from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Frame
from edge_ad.recorder import RecordSettings, RecordTarget, next_index, record
from edge_ad.sources import SourceExhausted, open_source
from tests.helpers.datasets import make_mvtec3d

LINE = {"realtime": False, "speed_mps": 1.0, "width": 96, "height": 96}


def test_record_frames_from_a_folder_round_trips_the_point_clouds(tmp_path: Path) -> None:
    data = make_mvtec3d(tmp_path / "src")
    source_split = open_split(data, "train")
    out = tmp_path / "rec" / "mine" / "train" / "good"
    summary = record(open_source(f"folder:{data}", split="train"), out, RecordSettings(count=3))
    assert [p.name for p in summary.written] == ["000.png", "001.png", "002.png"]
    recorded = open_split(tmp_path / "rec" / "mine", "train")
    assert len(recorded) == 3 and recorded.has_xyz
    for want, got in zip(source_split, recorded, strict=False):
        assert np.array_equal(got.rgb, want.rgb)
        assert want.xyz is not None and got.xyz is not None
        # z is the recorded depth; x, y come back through the estimated pinhole intrinsics.
        np.testing.assert_allclose(got.xyz[..., 2], want.xyz[..., 2], atol=1e-6)
        valid = want.xyz[..., 2] > 0
        np.testing.assert_allclose(got.xyz[valid], want.xyz[valid], atol=2e-3)
    # A second recording appends after the existing samples; --every skips frames.
    again = record(open_source(f"folder:{data}", split="train"), out, RecordSettings(count=2, every=2))
    assert [p.name for p in again.written] == ["003.png", "004.png"] and again.frames == 3
    assert next_index(out) == 5


def test_record_parts_writes_one_best_frame_per_part_with_truth_labels(tmp_path: Path) -> None:
    written: list[Path] = []
    line = open_source("synthetic:3", defect_rate=0.5, parts=6, defect_types=("bump",), **LINE)
    out = tmp_path / "data" / "part" / "test"
    summary = record(line, out, RecordSettings(count=10, parts=True), label_from_truth=True, on_sample=written.append)
    assert summary.ended == "exhausted" and summary.parts_seen == 6
    assert sum(summary.by_type.values()) + sum(summary.skipped.values()) == 6
    assert set(summary.by_type) <= {"good", "bump"} and summary.by_type["good"] >= 1
    assert written == summary.written
    split = open_split(tmp_path / "data" / "part", "test")
    assert len(split) == len(written)
    for sample in split:
        assert sample.xyz is not None
        z = sample.xyz[..., 2]
        assert 0.05 < float(np.median(z[z > 0])) < 5.0  # metres
    # The same line recorded frame by frame gives many more samples than parts.
    frames = record(open_source("synthetic:3", parts=1, **LINE), tmp_path / "f" / "c" / "train" / "good",
                    RecordSettings(count=1000))
    assert frames.ended == "exhausted" and len(frames.written) == frames.frames > 6


def test_record_target_and_truth_errors(tmp_path: Path) -> None:
    assert RecordTarget.parse(tmp_path / "c" / "train" / "good") == RecordTarget(tmp_path / "c", "train", "good")
    assert RecordTarget.parse(tmp_path / "c" / "test", label_from_truth=True).defect_type is None
    with pytest.raises(ConfigError, match="SPLIT"):
        RecordTarget.parse(tmp_path / "c" / "good")
    with pytest.raises(ConfigError, match="good parts only"):
        RecordTarget.parse(tmp_path / "c" / "train" / "dent")
    with pytest.raises(ConfigError, match="count"):
        RecordSettings(count=0)
    data = make_mvtec3d(tmp_path / "src")
    # A folder replay is one part per frame; its truth labels work, a bag's would not exist.
    summary = record(open_source(f"folder:{data}"), tmp_path / "r" / "c" / "test", RecordSettings(count=50, parts=True),
                     label_from_truth=True)
    assert summary.ended == "exhausted" and sum(summary.by_type.values()) == len(open_split(data, "test"))
    with pytest.raises(DataError, match="no ground-truth"):
        from edge_ad.recorder import truth_label

        truth_label(Frame(np.zeros((2, 2, 3), np.uint8), None, None, 0, 0.0, 0))


def test_record_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "data" / "part" / "train" / "good"
    result = runner.invoke(app, ["record", "--camera", "synthetic:1", "--size", "96", "--parts", "--count", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 samples (good 2)" in result.output
    assert sorted(p.name for p in (out / "xyz").iterdir()) == ["000.tiff", "001.tiff"]
    bad = runner.invoke(app, ["record", "--camera", "synthetic", "--count", "1", "--out", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2, bad.output
    unknown = runner.invoke(app, ["record", "--camera", "webcam:0", "--count", "1", "--out", str(out)])
    assert unknown.exit_code == 2 and "unknown source" in unknown.output


def _render_line(seed: int, parts: int, defect_rate: float) -> list[Frame]:
    line = open_source(f"synthetic:{seed}", defect_rate=defect_rate, parts=parts, **LINE)
    frames: list[Frame] = []
    with line:
        while True:
            try:
                frame = line.read(1.0)
            except SourceExhausted:
                return frames
            assert frame is not None
            frames.append(frame)


@pytest.mark.torch
@pytest.mark.realsense
@pytest.mark.slow
def test_synthetic_session_recorded_replayed_recorded_trained_and_evaluated(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.helpers.rs_recording import record_frames
    from trainer.evaluate import evaluate_run
    from trainer.train_run import train

    # 1. A session of good parts on the synthetic line, written to a RealSense recording.
    session = tmp_path / "session.db3"
    frames = _render_line(seed=5, parts=12, defect_rate=0.0)
    assert record_frames(session, frames, fps=30) == len(frames)
    # 2. Replayed with bag: and recorded one sample per part into train/good.
    data = tmp_path / "data" / "part"
    summary = record(open_source(f"bag:{session}"), data / "train" / "good", RecordSettings(count=100, parts=True))
    assert summary.ended == "exhausted" and summary.parts_seen == 12 and len(summary.written) == 12
    # 3. A test split from the same line with defects, labelled by the line's ground truth.
    test_line = open_source("synthetic:5", defect_rate=0.5, parts=12, defect_types=("bump", "dent"), **LINE)
    labelled = record(test_line, data / "test", RecordSettings(count=100, parts=True), label_from_truth=True)
    assert labelled.by_type["good"] >= 2 and labelled.by_type["good"] < sum(labelled.by_type.values())
    # 4. Train ast-tiny on the recorded parts and evaluate on the test split.
    train(data, tmp_path / "run", preset="ast-tiny", cache_dir=tmp_path / "cache", progress=False)
    result = evaluate_run(tmp_path / "run", data)
    auroc = result["image"]["auroc"]
    assert result["counts"]["test"] == sum(labelled.by_type.values())
    assert auroc is not None and np.isfinite(auroc) and auroc > 0.6
