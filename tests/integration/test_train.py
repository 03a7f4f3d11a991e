"""Training end to end: ast-tiny on the tiny disc dataset, run files, feature cache, CLI errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edge_ad.cli import app  # noqa: E402
from edge_ad.dataset import open_split  # noqa: E402
from edge_ad.detection_metrics import auroc  # noqa: E402
from edge_ad.preprocess import PreprocessConfig  # noqa: E402
from tests.helpers.tiny_parts import make_tiny_parts  # noqa: E402
from trainer.feature_cache import FeatureCache  # noqa: E402
from trainer.features import prepare_split  # noqa: E402
from trainer.inference import score_split  # noqa: E402
from trainer.run_io import load_detector  # noqa: E402
from trainer.train_run import split_train_validation  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.slow
def test_ast_tiny_scores_defects_above_good_parts(tiny_run: Path, tiny_dataset: Path) -> None:
    loaded = load_detector(tiny_run)
    scored = score_split(loaded, open_split(tiny_dataset, "test"), batch_size=8, progress=False)
    scores = np.array([s.score for s in scored])
    labels = np.array([s.label for s in scored])
    assert {s.defect_type for s in scored} == {"good", "dent", "stain"}
    assert auroc(scores, labels) >= 0.85
    assert all(s.anomaly_map.shape == (16, 16) and s.has_mask for s in scored)
    assert all(s.gt is not None and s.gt.shape == (96, 96) for s in scored)


@pytest.mark.slow
def test_run_folder_is_complete_and_consistent(tiny_run: Path, tiny_dataset: Path) -> None:
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["family"] == "ast" and config["preset"] == "ast-tiny" and config["mode"] == "rgbd"
    assert config["aggregation"] == "max"  # the data has xyz: foreground mask, max aggregation
    assert config["model"]["grid"] == 16 and config["preprocess"]["depth_size"] == 128
    assert (
        config["backbone"]["name"] == "efficientnet_lite0" and len(config["backbone"]["weights_sha256"]) == 64
    )
    assert config["data"]["validation_source"] == "validation"
    assert PreprocessConfig.from_dict(config["preprocess"]).mode == "rgbd"
    log = json.loads((tiny_run / "train_log.json").read_text())
    epochs = config["train"]["epochs"]
    assert len(log["teacher"]) == epochs and len(log["student"]) == epochs
    assert log["teacher"][-1]["loss"] < log["teacher"][0]["loss"]
    assert log["student"][-1]["loss"] < log["student"][0]["loss"]
    val = json.loads((tiny_run / "validation_scores.json").read_text())
    assert val["names"] == [f"validation/good/{i:03d}" for i in range(4)] and val["has_mask"] is True
    # The scores written at the end of training are what the reloaded run computes.
    loaded = load_detector(tiny_run)
    again = score_split(loaded, open_split(tiny_dataset, "validation"), progress=False)
    np.testing.assert_allclose([s.score for s in again], val["scores"], rtol=1e-4)
    nll = score_split(loaded, open_split(tiny_dataset, "validation"), score="teacher-nll", progress=False)
    np.testing.assert_allclose([s.score for s in nll], val["scores_by_kind"]["teacher-nll"], rtol=1e-4)


def test_feature_cache_hits_and_misses(tmp_path: Path) -> None:
    data = make_tiny_parts(
        tmp_path / "data", n_train=3, n_validation=0, n_test_good=0, n_test_per_defect=0, size=48
    )
    split = open_split(data, "train")
    config = PreprocessConfig(image_size=32, depth_size=32, mask_dilate_px=2)
    cache = FeatureCache(tmp_path / "cache")
    device = torch.device("cpu")
    first, hit = prepare_split(split, config, None, cache, device, progress=False)
    assert not hit and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second, hit = prepare_split(split, config, None, cache, device, progress=False)
    assert hit and second.names == first.names and np.array_equal(second.depth, first.depth)
    assert first.depth.shape == (3, 1, 32, 32) and first.has_mask.all() and first.features is None
    other = PreprocessConfig(image_size=32, depth_size=32, mask_dilate_px=3)
    assert not prepare_split(split, other, None, cache, device, progress=False)[1]  # other preprocessing
    xyz = split.refs[0].xyz
    stat = xyz.stat()
    os.utime(xyz, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file changed
    assert not prepare_split(split, config, None, cache, device, progress=False)[1]
    assert prepare_split(split, config, None, cache, device, progress=False)[1]
    assert not prepare_split(split, config, None, FeatureCache(None), device, progress=False)[1]  # disabled


def test_validation_is_held_out_of_train_when_there_is_no_split(tmp_path: Path) -> None:
    data = make_tiny_parts(tmp_path, n_train=10, n_validation=0, n_test_good=0, n_test_per_defect=0, size=32)
    train, val, source = split_train_validation(data, 0.2, seed=0)
    assert source == "train-holdout" and len(train) == 8 and len(val) == 2
    assert not {r.name for r in train.refs} & {r.name for r in val.refs}
    assert [r.name for r in split_train_validation(data, 0.2, seed=0)[1].refs] == [r.name for r in val.refs]


def test_cli_train_writes_a_run(tmp_path: Path) -> None:
    data = make_tiny_parts(
        tmp_path / "data", n_train=4, n_validation=2, n_test_good=0, n_test_per_defect=0, size=64
    )
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "ast-tiny",
        "--epochs",
        "1",
        "--mode",
        "depth",
    ]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "cache"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    for name in ("config.yaml", "checkpoint.pt", "train_log.json", "validation_scores.json"):
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["mode"] == "depth" and config["seed"] == 3 and config["train"]["epochs"] == 1
    assert config["backbone"]["weights_sha256"] is None  # depth mode never loads the backbone


def test_cli_depth_mode_on_rgb_only_data_is_a_config_error(tmp_path: Path) -> None:
    data = make_tiny_parts(
        tmp_path, n_train=2, n_validation=0, n_test_good=0, n_test_per_defect=0, size=32, with_xyz=False
    )
    result = CliRunner().invoke(
        app, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--mode", "rgbd"]
    )
    assert result.exit_code == 2
    assert "needs depth" in result.output and "--mode rgb" in result.output


def test_cli_missing_data_and_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert missing.exit_code == 3 and "nope" in missing.output
    monkeypatch.delenv("EDGE_AD_WEIGHTS_DIR", raising=False)
    data = make_tiny_parts(tmp_path, n_train=2, n_validation=1, n_test_good=0, n_test_per_defect=0, size=32)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "ast-paper"]
    no_weights = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert no_weights.exit_code == 10 and "efficientnet-b5-b6417697.pth" in no_weights.output
