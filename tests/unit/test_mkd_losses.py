"""MKD's losses, anomaly map and gradient post-processing on hand-computed cases."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from edge_ad.errors import ConfigError  # noqa: E402
from trainer.mkd.gradient_map import gaussian_blur, gaussian_kernel, opening, postprocess_gradient  # noqa: E402
from trainer.mkd.losses import (  # noqa: E402
    direction_loss,
    discrepancy_map,
    loss_weights,
    total_loss,
    value_loss,
)

pytestmark = pytest.mark.torch


def test_value_loss_is_the_per_cp_mean_squared_error_summed_over_cps() -> None:
    s1, c1 = torch.zeros(1, 2, 1, 1), torch.tensor([[[[1.0]], [[3.0]]]])  # MSE (1 + 9) / 2 = 5
    s2, c2 = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2) * 3  # MSE 4
    assert value_loss([s1, s2], [c1, c2]).tolist() == [9.0]


def test_direction_loss_is_one_minus_cosine_of_flattened_activations_per_cp() -> None:
    s1 = torch.tensor([[1.0, 0.0]]).view(1, 2, 1, 1)
    c1 = torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1)  # cos 45 degrees
    s2 = torch.tensor([[2.0, 0.0, 0.0, 0.0]]).view(1, 1, 2, 2)
    c2 = torch.tensor([[-5.0, 0.0, 0.0, 0.0]]).view(1, 1, 2, 2)  # opposite: 1 - (-1) = 2
    expected = (1 - 1 / math.sqrt(2)) + 2.0
    assert direction_loss([s1, s2], [c1, c2]).item() == pytest.approx(expected, rel=1e-6)
    # Direction ignores scale: a scaled copy costs nothing.
    assert direction_loss([s1], [7 * s1]).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_weights_paper_and_code_combinations() -> None:
    assert loss_weights("paper", 0.2) == (1.0, 0.2)  # L_val + lam * L_dir
    assert loss_weights("code", 0.5) == (0.5, 1.0)  # L_dir + lam * L_val
    with pytest.raises(ConfigError, match="model.loss"):
        loss_weights("both", 1.0)
    s, c = [torch.zeros(1, 2, 1, 1)], [torch.tensor([[[[1.0]], [[1.0]]]])]
    # L_val = 1, L_dir = 1 - 0 (zero vector: cosine 0 by the eps clamp)
    assert total_loss(s, c, 0.5, 1.0).item() == pytest.approx(1.5)


def test_discrepancy_map_per_position_and_upsampled_to_the_finest_cp() -> None:
    fine_s = torch.zeros(1, 2, 4, 4)
    fine_s[:, 0] = 1.0
    fine_c = fine_s.clone()
    # Orthogonal at one position: 1 - cos = 1, MSE = (1 + 4) / 2.
    fine_c[0, :, 1, 2] = torch.tensor([0.0, 2.0])
    coarse_s = torch.ones(1, 3, 2, 2)
    coarse_c = torch.ones(1, 3, 2, 2) * 2  # same direction, MSE 1 everywhere
    out = discrepancy_map([fine_s, coarse_s], [fine_c, coarse_c], weight_val=0.5, weight_dir=1.0, size=4)
    assert out.shape == (1, 1, 4, 4)
    expected = torch.full((4, 4), 0.5)  # the coarse CP's 0.5 * MSE, constant after upsampling
    expected[1, 2] += 1.0 + 0.5 * 2.5
    torch.testing.assert_close(out[0, 0], expected)


def test_gaussian_kernel_and_blur_preserve_mass_and_spread() -> None:
    kernel = gaussian_kernel(4.0)
    assert kernel.numel() == 33 and kernel.sum().item() == pytest.approx(1.0)
    assert kernel.argmax().item() == 16
    spike = torch.zeros(1, 1, 41, 41)
    spike[0, 0, 20, 20] = 1.0
    blurred = gaussian_blur(spike, 4.0)
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-4)
    assert blurred[0, 0, 20, 20].item() == pytest.approx(float(kernel[16] ** 2), rel=1e-5)


def test_opening_removes_a_single_pixel_and_keeps_a_cross() -> None:
    maps = torch.zeros(1, 1, 9, 9)
    maps[0, 0, 2, 2] = 5.0  # isolated spike: erosion removes it
    for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        maps[0, 0, 6 + dy, 6 + dx] = 3.0  # the structuring element itself survives
    opened = opening(maps)
    assert opened[0, 0, 2, 2].item() == 0.0
    torch.testing.assert_close(opened[0, 0, 5:8, 5:8], maps[0, 0, 5:8, 5:8])


def test_postprocess_gradient_sums_absolute_channels() -> None:
    gradient = torch.zeros(1, 3, 8, 8)
    gradient[0, 0] = -1.0
    gradient[0, 2] = 2.0
    out = postprocess_gradient(gradient, sigma=0.0)
    assert out.shape == (1, 1, 8, 8)
    torch.testing.assert_close(out, torch.full((1, 1, 8, 8), 3.0))
