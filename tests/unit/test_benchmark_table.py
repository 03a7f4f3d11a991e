"""benchmark-models without torch: family choice, rows and errors, exit code, reuse rule, JSON/markdown/console, timing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from edge_ad.backends.base import TensorSpec
from edge_ad.clock import FakeClock
from edge_ad.errors import ConfigError, ExportError, TrainingError
from tests.conftest import REPO_ROOT
from trainer.benchmark_models import BenchmarkOptions, default_work_dir, median_latency, spec_inputs
from trainer.benchmark_table import (
    SCHEMA,
    BenchmarkRow,
    build_report,
    check_choices,
    choose_families,
    console_renderables,
    exit_code,
    markdown_table,
    reuse_decision,
)
from trainer.metrics_io import write_json

SETUP = {"data": "data/widget", "category": "widget", "mode": "rgbd", "size": "edge", "target_frr": 0.01,
         "ort": {"runs": 50, "warmup": 5, "batch": 1, "threads": 2}}
MACHINE = {"cpu_count": 2, "cpu_model": "Test CPU", "onnxruntime": "1.0"}


def _good_row() -> BenchmarkRow:
    return BenchmarkRow(
        family="ast", preset="ast-edge", mode="rgbd", score="ast", image_auroc=0.9876, pixel_auroc=0.95,
        image_auroc_ci95=[0.9712, 1.0],
        aupro=0.8123, frr=0.05, recall=0.9, by_type={"dent": 0.91, "stain": 1.0}, params=4_250_000,
        trained_params=1_234_567, macs=2_345_000_000, ort_fps=41.66, ort_latency_ms_median=24.0, train_seconds=171.4,
    )


def _failed_row(family: str, stage: str, exc: Exception, code: int) -> BenchmarkRow:
    row = BenchmarkRow(family=family, preset=f"{family}-edge", mode="rgbd")
    row.record_error(stage, exc, code)
    return row


def test_default_families_put_ast_first_then_alphabetical() -> None:
    assert choose_families(None, ["reb", "mkd", "ast", "uninformed_students"]) == [
        "ast", "mkd", "reb", "uninformed_students"
    ]


def test_requested_families_keep_their_order_without_duplicates() -> None:
    assert choose_families(" mkd, ast,mkd ,", ["ast", "mkd", "reb"]) == ["mkd", "ast"]


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model family 'nope'; known: ast, mkd"):
        choose_families("ast,nope", ["mkd", "ast"])
    with pytest.raises(ConfigError, match="lists no family"):
        choose_families(" , ", ["ast"])


def test_mode_defaults_to_the_data_and_depth_needs_xyz() -> None:
    assert check_choices("edge", None, has_xyz=True) == "rgbd"
    assert check_choices("tiny", None, has_xyz=False) == "rgb"
    assert check_choices("paper", "depth", has_xyz=True) == "depth"
    with pytest.raises(ConfigError, match="needs depth"):
        check_choices("edge", "rgbd", has_xyz=False)
    with pytest.raises(ConfigError, match="--size must be one of edge, tiny, paper"):
        check_choices("huge", None, has_xyz=True)
    with pytest.raises(ConfigError, match="--mode"):
        check_choices("edge", "ir", has_xyz=True)


def test_options_out_of_range_are_config_errors() -> None:
    for bad in (BenchmarkOptions(target_frr=1.0), BenchmarkOptions(runs=0), BenchmarkOptions(threads=0)):
        with pytest.raises(ConfigError):
            bad.check()
    BenchmarkOptions().check()
    assert default_work_dir(Path("out/bm.json")) == Path("out/bm-runs")


def test_first_error_sets_stage_and_code_later_ones_are_appended() -> None:
    row = _failed_row("mkd", "evaluate", TrainingError("boom"), 9)
    row.record_error("export", ExportError("parity gate failed"), 8)
    assert row.error_stage == "evaluate" and row.error_code == 9
    assert row.error == "evaluate: TrainingError: boom; export: ExportError: parity gate failed"


def test_exit_code_only_when_every_family_failed() -> None:
    failed = _failed_row("mkd", "train", ConfigError("mode depth not supported"), 2).to_dict()
    diverged = _failed_row("reb", "train", TrainingError("loss is nan"), 9).to_dict()
    assert exit_code([_good_row().to_dict(), failed]) == 0
    assert exit_code([failed, diverged]) == 2
    assert exit_code([diverged, failed]) == 9
    assert exit_code([]) == 0


def _write_run(run: Path, preset: str = "ast-tiny", mode: str = "rgbd", epochs: int = 25) -> None:
    run.mkdir(parents=True)
    config = {"family": "ast", "preset": preset, "mode": mode, "train": {"epochs": epochs}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    for name in ("checkpoint.pt", "validation_scores.json", "train_log.json"):
        (run / name).write_text("{}")


def test_reuse_needs_a_finished_run_of_the_same_preset_and_mode(tmp_path: Path) -> None:
    run = tmp_path / "ast" / "run"
    assert not reuse_decision(run, "ast-tiny", "rgbd").reuse
    _write_run(run)
    assert reuse_decision(run, "ast-tiny", "rgbd").reuse
    assert reuse_decision(run, "ast-tiny", "rgbd", epochs=25).reuse
    other_mode = reuse_decision(run, "ast-tiny", "rgb")
    assert not other_mode.reuse and "mode 'rgbd' (wanted 'rgb')" in other_mode.reason
    assert not reuse_decision(run, "ast-edge", "rgbd").reuse
    assert "epochs 25 (wanted 3)" in reuse_decision(run, "ast-tiny", "rgbd", epochs=3).reason
    (run / "checkpoint.pt").unlink()  # interrupted after config.yaml: train again
    unfinished = reuse_decision(run, "ast-tiny", "rgbd")
    assert not unfinished.reuse and "checkpoint.pt" in unfinished.reason


def test_report_json_has_the_schema_rows_and_strict_nulls(tmp_path: Path) -> None:
    row = _good_row()
    row.pixel_auroc = float("nan")  # e.g. no ground-truth masks
    failed = _failed_row("mkd", "train", ConfigError("mode rgbd not supported"), 2)
    path = write_json(tmp_path / "bm.json", build_report([row, failed], SETUP, MACHINE))
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA == "edge-ad/benchmark-models/1"
    assert data["mode"] == "rgbd" and data["size"] == "edge" and data["machine"]["cpu_count"] == 2
    first, second = data["rows"]
    assert first["pixel_auroc"] is None and first["image_auroc"] == 0.9876 and first["by_type"]["dent"] == 0.91
    assert first["error"] is None and first["params"] == 4_250_000
    assert second["error"] == "train: ConfigError: mode rgbd not supported" and second["error_code"] == 2
    assert second["image_auroc"] is None
    assert first["image_auroc_ci95"] == [0.9712, 1.0] and second["image_auroc_ci95"] is None
    expected = {"family", "preset", "mode", "image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "by_type", "params",
                "trained_params", "macs", "ort_fps", "ort_latency_ms_median", "train_seconds", "error"}
    assert expected <= set(first)


def test_markdown_rows_format_numbers_and_add_an_error_column_only_when_needed() -> None:
    text = markdown_table(build_report([_good_row()], SETUP, MACHINE))
    lines = text.splitlines()
    assert lines[0].startswith("_widget, mode rgbd, size edge;") and "Test CPU (2 CPUs)" in lines[0]
    assert lines[2] == (
        "| family | preset | mode | image AUROC | 95% interval | pixel AUROC | AUPRO | FRR | recall | params | trained | MACs "
        "| ORT fps | ORT ms | train s |"
    )
    assert lines[3].startswith("| --- | --- | --- | ---: |")
    assert lines[4] == "| ast | ast-edge | rgbd | 0.988 | 0.971-1.000 | 0.950 | 0.812 | 5.0% | 90.0% | 4.25M | 1.23M | 2.35G | 41.7 | 24.0 | 171 |"
    assert "| family | dent | stain |" in lines and "| ast | 0.910 | 1.000 |" in lines
    failed = _failed_row("reb", "export", ExportError("parity | gate failed"), 8)
    with_error = markdown_table(build_report([_good_row(), failed], SETUP, MACHINE)).splitlines()
    assert with_error[2].endswith("| train s | error |")
    assert with_error[4].endswith("| 171 |  |")
    assert with_error[5] == "| reb | reb-edge | rgbd | - | - | - | - | - | - | - | - | - | - | - | - | export: ExportError: parity \\| gate failed |"
    assert "| reb | - | - |" in with_error  # per-type table: no results for the failed family


def test_console_tables_fit_80_columns_and_show_errors() -> None:
    long_name = _good_row()
    long_name.family, long_name.preset = "stereotype_deepening", "stereotype_deepening-edge"
    failed = _failed_row("uninformed_students", "train", TrainingError("loss is [nan]"), 9)
    console = Console(width=80, record=True, color_system=None)
    for item in console_renderables(build_report([long_name, failed], SETUP, MACHINE)):
        console.print(item)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "stereotype_deepening" in text and "0.988" in text and "4.25M" in text and "41.7" in text
    assert "uninformed_students failed at train: train: TrainingError: loss is [nan]" in " ".join(text.split())


class _SteppingBackend:
    """A backend whose calls take known times on a FakeClock."""

    def __init__(self, clock: FakeClock, durations_ms: list[float]) -> None:
        self.clock, self.durations, self.calls = clock, list(durations_ms), 0

    def input_spec(self) -> list[TensorSpec]:
        return []

    def output_spec(self) -> list[TensorSpec]:
        return []

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.clock.advance_ms(self.durations[self.calls])
        self.calls += 1
        return {}

    def close(self) -> None:
        pass


def test_median_latency_skips_warmup_calls() -> None:
    clock = FakeClock()
    backend = _SteppingBackend(clock, [500.0, 400.0, 1.0, 2.0, 3.0, 10.0, 4.0])
    stats = median_latency(backend, {}, clock, runs=5, warmup=2)
    assert backend.calls == 7 and stats.n == 5
    assert math.isclose(stats.median_ms, 3.0) and math.isclose(stats.max_ms, 10.0)
    with pytest.raises(ConfigError):
        median_latency(backend, {}, clock, runs=0, warmup=0)


def test_spec_inputs_follow_the_specs_with_an_all_foreground_mask() -> None:
    specs = [TensorSpec("image", (None, 3, 8, 8), "float32"), TensorSpec("mask", (1, 1, 4, 4), "float32")]
    inputs = spec_inputs(specs)
    assert inputs["image"].shape == (1, 3, 8, 8) and inputs["image"].dtype == np.float32
    assert inputs["image"].std() > 0.5 and np.array_equal(inputs["mask"], np.ones((1, 1, 4, 4), np.float32))


def test_table_and_runner_import_without_torch() -> None:
    code = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n"
        "import trainer.benchmark_table, trainer.benchmark_models, edge_ad.commands.benchmark_models\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
