"""REB pieces: channel pooling, coreset, local density, LDKNN scores, neck shapes, ResNet-18, fine-tuning batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edge_ad.errors import ConfigError, WeightsError  # noqa: E402
from trainer.ast.model import aggregate_masked  # noqa: E402
from trainer.backbones import build_backbone  # noqa: E402
from trainer.backbones.resnet import ResNetFeatures, resnet18, resnet18_keys  # noqa: E402
from trainer.reb.finetune import DefectImages, ProxyHead, trainable_parameters  # noqa: E402
from trainer.reb.memory import greedy_coreset, local_density, squared_distances  # noqa: E402
from trainer.reb.model import REBDetector, REBModelConfig, channel_pool_matrix  # noqa: E402
from trainer.reb.taps import tap_outputs, tap_shapes  # noqa: E402

pytestmark = pytest.mark.torch


class TwoTaps(nn.Module):
    """A stand-in backbone: fixed random taps at stride 4 (6 ch) and 8 (10 ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward_taps(self, image: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
        shallow = F.avg_pool2d(image.repeat(1, 2, 1, 1), 4) * self.scale
        deep = F.avg_pool2d(torch.cat([image, image, image, image[:, :1]], dim=1), 8)
        return [shallow, deep]


def _config(mode: str = "rgb", bank: int = 2, feature_dim: int = 2, lam: float = 1.0) -> REBModelConfig:
    return REBModelConfig(
        mode=mode, image_size=32, grid=8, taps=(1, 2), tap_channels=(6, 10), tap_dim=4,
        feature_dim=feature_dim, depth_unshuffle=2, depth_scale=3.0, bank_size=bank, k=1, ld_lambda=lam,
    )


@pytest.mark.parametrize(("cin", "cout"), [(40, 128), (112, 64), (256, 128), (7, 3)])
def test_channel_pool_matrix_is_adaptive_average_pooling(cin: int, cout: int) -> None:
    x = torch.randn(5, cin)
    expected = F.adaptive_avg_pool1d(x[:, None], cout)[:, 0]
    torch.testing.assert_close(x @ channel_pool_matrix(cin, cout).t(), expected)


def test_coreset_takes_one_point_per_far_cluster() -> None:
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = (centres[:, None] + torch.rand(3, 20, 2)).reshape(-1, 2)
    chosen = greedy_coreset(points, 3, torch.Generator().manual_seed(0))
    assert sorted(int(i) // 20 for i in chosen) == [0, 1, 2]
    assert len(set(greedy_coreset(points, 60, torch.Generator()).tolist())) == 60
    with pytest.raises(ConfigError):
        greedy_coreset(points, 0, torch.Generator())


def test_local_density_hand_computed() -> None:
    bank = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # Point 3.0: squared distances 4 (to 1), 9 (to 0), 16 (to 7); K=2 -> (4 + 9) / 2. Point 0: (1 + 9) / 2.
    density = local_density(bank, torch.tensor([2, 0]), k=2)
    torch.testing.assert_close(density, torch.tensor([6.5, 5.0]))
    # A duplicate elsewhere in the bank is a neighbour at distance 0; the point itself is not.
    twins = torch.tensor([[1.0], [1.0], [5.0]])
    torch.testing.assert_close(local_density(twins, torch.tensor([0]), k=1), torch.tensor([0.0]))
    with pytest.raises(ConfigError, match="k"):
        local_density(bank, torch.tensor([0]), k=4)
    torch.testing.assert_close(squared_distances(bank[:1], bank)[0], torch.tensor([0.0, 1.0, 9.0, 49.0]))


def test_ldknn_subtracts_the_density_of_the_nearest_memory_point() -> None:
    detector = REBDetector(_config(lam=1.0), TwoTaps())
    detector.set_memory(torch.tensor([[0.0, 0.0], [3.0, 0.0]]), torch.tensor([1.0, 0.5]))
    features = torch.zeros(1, 2, 8, 8)
    features[0, 0, 0, 0] = 1.0  # nearest (0, 0): d2 = 1, score 1 - 1 = 0
    features[0, 0, 0, 1] = 2.5  # nearest (3, 0): d2 = 0.25, score 0.25 - 0.5
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 8:, :] = 0.0
    maps = detector.maps_from_features(features, mask)
    assert maps["ldknn"][0, 0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert maps["ldknn"][0, 0, 1].item() == pytest.approx(-0.25, abs=1e-6)
    assert maps["nn_distance"][0, 0, 1].item() == pytest.approx(0.25, abs=1e-6)
    assert maps["ldknn"][0, 2, 2].item() == pytest.approx(-1.0, abs=1e-6)  # at (0, 0): 0 - 1
    assert maps["mask"][0, 4:].sum() == 0 and maps["mask"][0, :4].sum() == 32
    assert (maps["ldknn"][0, 4:] == 0).all()  # zero off the mask
    score = aggregate_masked(maps["ldknn"], maps["mask"], "max")
    assert score.item() == pytest.approx(0.0, abs=1e-6)  # the largest foreground LDKNN value


def test_neck_and_forward_shapes_with_depth() -> None:
    config = _config(mode="rgbd", bank=5, feature_dim=4)
    detector = REBDetector(config, TwoTaps()).eval()
    detector.set_memory(torch.randn(5, config.total_dim), torch.rand(5))
    image, depth, mask = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 16, 16), torch.ones(2, 1, 16, 16)
    assert detector.features(image, depth).shape == (2, 4 + 4, 8, 8)
    anomaly_map, score = detector(image, depth, mask)
    maps = detector.score_maps(image, depth, mask)
    assert anomaly_map.shape == (2, 1, 8, 8) and score.shape == (2,)
    torch.testing.assert_close(maps["ldknn"], anomaly_map)
    torch.testing.assert_close(score, maps["ldknn"][:, 0].amax(dim=(1, 2)))
    # Depth enters scaled by depth_scale: a depth offset of 1 moves the descriptor by 3 (inside, unpadded).
    shifted = detector.features(image, depth + 1.0) - detector.features(image, depth)
    torch.testing.assert_close(shifted[:, 4:, 3:5, 3:5], torch.full((2, 4, 2, 2), 3.0))
    with pytest.raises(ConfigError, match="REB supports"):
        _config(mode="depth")


def test_efficientnet_taps_match_truncated_forwards() -> None:
    lite = build_backbone("efficientnet_lite0", 7, load_weights=False)
    image = torch.randn(1, 3, 64, 64)
    shallow, deep = tap_outputs(lite, image, (4, 7))
    torch.testing.assert_close(deep, lite(image))
    assert shallow.shape == (1, 40, 8, 8)
    assert tap_shapes(lite, 64, (4, 7)) == [(40, 8), (80, 16)]


def test_resnet18_taps_keys_and_weights(tmp_path: Path) -> None:
    net = ResNetFeatures(3)
    outs = net.forward_taps(torch.randn(1, 3, 64, 64), (2, 3))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 8), (1, 256, 4, 4)]
    assert (net.channels, net.stride) == (256, 16)
    keys = resnet18_keys()
    assert {"fc.weight", "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight"} <= keys
    full = ResNetFeatures(4, with_head=True)
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    loaded = resnet18(3, path)
    assert len(loaded.weights_sha256) == 64 and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.layer3[1].conv2.weight, full.layer3[1].conv2.weight)
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth"):
        resnet18(3, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="stages 1..4"):
        ResNetFeatures(5)


def test_defect_batches_and_trainable_blocks() -> None:
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    mask = np.zeros((3, 1, 16, 16), np.float32)
    mask[:, :, 4:12, 4:12] = 1.0
    data = DefectImages.from_inputs(image, mask, np.array([True, True, False]), mean, std)
    assert data.images.dtype == np.uint8 and data.locations[2] is None and data.locations[0].sum() == 16 * 16
    images, labels = data.batch(rng, 14)
    assert images.shape == (14, 3, 32, 32) and labels.min() >= 0 and labels.max() <= 6
    lite = build_backbone("efficientnet_lite0", 10, load_weights=False)
    params = trainable_parameters(lite, 8)
    assert sum(p.numel() for p in params) == sum(p.numel() for b in list(lite._blocks)[8:] for p in b.parameters())
    assert not any(p.requires_grad for p in lite._blocks[7].parameters())
    assert ProxyHead(112).eval()(torch.randn(2, 112, 4, 4)).shape == (2, 7)
