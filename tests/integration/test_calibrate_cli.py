"""``edge-ad calibrate plane | threshold | reject-timing`` end to end, with their exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_ad.bundle import load_bundle, verify_bundle
from edge_ad.cli import app
from edge_ad.config import load_station
from edge_ad.dataset import write_sample
from edge_ad.plane import Plane
from edge_ad.synth import render_scene, sample_rig
from edge_ad.synth_config import SynthConfig
from tests.conftest import REPO_ROOT

SYNTH = SynthConfig(width=128, height=96)
D405 = REPO_ROOT / "firmware_configs" / "stations" / "d405_close_range.yaml"


def _belt(root: Path, n: int, part_from: int | None = None) -> Plane:
    rig = sample_rig(np.random.default_rng(11), SYNTH)
    for i in range(n):
        xy = (0.0, 0.0) if part_from is not None and i >= part_from else None
        scene = render_scene(2000 + i, SYNTH, part_xy_m=xy, rig=rig)
        write_sample(root, "test", "good", i, scene.rgb, scene.xyz)
    return rig.plane


def _station(tmp_path: Path) -> Path:
    # The D405 example, with a depth range that fits the synthetic rig (belt at ~0.4 m).
    path = tmp_path / "station.yaml"
    path.write_text(D405.read_text(encoding="utf-8").replace("plane_inlier_m: 0.002", "plane_inlier_m: 0.004"), encoding="utf-8")
    return path


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def _text(result: Any) -> str:
    return " ".join(result.output.split())


def test_calibrate_plane_writes_the_station_and_it_still_checks(tmp_path: Path) -> None:
    truth = _belt(tmp_path / "belt", 8)
    station = _station(tmp_path)
    result = _invoke(["calibrate", "plane", "--station", str(station), "--camera", f"folder:{tmp_path / 'belt'}", "--frames", "30"])
    assert result.exit_code == 0, result.output
    assert "belt plane from 8 frames" in _text(result)
    config = load_station(station)
    assert config.geometry.method == "calibrated"
    assert config.geometry.plane is not None
    assert config.geometry.plane.angle_to_deg(truth) < 0.5 and abs(config.geometry.plane.d - truth.d) < 0.001
    assert config.noise_path() == tmp_path / "station.belt_noise.npy" and config.noise_path().is_file()  # type: ignore[union-attr]
    assert "# written by `edge-ad calibrate plane`" in station.read_text(encoding="utf-8")
    assert _invoke(["check", "config", str(station)]).exit_code == 0


def test_calibrate_plane_refuses_a_part_on_the_belt_with_exit_6(tmp_path: Path) -> None:
    _belt(tmp_path / "belt", 4, part_from=1)
    station = _station(tmp_path)
    before = station.read_text(encoding="utf-8")
    result = _invoke(["calibrate", "plane", "--station", str(station), "--camera", f"folder:{tmp_path / 'belt'}"])
    assert result.exit_code == 6, result.output
    assert "something stands on the belt" in _text(result)
    assert station.read_text(encoding="utf-8") == before
    assert not (tmp_path / "station.belt_noise.npy").exists()


def test_calibrate_reject_timing_writes_the_station_and_test_fires(tmp_path: Path) -> None:
    station = _station(tmp_path)
    result = _invoke(
        ["calibrate", "reject-timing", "--belt-speed", "0.25", "--distance-mm", "400", "--actuator-lead-ms", "20",
         "--station", str(station), "--test-fire", "--gpio", "sim", "--pulses", "2"]
    )
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "1580.0 ms" in text and "pulse 2: rise" in text
    config = load_station(station)
    assert config.reject.delay_mm == 400 and config.reject.belt_speed_mps == 0.25
    assert abs(config.reject_timing().delay_s - 1.58) < 1e-9


def test_calibrate_reject_timing_too_close_exits_2(tmp_path: Path) -> None:
    station = _station(tmp_path)
    before = station.read_text(encoding="utf-8")
    result = _invoke(["calibrate", "reject-timing", "--belt-speed", "0.25", "--distance-mm", "40", "--station", str(station)])
    assert result.exit_code == 2
    assert "reject.delay_mm: the pulse would start" in _text(result)
    assert station.read_text(encoding="utf-8") == before


@pytest.mark.torch
def test_calibrate_threshold_on_the_trained_tiny_bundle(tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)  # the session fixture is shared: never change it
    result = _invoke(["calibrate", "threshold", "--bundle", str(bundle), "--data", str(tiny_dataset), "--frr", "0.05",
                      "--json", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "recall per defect type" in text and "manifest re-hashed and verified" in text
    assert verify_bundle(bundle).ok
    threshold = load_bundle(bundle).manifest.scoring.threshold
    assert threshold.target_frr == 0.05 and threshold.achieved_frr is not None and threshold.achieved_frr <= 0.05
    assert threshold.data_hash is not None and threshold.data_hash.startswith("sha256:")


@pytest.mark.torch
def test_calibrate_threshold_estimates_recall_on_synthetic_defects(
    tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    result = _invoke(["calibrate", "threshold", "--bundle", str(tiny_bundle), "--data", str(tiny_dataset),
                      "--frr", "0.05", "--synthetic-defects", "6", "--dry-run", "--json", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    assert "synthetic DefectMaker defects (estimate)" in _text(result) and "bundle not changed" in _text(result)
    record = json.loads((tmp_path / "t.json").read_text())
    synthetic = record["synthetic_recall"]
    # The estimate is taken at the threshold just calibrated, on six defects spread over the six classes.
    assert synthetic["threshold"] == pytest.approx(record["threshold"]["threshold"])
    assert sum(row["n"] for row in synthetic["per_class"].values()) == 6
    assert 0.0 <= synthetic["recall"] <= 1.0
