"""``edge-ad bench`` end to end: real bundles on ONNX Runtime, and PyTorch eager from the trained tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge_ad.bench import ORT_NAME, STAGES, TORCH_NAME
from edge_ad.cli import app
from tests.helpers.bundles import make_tiny_bundle
from tests.helpers.tiny_parts import make_tiny_parts

STAT_KEYS = {"n", "median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}


def _bench(args: list[str], json_file: Path) -> tuple[Any, dict[str, Any]]:
    result = CliRunner().invoke(app, ["bench", *args, "--json", str(json_file)])
    assert result.exit_code == 0, result.output
    return result, json.loads(json_file.read_text())


def _text(result: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _check_backend(report: dict[str, Any], name: str, frames: int) -> None:
    backend = report["backends"][name]
    assert set(backend["stages"]) == set(STAGES)
    for stage in STAGES:
        stats = backend["stages"][stage]
        assert set(stats) == STAT_KEYS and stats["n"] == frames
        assert 0.0 <= stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    # End to end covers every stage of the same frame.
    e2e = backend["stages"]["end_to_end"]["median_ms"]
    assert e2e > 0 and e2e >= backend["stages"]["inference"]["min_ms"]
    assert backend["fps_from_median"] == pytest.approx(1000.0 / e2e)
    assert backend["throughput_fps"] > 0 and backend["loop_frames"] == frames


def test_bench_onnxruntime_only_on_a_folder(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    data = make_tiny_parts(tmp_path / "data", n_train=1, n_validation=1, n_test_good=1, n_test_per_defect=1)
    result, report = _bench(
        ["--bundle", str(bundle), "--source", f"folder:{data}", "--frames", "4", "--warmup", "1", "--threads", "1"],
        tmp_path / "bench.json",
    )
    _check_backend(report, ORT_NAME, 4)  # 3 test samples: the folder is replayed from the start
    assert TORCH_NAME not in report["backends"]
    assert report["ratios"] == {} and report["same_inputs"] is None
    assert "no --run" in report["torch_note"] and "no --run" in _text(result)
    assert report["frame_size"] == [96, 96] and report["image_size"] == 32
    assert report["machine"]["threads"] == 1 and report["machine"]["onnxruntime"]
    assert "end to end" in result.output


def test_bench_refuses_a_missing_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--bundle", str(tmp_path / "nope")])
    assert result.exit_code == 4
    assert "nope" in result.output


@pytest.mark.torch
def test_bench_torch_against_onnxruntime(tiny_bundle: Path, tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result, report = _bench(
        ["--bundle", str(tiny_bundle), "--run", str(tiny_run), "--frames", "3", "--warmup", "1", "--threads", "1"],
        tmp_path / "bench.json",
    )
    for name in (ORT_NAME, TORCH_NAME):
        _check_backend(report, name, 3)
    ratios = report["ratios"][f"{TORCH_NAME}/{ORT_NAME}"]
    assert set(ratios) == {"inference", "end_to_end"}
    for value in ratios.values():
        assert math.isfinite(value) and value > 0
    ort, eager = report["backends"][ORT_NAME], report["backends"][TORCH_NAME]
    assert ratios["inference"] == pytest.approx(
        eager["stages"]["inference"]["median_ms"] / ort["stages"]["inference"]["median_ms"]
    )
    # Both passes replayed the same synthetic frames through the same preprocessing.
    assert report["same_inputs"] is True and ort["inputs_digest"] == eager["inputs_digest"]
    assert report["run"] == str(tiny_run) and report["machine"]["torch"]
    assert f"{ratios['inference']:.2f}x" in result.output and "torch eager" in result.output


@pytest.mark.torch
def test_bench_refuses_a_run_with_other_preprocessing(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bundle = make_tiny_bundle(tmp_path / "bundle")  # 32 px preprocessing; the run's is different
    result = CliRunner().invoke(
        app, ["bench", "--bundle", str(bundle), "--run", str(tiny_run), "--frames", "1", "--warmup", "0",
              "--source", "synthetic", "--size", "64"],
    )
    assert result.exit_code == 2, result.output
    assert "preprocessing" in _text(result) and "image_size: run 128, bundle 32" in _text(result)


@pytest.mark.torch
def test_bench_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bundle = make_tiny_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(
        app, ["bench", "--bundle", str(bundle), "--run", str(tmp_path), "--frames", "1", "--warmup", "0",
              "--source", "synthetic", "--size", "64"],
    )
    assert result.exit_code == 2, result.output
    assert "not a training run" in _text(result)
