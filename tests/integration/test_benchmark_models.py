"""`edge-ad benchmark-models` end to end on the tiny disc dataset: ast-tiny trained, evaluated, exported, timed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edge_ad.bundle import verify_bundle  # noqa: E402
from edge_ad.cli import app  # noqa: E402
from edge_ad.errors import ConfigError  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.benchmark_models import BenchmarkOptions, run_benchmark  # noqa: E402

pytestmark = pytest.mark.torch

FAST = ["--size", "tiny", "--threads", "1", "--runs", "5", "--warmup", "1"]


class _NoPresetFamily:
    """A registered family that ships no presets: its row must carry the error, the table goes on."""


def _output(result: object) -> str:
    text = getattr(result, "output", "")
    try:
        text += getattr(result, "stderr", "")
    except ValueError:  # older click: stderr not captured separately
        pass
    return " ".join(text.split())


@pytest.mark.slow
def test_benchmark_models_table_for_ast_tiny(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    families = registry._FAMILIES.copy()
    families.register("broken")(_NoPresetFamily)
    monkeypatch.setattr(registry, "_FAMILIES", families)
    json_file, markdown = tmp_path / "bm.json", tmp_path / "bm.md"
    args = ["benchmark-models", "--data", str(tiny_dataset), "--json", str(json_file), "--models", "ast,broken"]
    result = CliRunner().invoke(
        app, [*args, *FAST, "--markdown", str(markdown), "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, _output(result)  # one family failed, not every one

    report = json.loads(json_file.read_text())
    assert report["schema"] == "edge-ad/benchmark-models/1" and report["mode"] == "rgbd"
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["onnxruntime"]
    ast, broken = report["rows"]
    assert ast["family"] == "ast" and ast["preset"] == "ast-tiny" and ast["error"] is None
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert math.isfinite(ast[key]) and 0.0 <= ast[key] <= 1.0
    assert ast["image_auroc"] >= 0.85  # the tiny AST separates dents and stains from good discs
    assert set(ast["by_type"]) == {"dent", "stain"} and all(0.0 <= v <= 1.0 for v in ast["by_type"].values())
    assert ast["ort_fps"] > 0 and math.isclose(ast["ort_fps"] * ast["ort_latency_ms_median"], 1000.0)
    assert ast["params"] > ast["trained_params"] > 0 and ast["macs"] > 0 and ast["train_seconds"] > 0
    work = tmp_path / "bm-runs" / "ast"
    assert verify_bundle(work / "bundle").ok and (work / "evaluation.json").is_file()
    assert broken["error_stage"] == "train" and broken["error_code"] == 2
    assert "unknown preset 'broken-tiny'" in broken["error"] and broken["image_auroc"] is None

    lines = markdown.read_text().splitlines()
    assert any(line.startswith("| ast | ast-tiny | rgbd | ") for line in lines)
    assert any(line.startswith("| broken | broken-tiny | rgbd | - |") for line in lines)
    assert "broken failed at train" in _output(result)

    # Every family failed: the first one's exit code (ConfigError: 2).
    result = CliRunner().invoke(app, [*args[:-1], "broken", *FAST])
    assert result.exit_code == 2, _output(result)


def test_unknown_family_is_a_config_error_listing_the_known_ones(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown model family 'nope'; known: ast"):
        run_benchmark(tiny_dataset, tmp_path / "bm.json", models="ast,nope", options=BenchmarkOptions(size="tiny"))
    result = CliRunner().invoke(
        app, ["benchmark-models", "--data", str(tiny_dataset), "--json", str(tmp_path / "bm.json"), "--models", "nope"]
    )
    assert result.exit_code == 2 and "known: ast" in _output(result)
    assert not (tmp_path / "bm.json").exists()  # refused before anything ran
