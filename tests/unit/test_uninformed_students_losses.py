"""Losses and scores of Uninformed Students on hand-computed cases; distillation targets and crops."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trainer.uninformed_students.losses import (  # noqa: E402
    compactness_loss,
    foreground_vectors,
    masked_mse,
    predictive_variance,
    regression_error,
)
from trainer.uninformed_students.patch_net import PatchNet  # noqa: E402
from trainer.uninformed_students.targets import (  # noqa: E402
    ScaleData,
    crop_batch,
    depth_block_targets,
    feature_targets,
    standardise,
)

pytestmark = pytest.mark.torch


def test_compactness_of_correlated_uncorrelated_and_anticorrelated_descriptors() -> None:
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    b = torch.tensor([1.0, 1.0, -1.0, -1.0])  # orthogonal to a, both zero-mean
    assert compactness_loss(torch.stack([a, b], dim=1)).item() == pytest.approx(0.0, abs=1e-6)
    assert compactness_loss(torch.stack([a, 3 * a + 2], dim=1)).item() == pytest.approx(1.0, abs=1e-5)
    assert compactness_loss(torch.stack([a, -a], dim=1)).item() == pytest.approx(1.0, abs=1e-5)
    # Three dimensions, one correlated pair: 2 of the 6 off-diagonal entries are 1.
    assert compactness_loss(torch.stack([a, b, a], dim=1)).item() == pytest.approx(2 / 6, abs=1e-5)


def test_masked_mse_averages_channels_over_foreground_only() -> None:
    prediction = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 10.0]], [[3.0, 10.0]]]])  # position 0: errors 1 and 9 -> mean 5
    mask = torch.tensor([[[1.0, 0.0]]])
    assert masked_mse(prediction, target, mask).item() == pytest.approx(5.0)
    assert foreground_vectors(target, mask).tolist() == [[1.0, 3.0]]


def test_regression_error_and_predictive_variance_of_a_small_ensemble() -> None:
    # Two students at one position: (1, 0) and (3, 0); their mean is (2, 0); the teacher says (2, 1).
    students = torch.tensor([[1.0, 0.0], [3.0, 0.0]]).view(2, 1, 2, 1, 1)
    teacher = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1)
    assert regression_error(students, teacher).item() == pytest.approx(1.0)
    assert predictive_variance(students).item() == pytest.approx(1.0)
    # The paper's form: mean_i ||S_i||^2 - ||mean S||^2 = (1 + 9) / 2 - 4 = 1.
    torch.manual_seed(0)
    many = torch.randn(5, 2, 4, 3, 3)
    paper = many.square().sum(dim=2).mean(dim=0) - many.mean(dim=0).square().sum(dim=1)
    torch.testing.assert_close(predictive_variance(many), paper, rtol=1e-5, atol=1e-5)


def test_feature_targets_sample_at_cell_centres() -> None:
    # A stride-8 feature map read at a stride-4 grid: cell j sits between feature cells (j - 1) / 2.
    features = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    sampled = feature_targets(features, 8)[0, 0, 0]
    assert sampled.tolist() == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])


def test_depth_block_targets_are_means_of_the_patch_sub_blocks() -> None:
    net = PatchNet(1, 33, 2, 2)  # R = 32, stride 4, pad 14: 4x4 blocks of 8 px
    torch.manual_seed(0)
    depth = torch.randn(1, 1, 32, 32)
    targets = depth_block_targets(depth, net, 4)
    assert targets.shape == (1, 16, 8, 8)
    padded = torch.nn.functional.pad(depth, (14, 14, 14, 14), mode="reflect")
    row, col = 2, 5  # cell (2, 5): patch rows 8..40, cols 20..52 of the padded image
    patch = padded[0, 0, 4 * row : 4 * row + 32, 4 * col : 4 * col + 32]
    expected = patch.reshape(4, 8, 4, 8).mean(dim=(1, 3)).reshape(16)
    torch.testing.assert_close(targets[0, :, row, col], expected, rtol=1e-5, atol=1e-5)


def test_standardise_uses_foreground_positions() -> None:
    values = torch.tensor([[[[1.0, 3.0, 100.0]]]])
    mean, std = standardise(values, torch.tensor([[[1.0, 1.0, 0.0]]]))
    assert mean.tolist() == [2.0] and std.item() == pytest.approx(2**0.5)


def test_crops_start_on_the_stride_lattice_and_contain_foreground() -> None:
    net = PatchNet(1, 33, 2, 2).eval()
    torch.manual_seed(0)
    image = torch.randn(2, 1, 64, 64)
    padded = torch.nn.functional.pad(image, (14, 14, 14, 14), mode="reflect")
    mask = torch.zeros(2, 16, 16)
    mask[0, 12:14, 1:3] = 1  # foreground near a corner: the crop is clamped inside the image
    mask[1] = 1
    with torch.no_grad():
        dense = net(padded)
    data = ScaleData(padded, dense, mask, stride=4, span=32)
    inputs, targets, crop_mask = crop_batch(
        data, dense, torch.tensor([0, 1]), 8, torch.Generator().manual_seed(1)
    )
    assert inputs.shape == (2, 1, 60, 60) and targets.shape == (2, 2, 8, 8)
    assert crop_mask[0].sum() == 4  # all of sample 0's foreground lies in its crop
    with torch.no_grad():
        torch.testing.assert_close(net(inputs), targets, rtol=1e-5, atol=1e-5)
    whole = crop_batch(data, dense, torch.tensor([1]), 16, None)
    assert whole[0].shape == (1, 1, 92, 92)
