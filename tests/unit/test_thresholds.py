"""Thresholds for a target false-reject rate, Clopper-Pearson bounds and score normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_ad.thresholds import (
    NormalizationStats,
    binomial_cdf,
    clopper_pearson_upper,
    threshold_for_frr,
)


@pytest.mark.parametrize(
    ("failures", "n", "expected"),
    [(0, 100, 0.0295), (1, 100, 0.0466), (0, 10, 0.2589), (5, 1000, 0.0105)],
)
def test_clopper_pearson_known_values(failures: int, n: int, expected: float) -> None:
    assert clopper_pearson_upper(failures, n) == pytest.approx(expected, abs=1e-4)


def test_clopper_pearson_zero_failures_closed_form_and_large_n() -> None:
    # with no failures the bound solves (1 - p)^n = 0.05
    for n in (3, 250, 100_000):
        assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    # 1000 failures in 100000: roughly p + 1.645 sqrt(p (1 - p) / n) for large n
    approx = 0.01 + 1.645 * math.sqrt(0.01 * 0.99 / 100_000)
    assert clopper_pearson_upper(1000, 100_000) == pytest.approx(approx, rel=0.01)
    assert clopper_pearson_upper(7, 7) == 1.0


def test_binomial_cdf_small_case() -> None:
    # P(X <= 1) for n = 3, p = 0.5: (1 + 3) / 8
    assert binomial_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert binomial_cdf(3, 3, 0.5) == 1.0


def test_threshold_for_frr_200_scores_one_percent() -> None:
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.arange(200, dtype=np.float64))  # order must not matter
    choice = threshold_for_frr(scores, 0.01)
    # 2 of 200 may be rejected: threshold halfway between 197 (highest kept) and 198
    assert choice.threshold == 197.5
    assert choice.achieved_frr == 0.01 and choice.n == 200 and choice.warning is None
    assert int(np.sum(scores > choice.threshold)) == 2
    assert choice.frr_upper_95 == pytest.approx(clopper_pearson_upper(2, 200))
    assert 0.01 < choice.frr_upper_95 < 0.04


def test_threshold_for_frr_ties_at_boundary_are_kept() -> None:
    scores = np.concatenate([np.arange(97, dtype=np.float64), [500.0, 500.0, 500.0]])
    choice = threshold_for_frr(scores, 0.02)  # would reject 2, but three good parts tie
    assert choice.threshold == 500.0 and choice.achieved_frr == 0.0


def test_threshold_for_frr_warns_when_too_few_scores() -> None:
    choice = threshold_for_frr(np.linspace(0, 1, 50), 0.01)
    assert choice.threshold == 1.0 and choice.achieved_frr == 0.0  # nothing may be rejected
    assert choice.warning is not None and "at least 100" in choice.warning
    assert choice.frr_upper_95 == pytest.approx(1 - 0.05 ** (1 / 50))


def test_threshold_for_frr_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="target_frr"):
        threshold_for_frr(np.ones(10), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        threshold_for_frr(np.array([1.0, np.nan]), 0.1)


def test_normalization_median_zero_threshold_one() -> None:
    stats = NormalizationStats.from_good_scores(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), threshold=5.0)
    assert (stats.median, stats.scale) == (3.0, pytest.approx(1.4826))
    assert stats.normalize(3.0) == 0.0 and stats.normalize(5.0) == 1.0
    np.testing.assert_allclose(stats.normalize(np.array([1.0, 7.0])), [-1.0, 2.0])
    assert NormalizationStats.from_dict(stats.to_dict()) == stats


def test_normalization_degenerate_scores_keep_threshold_at_one() -> None:
    stats = NormalizationStats.from_good_scores(np.full(20, 2.0), threshold=2.0)
    assert stats.normalize(2.0) == 1.0 and stats.normalize(3.0) == 2.0


def test_normalization_from_dict_names_bad_field() -> None:
    with pytest.raises(ValueError, match="'scale'"):
        NormalizationStats.from_dict({"median": 1.0, "threshold": 2.0})
