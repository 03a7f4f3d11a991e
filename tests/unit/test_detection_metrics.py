"""Detection metrics against hand-computed cases, a sort-based AUPRO reference and properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ad.detection_metrics import (
    area_up_to,
    aupro,
    auroc,
    auroc_interval,
    f1_max,
    pixel_auroc,
    pro_curve,
    recall_by_type,
    roc_curve,
)

SCORES = np.array([0.1, 0.4, 0.35, 0.8])
LABELS = np.array([0, 0, 1, 1])


def test_roc_curve_by_hand() -> None:
    curve = roc_curve(SCORES, LABELS)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(curve.tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_auroc_by_hand_with_ties() -> None:
    assert auroc(SCORES, LABELS) == pytest.approx(0.75)
    # positives {0.5, 0.9} vs negatives {0.5, 0.2}: pairs 0.5 (tie) + 1 + 1 + 1 = 3.5 of 4
    assert auroc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1])) == pytest.approx(0.875)


def test_auroc_interval_by_hand() -> None:
    # positives {0.35, 0.8} beat negatives {0.1, 0.4} in placements (1/2, 1) and (1, 1/2):
    # var = 0.125 / 2 + 0.125 / 2, SE = sqrt(0.125); the upper end is clipped at 1.
    out = auroc_interval(SCORES, LABELS)
    assert out.auroc == pytest.approx(0.75) and out.std_error == pytest.approx(np.sqrt(0.125))
    assert out.low == pytest.approx(0.75 - 1.959964 * np.sqrt(0.125), abs=1e-6) and out.high == 1.0
    # ties count one half: placements (3/4, 1) and (3/4, 1) -> SE = sqrt(2 * 0.03125 / 2)
    tied = auroc_interval(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1]), confidence=0.9)
    assert tied.auroc == pytest.approx(0.875) and tied.std_error == pytest.approx(np.sqrt(0.03125))
    assert tied.auroc - tied.low == pytest.approx(1.644854 * np.sqrt(0.03125), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_interval_matches_pairwise_delong(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Rounded scores: many ties, which the midrank shortcut must count one half like the pairs do.
    pos, neg = np.round(rng.normal(1.0, 1.0, 37), 1), np.round(rng.normal(0.0, 1.0, 23), 1)
    psi = (pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])
    se = np.sqrt(psi.mean(1).var(ddof=1) / pos.size + psi.mean(0).var(ddof=1) / neg.size)
    out = auroc_interval(np.r_[pos, neg], np.r_[np.ones(37), np.zeros(23)])
    assert out.auroc == pytest.approx(psi.mean()) and out.std_error == pytest.approx(se)
    assert out.low < out.auroc < out.high


def test_auroc_interval_narrows_with_more_parts_and_rejects_bad_confidence() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 200, 2000):
        scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]
        out = auroc_interval(scores, np.r_[np.ones(n), np.zeros(n)])
        widths.append(out.high - out.low)
    assert widths[0] > widths[1] > widths[2]
    separated = auroc_interval(np.array([0.0, 0.1, 0.9, 1.0]), np.array([0, 0, 1, 1]))
    assert (separated.auroc, separated.std_error, separated.low, separated.high) == (1.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        auroc_interval(SCORES, LABELS, confidence=1.0)


def test_auroc_single_class_raises() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.array([0.1, 0.2]), np.array([1, 1]))


def test_f1_max_by_hand() -> None:
    # flag {0.8}: F1 2/3; {0.8, 0.4}: 1/2; {0.8, 0.4, 0.35}: tp 2 fp 1 -> 4/5; all: 2/3
    best = f1_max(SCORES, LABELS)
    assert best.f1 == pytest.approx(0.8)
    assert best.threshold == pytest.approx(0.225)  # halfway between 0.1 and 0.35
    assert best.precision == pytest.approx(2 / 3) and best.recall == 1.0


def test_f1_max_when_everything_must_be_flagged() -> None:
    best = f1_max(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 0]))
    assert best.f1 == pytest.approx(0.8)  # flag all: tp 2, fp 1
    assert best.threshold < 0.1 and 0.1 - best.threshold < 1e-12


def test_recall_by_type() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rec = recall_by_type(scores, ["good", "dent", "dent", "stain", "good"], threshold=2.5)
    assert set(rec) == {"dent", "stain"}
    assert (rec["dent"].detected, rec["dent"].total, rec["dent"].recall) == (1, 2, 0.5)
    assert rec["stain"].recall == 1.0
    # at the threshold exactly: not rejected (decision rule is score > threshold)
    assert recall_by_type(scores, ["good", "dent", "dent", "stain", "good"], threshold=3.0)["dent"].detected == 0


def test_pixel_auroc_by_hand() -> None:
    maps = [np.array([[0.1, 0.4], [0.35, 0.8]]), np.array([[0.5, 0.5]])]
    gts = [np.array([[0, 0], [1, 1]]), np.array([[255, 0]])]
    # positives {0.35, 0.8, 0.5} vs negatives {0.1, 0.4, 0.5}: 1 + 3 + (1 + 1 + 0.5) = 6.5 of 9
    assert pixel_auroc(maps, gts) == pytest.approx(6.5 / 9)


# Two images. Image 1 (2x4): gt region R1 = {(0,0), (0,1)}, region R2 = {(1,3)}, 5 good pixels.
# Image 2 (1x5): good, all scores 0. 10 good pixels in all, 2 regions.
AUPRO_MAPS = [np.array([[0.9, 0.5, 0.85, 0.2], [0.3, 0.0, 0.4, 0.8]]), np.zeros((1, 5))]
AUPRO_GTS = [np.array([[1, 1, 0, 0], [0, 0, 0, 1]], dtype=bool), np.zeros((1, 5), dtype=bool)]


def test_pro_curve_two_regions_by_hand() -> None:
    # descending: 0.9 (R1, +0.5/2) -> pro .25; 0.85 good -> fpr .1; 0.8 (R2, +1/2) -> .75;
    # 0.5 (R1) -> 1.0; 0.4, 0.3, 0.2 good -> fpr .2 .3 .4; 0.0 (6 good, tied) -> fpr 1.0
    fpr, pro = pro_curve(AUPRO_MAPS, AUPRO_GTS)
    np.testing.assert_allclose(fpr, [0, 0, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 1.0, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_aupro_two_regions_by_hand() -> None:
    # area up to FPR 0.3: 0.1 * 0.25 + 0.2 * 1.0 = 0.225; / 0.3 = 0.75
    assert aupro(AUPRO_MAPS, AUPRO_GTS) == pytest.approx(0.75)
    # up to FPR 0.15: 0.025 + 0.05 * 1.0 (interpolated at 0.15) = 0.075; / 0.15 = 0.5
    assert aupro(AUPRO_MAPS, AUPRO_GTS, fpr_limit=0.15) == pytest.approx(0.5)


def test_pro_regions_are_8_connected() -> None:
    # diagonal pair = one region of 2 (8-connectivity) plus a single pixel region; flag (0,0) and (0,3):
    # 8-conn: (1/2 + 1) / 2 = 0.75; 4-conn would give (1 + 0 + 1) / 3
    gt = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=bool)
    amap = np.array([[0.9, 0.0, 0.0, 0.9], [0.0, 0.1, 0.0, 0.0]])
    fpr, pro = pro_curve([amap], [gt])
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.75)


def test_area_up_to_interpolates() -> None:
    assert area_up_to(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.5) == pytest.approx(0.125)


def _reference_pro_curve(maps: list[np.ndarray], gts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The MVTec 3D-AD reference algorithm (sort all pixels, cumulate), with cv2 labelling."""
    fp_changes, pro_changes, n_ok, n_regions = [], [], 0, 0
    for gt in gts:
        n, labels = cv2.connectedComponents(gt.astype(np.uint8), connectivity=8)
        ok = labels == 0
        n_ok += ok.sum()
        n_regions += n - 1
        pro = np.zeros(gt.shape)
        for k in range(1, n):
            pro[labels == k] = 1.0 / np.sum(labels == k)
        fp_changes.append(ok.ravel().astype(float))
        pro_changes.append(pro.ravel())
    scores = np.concatenate([m.ravel() for m in maps])
    order = np.argsort(scores)[::-1]
    fprs = np.cumsum(np.concatenate(fp_changes)[order]) / n_ok
    pros = np.cumsum(np.concatenate(pro_changes)[order]) / n_regions
    keep = np.append(np.diff(scores[order]) != 0, True)
    fprs = np.clip(np.concatenate([[0.0], fprs[keep], [1.0]]), None, 1.0)
    pros = np.clip(np.concatenate([[0.0], pros[keep], [1.0]]), None, 1.0)
    return fprs, pros


