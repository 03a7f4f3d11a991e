"""Stereotype Deepening training helpers: foreground statistics, training windows, one level's fit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_ad.errors import TrainingError  # noqa: E402
from trainer.config import OptimSettings  # noqa: E402
from trainer.stereotype_deepening.patch_net import PatchNetEnsemble  # noqa: E402
from trainer.stereotype_deepening.train import (  # noqa: E402
    LevelSchedule,
    crop_batch,
    crop_corners,
    fit_level,
    masked_mean_std,
)
from trainer.torch_setup import cpu_threads  # noqa: E402

pytestmark = pytest.mark.torch


def test_masked_statistics_use_foreground_cells_only() -> None:
    values = torch.zeros(1, 2, 1, 3)  # N=1, d=2, 1x3 grid
    values[0, 0] = torch.tensor([1.0, 3.0, 100.0])
    values[0, 1] = torch.tensor([2.0, 2.0, -50.0])
    cells = torch.tensor([[[1.0, 1.0, 0.0]]])
    mean, std = masked_mean_std(values, cells)
    assert mean.tolist() == [2.0, 2.0]
    assert std[0].item() == pytest.approx(2.0**0.5) and std[1].item() == pytest.approx(1e-3)  # floored


def test_windows_centre_on_the_foreground_and_stay_inside() -> None:
    cells = torch.zeros(3, 10, 10)
    cells[0, 6:9, 6:9] = 1.0  # part near the bottom-right corner
    cells[1, 0:2, 0:2] = 1.0  # part in the top-left corner
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        corners = crop_corners(cells, 4, gen)
        assert corners.min() >= 0 and corners.max() <= 6
        y, x = corners[0].tolist()
        assert 5 <= y <= 6 and 5 <= x <= 6  # centroid 7 - 1.5, jitter up to 1 cell, clamped at 6
        assert corners[1].tolist() == [0, 0]
        assert 2 <= corners[2, 0] <= 4  # no foreground: around the centre
    inputs = torch.arange(3 * 80 * 80, dtype=torch.float32).reshape(3, 1, 80, 80)
    targets = torch.arange(3 * 100, dtype=torch.float32).reshape(3, 1, 1, 10, 10)
    x, t, c = crop_batch(inputs, targets, cells, torch.tensor([[5, 6], [0, 0], [2, 3]]), 4)
    assert x.shape == (3, 1, 32, 32) and t.shape == (3, 1, 1, 4, 4) and c.shape == (3, 4, 4)
    assert x[0, 0, 0, 0] == inputs[0, 0, 40, 48] and t[0, 0, 0, 0, 0] == targets[0, 0, 0, 5, 6]
    assert c[0].sum() == 9  # the whole 3x3 part (rows 6-8, cols 6-8) lies in rows 5-8, cols 6-9


def test_a_level_learns_its_target_and_refuses_non_finite_losses() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, 3, 32, 32)
    # A learnable target: the mean colour of every 8x8 cell.
    targets = torch.nn.functional.avg_pool2d(inputs, 8)[:, None] * 3.0
    cells = torch.ones(4, 4, 4)
    net = PatchNetEnsemble(3, 3, 2, widths=(8, 8, 8, 8), head_width=8)
    optim = OptimSettings(epochs=1, lr=0.01, batch_size=2)
    with cpu_threads(1):  # tiny tensors: one thread avoids per-op barriers on a busy machine
        log = fit_level(net, inputs, targets, cells, optim, LevelSchedule("masters", 20, 1.0), gen, progress=False)
    assert len(log) == 20 and log[-1]["l_d"] < 0.5 * log[0]["l_d"]
    with pytest.raises(TrainingError, match="masters"):
        fit_level(net, inputs, targets * float("nan"), cells, optim, LevelSchedule("masters", 1, 0.9), gen, False)
