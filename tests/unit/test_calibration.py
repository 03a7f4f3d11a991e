"""Station calibration: belt plane from a recording, threshold into a real bundle, reject timing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from calibration.plane import PlaneLimits, calibrate_plane, collect_frames, store_plane_calibration
from calibration.reject_timing import compute_reject_delay, fire_test_pulses
from calibration.threshold import calibrate_threshold, write_threshold
from edge_ad.bundle import load_bundle, verify_bundle
from edge_ad.clock import FakeClock
from edge_ad.config import load_station
from edge_ad.dataset import write_sample
from edge_ad.errors import BundleError, ConfigError, GeometryError, PlaneFitError
from edge_ad.frame import Frame
from edge_ad.inspector import Inspector
from edge_ad.line.outputs import SimOutput
from edge_ad.plane import Plane
from edge_ad.sources import open_source
from edge_ad.synth import render_scene, sample_rig
from edge_ad.synth_config import SynthConfig
from edge_ad.thresholds import threshold_for_frr
from tests.helpers.bundles import make_tiny_bundle
from tests.helpers.tiny_parts import DEFECTS, make_tiny_parts

SYNTH = SynthConfig(width=128, height=96)


def write_belt_recording(root: Path, n: int = 12, seed: int = 5, part_from: int | None = None) -> Plane:
    """Empty-belt frames of one synthetic rig in MVTec 3D-AD layout (test/good); frames from ``part_from`` on show a part."""
    rig = sample_rig(np.random.default_rng(seed), SYNTH)
    for i in range(n):
        xy = (0.0, 0.0) if part_from is not None and i >= part_from else None
        scene = render_scene(1000 + i, SYNTH, part_xy_m=xy, rig=rig)
        write_sample(root, "test", "good", i, scene.rgb, scene.xyz)
    return rig.plane


def _frames(root: Path, count: int = 30) -> list[Frame]:
    source = open_source(f"folder:{root}")
    with source:
        return collect_frames(source, count)


def test_plane_from_a_recording_within_half_a_degree_and_a_millimetre(tmp_path: Path) -> None:
    truth = write_belt_recording(tmp_path / "belt")
    frames = _frames(tmp_path / "belt")
    assert len(frames) == 12  # a short recording: all of it is used
    result = calibrate_plane(frames)
    assert result.plane.angle_to_deg(truth) < 0.5
    assert abs(result.plane.d - truth.d) < 0.001
    assert result.roi == (0.0, 0.0, 1.0, 1.0)  # the synthetic belt fills the view
    assert result.inlier_ratio > 0.99
    # Depth noise: sigma = 1 mm at 0.4 m (SynthConfig.depth_noise_m), the belt is ~0.4 m away.
    assert 0.0007 < result.median_noise_m < 0.0013
    assert result.noise_std_m.shape == (96, 128) and result.noise_std_m.dtype == np.float32


def test_roi_excludes_where_the_belt_is_not_seen(tmp_path: Path) -> None:
    truth = write_belt_recording(tmp_path / "belt", n=4)
    frames = _frames(tmp_path / "belt")
    blind = []
    for frame in frames:
        depth = frame.depth.copy()  # type: ignore[union-attr]
        depth[:, :20] = 0.0  # a guard rail hides the left 20 columns
        depth[80:, :] = 2.0  # the floor beyond the belt end, far behind it (outside the ROI)
        blind.append(Frame(frame.color, depth, frame.intrinsics, frame.frame_number, 0.0, 0))
    result = calibrate_plane(blind, PlaneLimits(z_max_m=1.0))
    x0, y0, x1, y1 = result.roi
    assert 20 / 128 <= x0 <= 22 / 128 and y0 == 0.0 and x1 == 1.0
    assert 78 / 96 <= y1 <= 80 / 96
    assert result.plane.angle_to_deg(truth) < 0.5
    assert np.isnan(result.noise_std_m[:, :20]).all()


def test_a_part_on_the_belt_is_refused(tmp_path: Path) -> None:
    write_belt_recording(tmp_path / "belt", n=6, part_from=2)
    with pytest.raises(PlaneFitError, match="something stands on the belt"):
        calibrate_plane(_frames(tmp_path / "belt"))


def test_no_belt_in_view_is_refused(tmp_path: Path) -> None:
    write_belt_recording(tmp_path / "belt", n=3)
    frames = _frames(tmp_path / "belt")
    with pytest.raises(GeometryError, match="belt not visible"):
        calibrate_plane(frames, PlaneLimits(z_min_m=1.0, z_max_m=2.0))  # the belt is at ~0.4 m


def test_a_belt_that_is_not_flat_is_refused(tmp_path: Path) -> None:
    write_belt_recording(tmp_path / "belt", n=3)
    wavy = []
    for frame in _frames(tmp_path / "belt"):
        x = np.arange(frame.depth.shape[1])  # type: ignore[union-attr]
        depth = frame.depth + 0.01 * np.sin(x / 6.0)[None, :].astype(np.float32)  # +-10 mm ripples
        wavy.append(Frame(frame.color, depth, frame.intrinsics, frame.frame_number, 0.0, 0))
    with pytest.raises(PlaneFitError, match="not flat|no dominant plane"):
        calibrate_plane(wavy)


def test_plane_calibration_is_stored_in_the_station(tmp_path: Path) -> None:
    write_belt_recording(tmp_path / "belt", n=4)
    result = calibrate_plane(_frames(tmp_path / "belt"))
    station_file = tmp_path / "line.yaml"
    station_file.write_text("# my station\nreject:\n  delay_s: 1.5   # keep me\n", encoding="utf-8")
    station = store_plane_calibration(station_file, result)
    assert station.geometry.method == "calibrated"
    assert station.geometry.plane is not None and station.geometry.plane.angle_to_deg(result.plane) < 1e-4
    assert station.geometry.roi == result.roi
    noise = np.load(station.noise_path())  # type: ignore[arg-type]
    np.testing.assert_array_equal(noise, result.noise_std_m)
    text = station_file.read_text(encoding="utf-8")
    assert "# my station" in text and "# keep me" in text
    assert load_station(station_file).foreground_config().plane == station.geometry.plane


# -- threshold -------------------------------------------------------------------------------------


def test_threshold_is_set_on_good_parts_and_written_into_the_bundle(tmp_path: Path) -> None:
    data = make_tiny_parts(tmp_path / "data")
    bundle = make_tiny_bundle(tmp_path / "bundle")
    result = calibrate_threshold(bundle, data, 0.05, progress=False)
    # The same numbers through the runtime path, computed here independently of calibration.
    good: dict[str, list[float]] = {}
    with Inspector.from_bundle(bundle) as inspector:
        for split in ("train", "validation", "test"):
            source = open_source(f"folder:{data}", split=split)
            with source:
                frames = [source.read(1.0) for _ in range(len(source))]  # type: ignore[arg-type]
            good[split] = [inspector.inspect(f).result.score for f in frames if f.truth["defect_type"] == "good"]  # type: ignore[union-attr]
    assert result.good_per_split == {split: len(scores) for split, scores in good.items()}
    n_good = sum(len(scores) for scores in good.values())
    assert result.good_faults == 0
    assert result.choice == threshold_for_frr(np.concatenate(list(good.values())), 0.05)
    assert result.choice.achieved_frr <= 0.05
    assert set(result.recall) == set(DEFECTS)
    assert all(0 <= r.rejected <= r.n for r in result.recall.values())
    assert result.data_hash.startswith("sha256:") and len(result.data_hash) == 7 + 64

    write_threshold(bundle, result)
    assert verify_bundle(bundle).ok
    scoring = load_bundle(bundle).manifest.scoring
    assert scoring.threshold.value == result.choice.threshold
    assert (scoring.threshold.target_frr, scoring.threshold.n_good) == (0.05, n_good)
    assert scoring.threshold.data_hash == result.data_hash
    assert scoring.normalization.method == "robust" and scoring.normalization.threshold == result.choice.threshold
    with Inspector.from_bundle(bundle) as inspector:
        assert inspector.threshold == result.choice.threshold
    # Same data, same hash; the threshold is the one threshold_for_frr gives on those scores.
    again = calibrate_threshold(bundle, data, 0.05, progress=False)
    assert again.data_hash == result.data_hash and again.choice == result.choice


def test_threshold_is_not_written_into_a_tampered_bundle(tmp_path: Path) -> None:
    data = make_tiny_parts(tmp_path / "data")
    bundle = make_tiny_bundle(tmp_path / "bundle")
    result = calibrate_threshold(bundle, data, 0.1, progress=False)
    before = (bundle / "manifest.yaml").read_text(encoding="utf-8")
    with (bundle / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError):
        write_threshold(bundle, result)
    assert (bundle / "manifest.yaml").read_text(encoding="utf-8") == before


# -- reject timing ---------------------------------------------------------------------------------


def test_reject_delay_in_time_and_in_encoder_counts() -> None:
    timed = compute_reject_delay(0.25, 400, actuator_lead_ms=20)
    assert math.isclose(timed.fire_delay_s, 1.6 - 0.02)
    assert timed.delay_counts is None and timed.reject.mode == "time"
    assert timed.margin_s > 1.0
    counted = compute_reject_delay(0.5, 400, counts_per_mm=4.0, actuator_lead_ms=20)
    assert counted.delay_counts == 1600 - 40  # 20 ms at 0.5 m/s = 10 mm = 40 counts
    updates = counted.station_updates()
    assert updates["reject.mode"] == "encoder" and updates["reject.delay_mm"] is None
    assert updates["reject.counts_per_mm"] == 4.0 and updates["reject.distance_mm"] == 400


def test_reject_delay_shorter_than_the_decision_latency_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"reject.delay_mm: the pulse would start 160 ms after capture"):
        compute_reject_delay(0.25, 40)
    with pytest.raises(ConfigError, match="actuator_lead_ms"):
        compute_reject_delay(1.0, 10, actuator_lead_ms=20)
    with pytest.raises(ConfigError, match="belt_speed_mps: must be > 0"):
        compute_reject_delay(0.0, 400)


def test_test_fire_pulses_the_sim_output_on_the_clock() -> None:
    clock = FakeClock()
    output = SimOutput(clock)
    edges = fire_test_pulses(output, clock, lambda s: clock.advance(round(s * 1e9)), pulses=3, pulse_s=0.04, period_s=0.5)
    assert edges == [(0, 40_000_000), (500_000_000, 540_000_000), (1_000_000_000, 1_040_000_000)]
    assert output.pulses() == edges
    assert output.closed and output.level is False


def test_station_yaml_written_by_calibration_is_plain_yaml(tmp_path: Path) -> None:
    station_file = tmp_path / "s.yaml"
    station_file.write_text("reject:\n  delay_s: 2.0\n", encoding="utf-8")
    from edge_ad.config import update_station_file

    update_station_file(station_file, compute_reject_delay(0.25, 400).station_updates())
    data = yaml.safe_load(station_file.read_text(encoding="utf-8"))
    assert data["reject"]["delay_s"] is None and data["reject"]["delay_mm"] == 400