def _random_maps(seed: int, n: int, shape: tuple[int, int], levels: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    gts = []
    for i in range(n):
        gt = np.zeros(shape, dtype=np.uint8)
        if i % 3:  # two of three images have blobs
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
                cv2.circle(gt, (int(x), int(y)), int(rng.integers(1, 6)), 1, -1)
        gts.append(gt.astype(bool))
    # quantised scores so that ties across pixels and images happen
    maps = [np.round((rng.random(shape) + 0.5 * gt) * levels) / levels for gt in gts]
    return maps, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pro_curve_matches_reference_algorithm(seed: int) -> None:
    maps, gts = _random_maps(seed, 6, (20, 24), levels=7)
    fpr, pro = pro_curve(maps, gts)
    ref_fpr, ref_pro = _reference_pro_curve(maps, gts)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, ref_pro, atol=1e-12)


def test_binned_pixel_metrics_stay_close_to_exact() -> None:
    maps, gts = _random_maps(5, 12, (64, 64), levels=10_000)
    exact_auc, exact_pro = pixel_auroc(maps, gts), aupro(maps, gts)
    binned_auc = pixel_auroc(maps, gts, exact_max_pixels=0, n_bins=2048)
    binned_pro = aupro(maps, gts, exact_max_pixels=0, n_bins=2048)
    assert 0.6 < exact_auc < 0.99 and 0.2 < exact_pro < 0.99  # a non-trivial case
    assert binned_auc == pytest.approx(exact_auc, abs=2e-3)
    assert binned_pro == pytest.approx(exact_pro, abs=5e-3)


