"""Parameter and multiply-add counts: AST presets by name, any trained run by its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from trainer.complexity import preset_complexity, run_complexity  # noqa: E402
from trainer.run_io import load_detector  # noqa: E402


def test_run_complexity_counts_every_parameter_of_the_trained_detector(tiny_run: Path) -> None:
    rows = {row.name: row for row in run_complexity(str(tiny_run))}
    detector = load_detector(tiny_run).detector
    assert rows["total"].params == sum(p.numel() for p in detector.parameters())
    assert {"backbone", "teacher", "student"} <= set(rows)
    assert rows["total"].macs == sum(row.macs for name, row in rows.items() if name != "total") > 0


def test_preset_and_run_agree_on_the_same_architecture(tiny_run: Path) -> None:
    by_preset = {row.name: row for row in preset_complexity("ast-tiny")}
    by_run = {row.name: row for row in run_complexity(str(tiny_run))}
    assert by_preset["total"].params == by_run["total"].params
    assert by_preset["total"].macs == by_run["total"].macs
