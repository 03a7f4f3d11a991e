"""MKD networks: the bias-free cloner, the tapped sources (Lite0, VGG-16) and the detector's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edge_ad.errors import ConfigError, WeightsError  # noqa: E402
from trainer.ast.model import aggregate_masked  # noqa: E402
from trainer.backbones import build_backbone  # noqa: E402
from trainer.backbones.vgg import VGG16Features, full_model_keys  # noqa: E402
from trainer.config import resolve_settings  # noqa: E402
from trainer.mkd.cloner import Cloner  # noqa: E402
from trainer.mkd.model import MKDDetector  # noqa: E402
from trainer.mkd.setup import build_parts  # noqa: E402
from trainer.mkd.source import TapSource  # noqa: E402

pytestmark = pytest.mark.torch

PAPER_STAGES = ((16, 16), (16, 128), (16, 16, 256), (16, 16, 512), (16, 16, 512))


def test_paper_cloner_has_no_biases_and_the_code_size() -> None:
    cloner = Cloner(3, PAPER_STAGES, (4, 8, 16, 32), (128, 256, 512, 512))
    assert all(m.bias is None for m in cloner.modules() if isinstance(m, nn.Conv2d))
    # 0.344 M parameters (convs + BatchNorm affine), as the official code's cloner.
    assert sum(p.numel() for p in cloner.parameters()) == pytest.approx(0.344e6, rel=0.01)
    outputs = cloner(torch.zeros(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [
        (2, 128, 16, 16),
        (2, 256, 8, 8),
        (2, 512, 4, 4),
        (2, 512, 2, 2),
    ]


def test_cloner_layer_pattern_bn_relu_except_before_each_pool() -> None:
    cloner = Cloner(3, ((8,), (8, 24)), (4,), (24,), cp_activation="linear")
    names = [[type(m).__name__ for m in stage] for stage in cloner.stages]
    assert names[0] == ["Conv2d", "ReLU", "MaxPool2d"]  # not a CP: ReLU kept, no BatchNorm
    assert names[1] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "MaxPool2d"]  # linear CP conv
    relu = Cloner(3, ((8,), (8, 24)), (4,), (24,), cp_activation="relu")
    assert [type(m).__name__ for m in relu.stages[1]][-2:] == ["ReLU", "MaxPool2d"]


def test_cloner_cp_must_match_the_source_channels_and_strides() -> None:
    with pytest.raises(ConfigError, match=r"cloner_stages\[1\].*24 channels"):
        Cloner(3, ((8,), (8, 16)), (4,), (24,))
    with pytest.raises(ConfigError, match="stride 32"):
        Cloner(3, ((8,), (8, 24)), (32,), (24,))


def test_lite0_tap_source_geometry_and_last_tap_equals_the_single_block_backbone() -> None:
    backbone = build_backbone("efficientnet_lite0", 10, load_weights=False)
    source = TapSource(backbone, (2, 4, 10))
    assert source.channels == (24, 40, 112) and source.strides == (4, 8, 16)
    image = torch.randn(1, 3, 64, 64)
    taps = source(image)
    torch.testing.assert_close(taps[-1], backbone(image))
    with pytest.raises(ConfigError, match="deepest tap"):
        TapSource(backbone, (2, 4))
    with pytest.raises(ConfigError, match="strictly increasing"):
        TapSource(backbone, (4, 2, 10))


def test_vgg16_taps_at_the_papers_pools_and_user_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vgg = VGG16Features(30)
    assert (vgg.channels, vgg.stride) == (512, 32) and len(full_model_keys()) == 32
    source = TapSource(vgg.freeze(), (9, 16, 23, 30))
    assert source.channels == (128, 256, 512, 512) and source.strides == (4, 8, 16, 32)
    monkeypatch.delenv("EDGE_AD_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match=r"vgg16-397923af\.pth.*download\.pytorch\.org"):
        build_backbone("vgg16", 30)
    # A torchvision-named file (features + classifier) loads strictly into the truncated stack.
    state = {k: torch.randn(3) for k in full_model_keys()}
    state.update({k: v for k, v in VGG16Features(30).state_dict().items()})
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    loaded = build_backbone("vgg16", 16, path)
    assert loaded.stride == 8 and len(loaded.weights_sha256) == 64
    torch.testing.assert_close(loaded.features[0].weight, state["features.0.weight"])


def _detector(preset: str = "mkd-tiny", **model: object) -> MKDDetector:
    settings = resolve_settings(preset, has_xyz=True, overrides={"model": model} if model else None)
    parts = build_parts(settings, has_xyz=True, load_weights=False)
    return MKDDetector(parts.model, parts.source).eval()


def test_detector_forward_is_the_masked_first_score_kind_and_its_aggregation() -> None:
    detector = _detector()
    assert detector.config.grid == 16 and detector.config.mask_pool == 4
    assert next(iter(detector.SCORE_KINDS)) == "mkd"
    image = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 8:40, 16:48] = 1.0
    anomaly_map, score = detector(image, torch.zeros_like(mask), mask)
    maps = detector.score_maps(image, torch.zeros_like(mask), mask)
    assert set(maps) == {"discrepancy", "gradient", "mask"}
    assert all(m.shape == (2, 1, 16, 16) for m in maps.values())
    torch.testing.assert_close(anomaly_map, maps["discrepancy"])
    assert maps["mask"][0, 0].sum().item() == 8 * 8
    assert (maps["gradient"] * (1 - maps["mask"])).abs().sum().item() == 0.0
    assert maps["gradient"].sum().item() > 0
    torch.testing.assert_close(score, aggregate_masked(anomaly_map[:, 0], maps["mask"][:, 0], "max"))


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="cannot take depth.*--mode rgb"):
        build_parts(resolve_settings("mkd-tiny", True, {"mode": "rgbd"}), True, load_weights=False)
    with pytest.raises(ConfigError, match="score_points"):
        _detector(score_points=[0, 5])
    with pytest.raises(ConfigError, match="model.loss"):
        _detector(loss="both")