def test_pixel_auroc_equals_image_auroc_on_flattened_pixels() -> None:
    maps, gts = _random_maps(3, 4, (10, 12), levels=5)
    flat_scores = np.concatenate([m.ravel() for m in maps])
    flat_labels = np.concatenate([g.ravel() for g in gts]).astype(int)
    assert pixel_auroc(maps, gts) == pytest.approx(auroc(flat_scores, flat_labels), abs=1e-12)


def test_pixel_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        aupro([np.zeros((2, 2))], [np.zeros((3, 2), dtype=bool)])


def _mann_whitney(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


score_label_pairs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 1)), min_size=2, max_size=40).filter(
    lambda pairs: len({label for _, label in pairs}) == 2
)


@settings(max_examples=60, deadline=None, database=None)
@given(score_label_pairs)
def test_auroc_properties(pairs: list[tuple[int, int]]) -> None:
    scores = np.array([s for s, _ in pairs], dtype=np.float64)
    labels = np.array([y for _, y in pairs])
    value = auroc(scores, labels)
    assert value == pytest.approx(_mann_whitney(scores, labels), abs=1e-12)
    # strictly increasing transform keeps the ranking and ties
    assert auroc(scores**3 + 2.0 * scores - 7.0, labels) == pytest.approx(value, abs=1e-12)
    assert auroc(scores, 1 - labels) == pytest.approx(1.0 - value, abs=1e-12)
    best = f1_max(scores, labels)
    flagged = scores > best.threshold
    tp = np.sum(flagged & (labels == 1))
    assert best.f1 == pytest.approx(2 * tp / (flagged.sum() + labels.sum()), abs=1e-12)
