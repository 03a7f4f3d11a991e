"""Stereotype Deepening: patch network, losses on hand-computed cases, the three biases, the detector."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edge_ad.errors import ConfigError  # noqa: E402
from trainer.ast.model import aggregate_masked  # noqa: E402
from trainer.config import resolve_settings  # noqa: E402
from trainer.stereotype_deepening.biases import delivery_bias, inference_bias, peer_bias  # noqa: E402
from trainer.stereotype_deepening.losses import (  # noqa: E402
    compactness_loss,
    correlation_matrix,
    foreground_descriptors,
    level_loss,
    regression_loss,
)
from trainer.stereotype_deepening.model import SDDetector, SDModelConfig  # noqa: E402
from trainer.stereotype_deepening.patch_net import PatchNetEnsemble  # noqa: E402
from trainer.stereotype_deepening.setup import build_parts  # noqa: E402

pytestmark = pytest.mark.torch


class StubBackbone(nn.Module):
    """Stride-8 conv standing in for the Lite0 doctor."""

    name, mean, std, weights_sha256 = "stub", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None

    def __init__(self, channels: int = 5) -> None:
        super().__init__()
        self.channels, self.stride = channels, 8
        self.conv = nn.Conv2d(3, channels, 8, stride=8)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)


def _randomise_outputs(net: PatchNetEnsemble) -> None:
    # The output layer starts at zero by design; tests of the maps need non-trivial descriptors.
    nn.init.normal_(net.out.weight, std=0.3)


def test_patch_net_gives_one_descriptor_per_8x8_cell_per_network() -> None:
    torch.manual_seed(0)
    net = PatchNetEnsemble(4, 10, 3, widths=(4, 4, 8, 8), head_width=6)
    out = net(torch.randn(2, 4, 64, 48))
    assert out.shape == (2, 3, 10, 8, 6)
    assert torch.count_nonzero(out) == 0  # zero-initialised output: every network starts at the mean


def test_patch_networks_of_a_level_are_independent() -> None:
    torch.manual_seed(0)
    net = PatchNetEnsemble(3, 4, 2, widths=(4, 4, 4, 4), head_width=4)
    _randomise_outputs(net)
    x = torch.randn(1, 3, 32, 32)
    before = net(x)
    with torch.no_grad():  # change only network 1 (the second group of every layer)
        net.conv1.weight[4:] += 1.0
        net.conv3.weight[4:] += 1.0
        net.out.weight[4:] += 1.0
    after = net(x)
    assert torch.equal(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1])
    assert not torch.allclose(before[:, 0], before[:, 1])  # different random initialisations


def test_receptive_field_is_local() -> None:
    # Table 1's 61-px field: a pixel change far from a cell leaves that cell's descriptor unchanged.
    torch.manual_seed(0)
    net = PatchNetEnsemble(3, 4, 1, widths=(4, 4, 4, 4), head_width=4)
    _randomise_outputs(net)
    x = torch.randn(1, 3, 128, 128)
    y = x.clone()
    y[..., 127, 127] += 10.0
    diff = (net(x) - net(y)).abs()[0, 0].sum(dim=0)
    assert diff[15, 15] > 0 and diff[:7, :7].max() == 0


def test_correlation_and_compactness_match_a_hand_computed_case() -> None:
    b1 = torch.tensor([1.0, 2.0, 3.0, 4.0])
    columns = torch.stack([b1, 2 * b1, torch.tensor([1.0, -1.0, 1.0, -1.0])], dim=1)[None]  # (1, P=4, d=3)
    r = correlation_matrix(columns)[0]
    r13 = -2.0 / (math.sqrt(5.0) * 2.0)  # centred b1 . centred b3 = -2, norms sqrt(5) and 2
    assert r[0, 1].item() == pytest.approx(1.0)
    assert r[0, 2].item() == pytest.approx(r13) and r[1, 2].item() == pytest.approx(r13)
    expected = (1.0 + 2 * abs(r13)) / 3  # mean |r| over the d(d-1)/2 = 3 pairs of dimensions
    assert compactness_loss(columns).item() == pytest.approx(expected)
    # The normalisation removes the batch size: the same descriptors twice give the same loss.
    assert compactness_loss(torch.cat([columns, columns], dim=1)).item() == pytest.approx(expected)
    assert compactness_loss(torch.eye(3)[None] - 1.0 / 3).item() == pytest.approx(0.5)


def test_regression_loss_averages_dimensions_over_foreground_cells() -> None:
    pred = torch.zeros(1, 2, 2, 1, 2)  # N=1, k=2 networks, d=2, 1x2 grid
    target = torch.zeros_like(pred)
    target[0, 0, :, 0, 0] = torch.tensor([1.0, 3.0])  # network 0, cell 0: mean sq error (1 + 9) / 2
    target[0, 1, :, 0, 1] = 4.0  # network 1, cell 1 (background below)
    weight = torch.tensor([[[1.0, 0.0]]])
    assert regression_loss(pred, target, weight).tolist() == [5.0, 0.0]
    loss, parts = level_loss(pred, target, weight, mu=1.0)
    assert loss.item() == pytest.approx(2.5) and parts["l_p"] == 0.0
    assert foreground_descriptors(pred, weight).shape == (2, 1, 2)


def test_biases_match_hand_computed_distances() -> None:
    doctor = torch.zeros(1, 2, 1, 1)
    masters = torch.tensor([[3.0, 4.0], [0.0, 1.0]]).reshape(1, 2, 2, 1, 1)
    assert inference_bias(doctor, masters).item() == pytest.approx(5.0 + 1.0)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 2, 1, 1)
    # Bachelors 0, 1 belong to master 0; 2, 3 to master 1 (delivery only within a class).
    bachelors = torch.tensor([[1.0, 2.0], [4.0, 0.0], [0.0, 0.0], [0.0, 6.0]]).reshape(1, 4, 2, 1, 1)
    assert delivery_bias(targets, bachelors).item() == pytest.approx(2.0 + 3.0 + 0.0 + 6.0)
    master_pair = math.hypot(3.0, 3.0)
    # Pairs (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3) of the bachelors above.
    bachelor_pairs = [math.hypot(3, 2), math.hypot(1, 2), math.hypot(1, 4), 4.0, math.hypot(4, 6), 6.0]
    expected = (master_pair + sum(bachelor_pairs)) / 7  # 1 master pair + 6 bachelor pairs
    assert peer_bias(masters, bachelors).item() == pytest.approx(expected)


def _detector(mode: str = "rgbd") -> SDDetector:
    torch.manual_seed(0)
    config = SDModelConfig(mode=mode, grid=4, doctor_channels=5, widths=(4, 4, 4, 4), head_width=4)
    detector = SDDetector(config, StubBackbone())
    _randomise_outputs(detector.masters)
    _randomise_outputs(detector.bachelors)
    return detector.eval()


def test_detector_maps_scores_and_normalisation() -> None:
    detector = _detector("rgbd")
    assert detector.config.descriptor_dim == 5 + 16 and detector.config.student_channels == 4
    gen = torch.Generator().manual_seed(1)
    image, depth = torch.randn(2, 3, 32, 32, generator=gen), torch.randn(2, 1, 32, 32, generator=gen)
    mask = torch.ones(2, 1, 32, 32)
    mask[1, :, :16] = 0.0
    detector.stats.term_mean.copy_(torch.tensor([2.0, 4.0, 8.0]))
    maps = detector.score_maps(image, depth, mask)
    assert set(maps) == {"total", "inference", "delivery", "peer", "mask"}
    assert all(v.shape == (2, 1, 4, 4) for v in maps.values())
    raw = detector.raw_terms(image, depth)
    torch.testing.assert_close(maps["delivery"][0, 0], raw["delivery"][0] / 4.0)
    torch.testing.assert_close(maps["total"], maps["inference"] + maps["delivery"] + maps["peer"])
    assert maps["total"][1, 0, :2].abs().max() == 0  # background cells are masked
    anomaly_map, score = detector(image, depth, mask)
    torch.testing.assert_close(anomaly_map, maps["total"])
    torch.testing.assert_close(score, aggregate_masked(maps["total"][:, 0], maps["mask"][:, 0], "max"))
    assert list(SDDetector.SCORE_KINDS)[0] == "stereotype_deepening"


def test_depth_changes_rgbd_scores_but_not_rgb_scores() -> None:
    image, mask = torch.randn(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    depth, dented = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    dented[..., 8:12, 8:12] = 3.0
    for mode, changes in (("rgb", False), ("rgbd", True)):
        detector = _detector(mode)
        a, b = detector(image, depth, mask)[0], detector(image, dented, mask)[0]
        assert bool((a - b).abs().max() > 0) is changes, mode


def test_config_round_trip_and_refusals() -> None:
    config = SDModelConfig(mode="rgb", grid=8, doctor_channels=40, widths=(8, 8, 16, 32))
    assert SDModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="depth-only"):
        SDModelConfig(mode="depth", grid=8, doctor_channels=40)
    with pytest.raises(ConfigError, match="masters >= 2"):
        SDModelConfig(mode="rgb", grid=8, doctor_channels=40, masters=1)
    with pytest.raises(ConfigError, match="unknown keys"):
        SDModelConfig.from_dict({**config.to_dict(), "extra": 1})


def test_presets_build_and_need_a_stride_8_doctor() -> None:
    for preset in ("stereotype_deepening-tiny", "stereotype_deepening-edge", "stereotype_deepening-paper"):
        parts = build_parts(resolve_settings(preset, has_xyz=True), has_xyz=True, load_weights=False)
        assert parts.preprocess.depth_size == parts.preprocess.image_size
        assert parts.model.grid * 8 == parts.preprocess.image_size and parts.model.doctor_channels == 40
    rgb = resolve_settings("stereotype_deepening-edge", has_xyz=False)
    assert rgb.mode == "rgb" and build_parts(rgb, False, load_weights=False).model.aggregation == "mean"
    wrong = resolve_settings("stereotype_deepening-tiny", has_xyz=True, overrides={"backbone": {"block": 10}})
    with pytest.raises(ConfigError, match="stride 16"):
        build_parts(wrong, True, load_weights=False)
    with pytest.raises(ConfigError, match="mu"):
        build_parts(resolve_settings("stereotype_deepening-tiny", True, {"model": {"mu": 1.5}}), True, False)
