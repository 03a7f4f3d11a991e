"""Station config: example stations, the runtime types it produces, YAML line map and comment-keeping edits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge_ad.cli import app
from edge_ad.config import load_station, parse_station, update_station_file
from edge_ad.errors import CameraError, ConfigError
from edge_ad.frame import Frame, Intrinsics
from edge_ad.geometry import ForegroundConfig
from edge_ad.line.reject import RejectTiming
from edge_ad.part_tracker import TrackerConfig
from edge_ad.runtime import RuntimeConfig
from edge_ad.sources import SourceInfo
from edge_ad.sources import base as sources_base
from edge_ad.station_camera import probe_camera
from edge_ad.yaml_edit import update_yaml_text
from edge_ad.yaml_lines import parse_yaml
from tests.conftest import REPO_ROOT
from tests.helpers.bundles import make_tiny_bundle

STATIONS = REPO_ROOT / "firmware_configs" / "stations"
EXAMPLES = sorted(STATIONS.glob("*.yaml"))

MINIMAL = """\
station:
  name: test-station   # a comment that must survive edits
camera:
  uri: synthetic:3
  width: 64
  height: 64
  fps: 30
reject:
  delay_s: 1.5
  pulse_ms: 50
"""


def _write(tmp_path: Path, text: str, name: str = "station.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _text(result: Any) -> str:
    return " ".join(result.output.split())


def test_there_are_two_example_stations() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"d405_close_range.yaml", "d435_848x480_90fps.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_station_passes_check_config(path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "config", str(path)])
    assert result.exit_code == 0, result.output
    assert "station config OK" in result.output
    printed = yaml.safe_load(result.stdout.split("station config OK")[0])
    assert printed["camera"]["width"] == load_station(path).camera.width


def test_example_profiles_are_the_ones_asked_for() -> None:
    d405 = load_station(STATIONS / "d405_close_range.yaml")
    assert (d405.camera.width, d405.camera.height, d405.camera.fps) == (640, 480, 30)
    assert (d405.geometry.z_min_m, d405.geometry.z_max_m) == (0.07, 0.5)
    d435 = load_station(STATIONS / "d435_848x480_90fps.yaml")
    assert d435.camera.profile()["depth_width"] == 848 and d435.camera.profile()["depth_fps"] == 90
    assert d435.reject.mode == "encoder"
    # 400 mm at 4 counts/mm, less a 20 ms lead at 0.5 m/s (10 mm = 40 counts).
    assert d435.reject.delay_counts() == 1600 - 40


def test_station_produces_the_runtime_types(tmp_path: Path) -> None:
    text = MINIMAL + "geometry:\n  roi: [0.1, 0.2, 0.9, 0.8]\n  threshold_m: 0.004\ntracker:\n  leave_frames: 3\n"
    station = load_station(_write(tmp_path, text))
    foreground = station.foreground_config()
    assert type(foreground) is ForegroundConfig
    assert foreground == ForegroundConfig(roi=(0.1, 0.2, 0.9, 0.8), threshold_m=0.004)
    assert station.tracker_config() == TrackerConfig(leave_frames=3, roi=(0.1, 0.2, 0.9, 0.8))
    assert station.reject_timing() == RejectTiming(delay_s=1.5, pulse_s=0.05, late_tolerance_s=0.005)
    runtime = station.runtime_config(max_parts=7)
    assert isinstance(runtime, RuntimeConfig)
    assert (runtime.queue_size, runtime.read_timeout_s, runtime.max_parts) == (2, 0.1, 7)
    assert runtime.tracker.roi == (0.1, 0.2, 0.9, 0.8)
    assert "roi" not in station.to_dict()["tracker"]  # one place per setting


def test_delay_from_distance_speed_and_actuator_lead(tmp_path: Path) -> None:
    text = MINIMAL.replace("  delay_s: 1.5\n", "  delay_mm: 400\n  belt_speed_mps: 0.25\n  actuator_lead_ms: 20\n")
    timing = load_station(_write(tmp_path, text)).reject_timing()
    assert math.isclose(timing.delay_s, 1.6 - 0.02)


def test_relative_paths_resolve_against_the_station_file(tmp_path: Path) -> None:
    text = MINIMAL + "model:\n  bundle: ../bundles/b1\narchive:\n  dir: arch\nlogging:\n  file: logs/x.log\n"
    station = load_station(_write(tmp_path, text))
    assert station.bundle_path() == tmp_path / "../bundles/b1"
    assert station.archive_dir() == tmp_path / "arch"
    assert station.log_file() == tmp_path / "logs/x.log"


def test_depth_model_bundle_with_a_camera_without_depth_is_refused(tmp_path: Path) -> None:
    make_tiny_bundle(tmp_path / "bundle")  # an rgbd model
    text = MINIMAL.replace("  fps: 30\n", "  fps: 30\n  depth: false\n") + "model:\n  bundle: bundle\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"station.yaml:\d+: model.bundle: .*'rgbd' model \(needs depth\)"):
        load_station(path)
    assert load_station(path, check_bundle=False).camera.depth is False


def test_line_map_points_at_keys_and_sections() -> None:
    loaded = parse_yaml(MINIMAL, "s.yaml")
    assert loaded.line_of("camera.width") == 5
    assert loaded.line_of("reject.pulse_ms") == 10
    assert loaded.line_of("reject.delay_mm") == 8  # missing key: its section's line
    assert loaded.where("geometry.roi") == "s.yaml:1"


def test_edit_keeps_comments_and_order_and_inserts_missing_keys() -> None:
    text = update_yaml_text(
        MINIMAL,
        {
            "station.name": "renamed",
            "camera.fps": 15,
            "geometry.plane": {"normal": [np.float64(0.0), 0.1, -0.99], "d": 0.4},
            "reject.actuator_lead_ms": 20.0,
        },
    )
    assert "# a comment that must survive edits" in text
    data = yaml.safe_load(text)
    assert data["station"]["name"] == "renamed" and data["camera"]["fps"] == 15
    assert data["geometry"]["plane"] == {"normal": [0.0, 0.1, -0.99], "d": 0.4}
    assert data["reject"] == {"delay_s": 1.5, "pulse_ms": 50, "actuator_lead_ms": 20}
    assert list(data) == ["station", "camera", "reject", "geometry"]
    before, after = MINIMAL.splitlines()[1], text.splitlines()[1]
    assert after.startswith("  name: renamed ") and after.index("#") == before.index("#")  # comment column kept


def test_edit_of_flow_mappings_and_block_lists() -> None:
    text = update_yaml_text("a: {x: 1}\nb:\n  - 1\n  - 2\n# tail\n", {"a.y": 2, "b": [3], "c.d": "e: f"})
    assert yaml.safe_load(text) == {"a": {"x": 1, "y": 2}, "b": [3], "c": {"d": "e: f"}}
    assert "# tail" in text


def test_update_station_file_refuses_an_invalid_result_and_keeps_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"reject.pulse_ms: the pulse \(2000 ms\) must be shorter"):
        update_station_file(path, {"reject.pulse_ms": 2000})
    assert path.read_text(encoding="utf-8") == MINIMAL
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    station = update_station_file(path, {"reject.pulse_ms": 20, "reject.delay_mm": None})
    assert station.reject.pulse_ms == 20
    assert "delay_mm" not in path.read_text(encoding="utf-8")  # clearing a missing key adds nothing


def test_parse_station_without_a_file_uses_defaults() -> None:
    station = parse_station(parse_yaml("reject:\n  delay_s: 2\n"), None)
    assert station.camera.uri == "realsense" and station.outputs.backend == "sim"
    assert station.logging.backup_count >= 1 and station.archive.max_bytes > 0


# -- camera probe ---------------------------------------------------------------------------------


class _FakeCamera:
    """A stand-in realsense source: delivers ``actual`` (width, height, fps, usb) whatever is asked."""

    def __init__(self, actual: tuple[int, int, float, str], fail: bool = False) -> None:
        self.actual = actual
        self.fail = fail
        self.stopped = False

    def start(self) -> None:
        if self.fail:
            raise CameraError("no RealSense device connected")

    def stop(self) -> None:
        self.stopped = True

    def info(self) -> Any:
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Info(SourceInfo):
            usb_type: str = "3.2"

        width, height, fps, usb = self.actual
        return Info("realsense:fake", width, height, fps, usb_type=usb)

    def read(self, timeout_s: float) -> Frame:
        width, height, _, _ = self.actual
        depth = np.full((height, width), 0.4, np.float32)
        intrinsics = Intrinsics(width, height, width, width, width / 2, height / 2)
        return Frame(np.zeros((height, width, 3), np.uint8), depth, intrinsics, 0, 0.0, 0)


def _fake_realsense(monkeypatch: pytest.MonkeyPatch, camera: _FakeCamera) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def factory(argument: str | None, width: int = 0, height: int = 0, fps: int = 0, min_usb: str | None = None) -> _FakeCamera:
        seen.update(argument=argument, width=width, height=height, fps=fps)
        return camera

    monkeypatch.setitem(sources_base._REGISTRY, "realsense", factory)
    return seen


REALSENSE = MINIMAL.replace("uri: synthetic:3", "uri: realsense\n  serial: '123'").replace("width: 64", "width: 640").replace(
    "height: 64", "height: 480"
)


def test_probe_reports_requested_against_actual(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    camera = _FakeCamera((640, 480, 30.0, "3.2"))
    seen = _fake_realsense(monkeypatch, camera)
    report = probe_camera(load_station(_write(tmp_path, REALSENSE)))
    assert report.ok, report.mismatches
    assert seen == {"argument": "123", "width": 640, "height": 480, "fps": 30}
    assert "depth_fps" in report.not_applied  # the fake takes no depth profile: said, not hidden
    assert camera.stopped


def test_probe_mismatch_exits_5_naming_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_realsense(monkeypatch, _FakeCamera((640, 480, 15.0, "2.1")))
    result = CliRunner().invoke(app, ["check", "config", str(_write(tmp_path, REALSENSE)), "--probe"])
    assert result.exit_code == 5, result.output
    text = _text(result)
    assert "fps: requested 30, got 15.0" in text
    assert "usb_type: requested >= 3.0, got 2.1" in text


def test_probe_camera_error_exits_5(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_realsense(monkeypatch, _FakeCamera((640, 480, 30.0, "3.2"), fail=True))
    result = CliRunner().invoke(app, ["check", "config", str(_write(tmp_path, REALSENSE)), "--probe"])
    assert result.exit_code == 5
    assert "no RealSense device connected" in _text(result)


def test_probe_synthetic_camera_delivers_its_profile(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "config", str(_write(tmp_path, MINIMAL)), "--probe"])
    assert result.exit_code == 0, result.output
    assert "camera delivers the requested profile" in result.output


def test_readme_documents_every_key_with_its_default(tmp_path: Path) -> None:
    import dataclasses

    from edge_ad.config import SECTIONS

    text = (STATIONS / "README.md").read_text(encoding="utf-8").split("```yaml")[1].split("```")[0]
    documented = yaml.safe_load(text)
    for section, cls in SECTIONS.items():
        keys = {f.name for f in dataclasses.fields(cls)} - ({"roi"} if section == "tracker" else set())
        assert set(documented[section]) == keys, section
    station = load_station(_write(tmp_path, text.replace("delay_s: null ", "delay_s: 1.5 ")))
    assert station.to_dict()["geometry"] == {**documented["geometry"], "roi": list(station.geometry.roi)}
