"""`edge-ad run --station S.yaml`: the station file drives camera, geometry, tracking and the reject output."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge_ad.cli import app
from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config

STATION = """\
station:
  name: bench-station
camera:
  uri: synthetic:5
  width: 64
  height: 64
  fps: 30
geometry:
  method: plane
  threshold_m: 0.005
  roi: [0.0, 0.0, 1.0, 1.0]
model:
  bundle: bundle
decision:
  threshold: {threshold}
reject:
  delay_s: 1.5
  pulse_ms: 40
metrics:
  port: null
archive:
  dir: archive
"""


def _station(tmp_path: Path, threshold: str) -> Path:
    make_tiny_bundle(tmp_path / "bundle", preprocess_config=tiny_preprocess_config(image_size=64, depth_size=64))
    path = tmp_path / "station.yaml"
    path.write_text(STATION.format(threshold=threshold), encoding="utf-8")
    return path


def test_station_run_decides_every_part_with_the_station_threshold(tmp_path: Path) -> None:
    # A station threshold of ~0 rejects every scored part: proof that the override reached the decision.
    station = _station(tmp_path, "1.0e-9")
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(
        app, ["run", "--station", str(station), "--max-parts", "3", "--no-realtime", "--no-notify", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["parts"] >= 3
    assert summary["accepted"] == 0
    assert summary["rejected"] + summary["fault_rejected"] == summary["parts"]
    # Every reject reached the station's archive (written off the loop, flushed at close).
    records = sorted((tmp_path / "archive").rglob("*.json"))
    assert len(records) == summary["parts"], [p.name for p in records]


def test_run_with_metrics_endpoint_and_archive_flags(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # an ephemeral port that is free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bundle = make_tiny_bundle(
        tmp_path / "bundle", threshold=1e-9, preprocess_config=tiny_preprocess_config(image_size=64, depth_size=64)
    )
    result = CliRunner().invoke(
        app,
        ["run", "--bundle", str(bundle), "--camera", "synthetic:2", "--size", "64", "--max-parts", "2", "--no-realtime",
         "--no-notify", "--archive", str(tmp_path / "arch"), "--metrics-port", str(port), "--log-file",
         str(tmp_path / "run.log")],
    )
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{port}/metrics" in result.output
    assert len(list((tmp_path / "arch").rglob("*.json"))) >= 2


def test_station_without_bundle_and_no_flag_exits_2(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(STATION.replace("model:\n  bundle: bundle\n", "").format(threshold="null"), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--station", str(station), "--max-parts", "1", "--no-notify"])
    assert result.exit_code == 2, result.output
    assert "model.bundle" in result.output


def test_station_with_unknown_key_never_starts(tmp_path: Path) -> None:
    station = _station(tmp_path, "null")
    station.write_text(station.read_text().replace("pulse_ms: 40", "pulse_ms: 40\n  dealy_s: 2"), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--station", str(station), "--max-parts", "1", "--no-notify"])
    assert result.exit_code == 2
    assert "dealy_s" in result.output
