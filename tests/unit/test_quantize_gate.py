"""The INT8 gate's verdict: decision agreement and AUROC drop against FP32, with the numbers in the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.preprocess import PreprocessConfig
from export.int8_gate import Int8Tolerance, compare_scores, gate_set, paint_synthetic_defect
from tests.helpers.datasets import make_mvtec3d


def test_identical_scores_pass() -> None:
    fp32 = np.array([0.1, 0.2, 0.9, 1.5])
    report = compare_scores(fp32, fp32.copy(), np.array([0, 0, 1, 1]), threshold=0.5, defects="real")
    assert report.passed and report.decision_agreement == 1.0 and report.auroc_drop == 0.0


def test_flipped_decisions_and_lost_ranking_fail_with_numbers() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    fp32 = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)])
    int8 = fp32.copy()
    int8[:2] = 0.7  # two good parts now rejected, and now above two defects
    report = compare_scores(fp32, int8, labels, threshold=0.5, defects="real")
    assert report.decision_agreement == pytest.approx(0.98)
    assert report.auroc_fp32 == 1.0 and report.auroc_drop == pytest.approx(0.0104)  # 2 goods above 13 defects: 26 of 2500 pairs
    assert not report.passed
    assert any("agree on 98.00% of 100 samples (limit 99.00%)" in f for f in report.failures)
    assert any("image AUROC drops by" in f for f in report.failures)
    relaxed = compare_scores(fp32, int8, labels, 0.5, "real", Int8Tolerance(decision_agreement=0.95, auroc_drop=0.02))
    assert relaxed.passed


def test_single_class_has_no_auroc() -> None:
    report = compare_scores(np.array([0.1, 0.2]), np.array([0.1, 0.2]), np.array([0, 0]), 0.5, "synthetic")
    assert report.auroc_fp32 is None and report.passed


def test_synthetic_defects_when_the_data_has_none(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path / "d", n_train=2, n_validation=3, n_test_good=0, defects={}, size=(32, 32))
    config = PreprocessConfig(image_size=16, depth_size=16, mode="rgb", mask_dilate_px=2, foreground=None)
    gate = gate_set(root, config, use_xyz=False, max_samples=10)
    assert gate.defects == "synthetic" and gate.labels.tolist() == [0, 0, 0, 1, 1, 1]
    good = gate_set(make_mvtec3d(tmp_path / "r", size=(32, 32)), config, use_xyz=False)
    assert good.defects == "real" and set(good.labels.tolist()) == {0, 1}


def test_painted_defect_changes_colour_and_height() -> None:
    from edge_ad.dataset import Sample

    rgb = np.full((40, 40, 3), 30, np.uint8)
    xyz = np.zeros((40, 40, 3), np.float32)
    xyz[..., 2] = 0.5
    painted = paint_synthetic_defect(Sample(rgb, xyz, None, 0, "good", Path("x.png"), "x"), np.random.default_rng(0))
    assert painted.label == 1 and painted.gt is not None and painted.gt.sum() > 10
    assert (painted.rgb[painted.gt] == 225).all() and np.allclose(painted.xyz[painted.gt, 2], 0.496)
    assert (rgb == 30).all()  # the good sample is untouched
