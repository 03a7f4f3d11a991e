"""F21: malformed or invalid station YAML fails with file:line and the dotted path; nothing half-loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_ad.cli import app
from edge_ad.config import load_station, update_station_file
from edge_ad.errors import ConfigError
from tests.conftest import REPO_ROOT

BASE = (REPO_ROOT / "firmware_configs" / "stations" / "d405_close_range.yaml").read_text(encoding="utf-8")


def _line(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    assert old in BASE, old
    text = BASE.replace(old, new, 1)
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_station(path)
    return str(info.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, "  fps: 30\n", "  fps: [30\n")
    message = _error(path)
    assert re.match(rf"{re.escape(str(path))}:(\d+):\d+: YAML syntax error", message), message
    line = int(message.split(":")[1])
    assert _line(text, "fps: [30") <= line <= _line(text, "fps: [30") + 1


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, "  delay_mm: 150", "  dealy_mm: 150")
    message = _error(path)
    assert message == f"{path}:{_line(text, 'dealy_mm')}: unknown key reject.dealy_mm (did you mean delay_mm?)"


def test_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path, "outputs:\n", "output:\n")
    assert "unknown key output (did you mean outputs?)" in _error(path)


def test_wrong_type_names_the_path(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, "threshold: null ", 'threshold: "high" ')
    message = _error(path)
    assert message.startswith(f"{path}:{_line(text, 'threshold: ')}: decision.threshold: expected a number, got str 'high'")


def test_out_of_range_names_the_path(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, "min_valid_fraction: 0.4", "min_valid_fraction: 1.5")
    message = _error(path)
    assert message.startswith(f"{path}:{_line(text, 'min_valid_fraction')}: geometry.min_valid_fraction: must be")
    assert "got 1.5" in message


@pytest.mark.parametrize(("old", "new"), [("backup_count: 5", "backup_count: 0"), ("max_bytes: 20000000", "max_bytes: 0")])
def test_log_rotation_that_never_rotates_is_refused(tmp_path: Path, old: str, new: str) -> None:
    path, text = _broken(tmp_path, old, new)
    key = new.split(":")[0]
    message = _error(path)
    assert message.startswith(f"{path}:{_line(text, new)}: logging.{key}: must be")
    assert "grows without limit" in message


@pytest.mark.parametrize(
    ("old", "new", "path_and_reason"),
    [
        ("pulse_ms: 40", "pulse_ms: 2000", "reject.pulse_ms: the pulse (2000 ms) must be shorter than the delay"),
        ("delay_mm: 150", "delay_mm: 20", "reject.delay_mm: the pulse would start 180 ms after capture"),
        ("roi: [0.05, 0.05, 0.95, 0.95]", "roi: [0.9, 0.05, 0.1, 0.95]", "geometry.roi: expected 0 <= x0 < x1"),
        ("z_max_m: 0.50", "z_max_m: 0.05", "geometry.z_max_m: must be > 0.07"),
        ("  usb_type_min", "  depth: false\n  usb_type_min", "model.mode: a 'rgbd' model needs depth"),
        ("max_files: 20000", "max_files: 0", "archive.max_files: must be > 0"),
        ("min_free_bytes: 1000000000", "min_free_bytes: -1", "archive.min_free_bytes: must be >= 0"),
        ("fault_pin: 18", "fault_pin: 12", "outputs.fault_pin: pin 12 is already used by reject_pin"),
        ("heartbeat_pin: 22", "heartbeat_pin: 41", "outputs.heartbeat_pin: must be >= 1 and <= 40"),
        ("backend: jetson ", "backend: gpiod ", "outputs.chip: backend 'gpiod' needs a chip"),
        ("allow_fallback: onnxruntime", "allow_fallback: tensorrt", "model.allow_fallback: must be one of"),
        ("stall_fault_ms: 250", "stall_fault_ms: 50", "camera.stall_fault_ms: must be >= timeout_ms"),
        ("method: plane ", "method: calibrated ", "geometry.plane: method 'calibrated' needs a plane"),
        ("  mode: time", "  mode: encoder", "reject.delay_mm: not used in mode 'encoder'"),
        ("  belt_speed_mps: 0.10\n", "", "reject.belt_speed_mps: delay_mm needs the belt speed"),
        ("uri: realsense ", "uri: realsens ", "camera.uri: unknown camera scheme 'realsens' (did you mean realsense?)"),
        ("  leave_frames: 2", "  leave_frames: 2\n  leave_frames: 3", "duplicate key tracker.leave_frames"),
        ("  leave_frames: 2", "  leave_frames: 2\n  roi: [0, 0, 1, 1]", "unknown key tracker.roi (set geometry.roi instead)"),
    ],
)
def test_invalid_values_and_cross_field_conflicts(tmp_path: Path, old: str, new: str, path_and_reason: str) -> None:
    path, _ = _broken(tmp_path, old, new)
    message = _error(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", message), message
    assert path_and_reason in message


def test_check_config_exits_2_and_prints_no_config(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path, "  delay_mm: 150", "  dealy_mm: 150")
    result = CliRunner().invoke(app, ["check", "config", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "unknown key reject.dealy_mm (did you mean delay_mm?)" in text
    assert "station config OK" not in text and "camera:" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in " ".join(result.output.split())


def test_a_station_never_half_loads(tmp_path: Path) -> None:
    # The first sections are fine, the last one is not: nothing of the file is returned.
    path, _ = _broken(tmp_path, "backup_count: 5", "backup_count: 0")
    with pytest.raises(ConfigError):
        load_station(path)
    # And calibration cannot write a station into an invalid state: the file is left as it was.
    good = tmp_path / "good.yaml"
    good.write_text(BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match="reject.delay_mm"):
        update_station_file(good, {"reject.delay_mm": 25})
    assert good.read_text(encoding="utf-8") == BASE
