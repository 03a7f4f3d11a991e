"""Backbone registry, EfficientNet architecture and weight loading."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ad.errors import ConfigError, WeightsError  # noqa: E402
from trainer.backbones import build_backbone, list_backbones, register_backbone  # noqa: E402
from trainer.backbones.efficientnet import (  # noqa: E402
    B5,
    LITE0,
    EfficientNet,
    block_specs,
    efficientnet_lite0,
    full_model_keys,
    load_full_lite0,
)
from trainer.backbones.weights import WEIGHTS_DIR_ENV, lite0_weights_path, read_state_dict  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("name", list_backbones())
def test_declared_channels_and_stride_match_output(name: str) -> None:
    model = build_backbone(name, block_index=3, load_weights=False)
    out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, model.channels, 64 // model.stride, 64 // model.stride)
    assert not any(p.requires_grad for p in model.parameters())
    model.train()  # a parent's .train() must not unfreeze BatchNorm statistics
    assert not model.training


def test_architecture_sizes_match_the_ast_paper_and_lite0() -> None:
    b5 = block_specs(B5)
    assert len(b5) == 39
    assert b5[35].out_ch == 304  # "layer 36": 304 channels ...
    assert EfficientNet(B5, 35).stride == 32  # ... at stride 32 -> 24x24 at 768 px
    lite = block_specs(LITE0)
    assert len(lite) == 16 and lite[10].out_ch == 112 and all(s.se_ch == 0 for s in lite)
    assert EfficientNet(LITE0, 10).stride == 16


def test_same_padding_gives_ceil_division_on_odd_sizes() -> None:
    model = build_backbone("efficientnet_lite0", block_index=10, load_weights=False)
    assert model(torch.zeros(1, 3, 97, 65)).shape[-2:] == (7, 5)  # ceil(97/16), ceil(65/16)


def test_lite0_every_kept_key_is_loaded_from_the_package_file() -> None:
    file_state = read_state_dict(lite0_weights_path())
    model = efficientnet_lite0(block_index=10)
    kept = model.state_dict()
    assert len(kept) > 100
    for key, value in kept.items():
        assert torch.equal(value, file_state[key]), key
    assert "_blocks.11._expand_conv.weight" not in kept  # truncated: later blocks are never built
    assert len(model.weights_sha256 or "") == 64
    # The complete network has exactly the file's keys: nothing missing, nothing unexpected.
    assert full_model_keys(LITE0) == set(file_state)


def test_lite0_features_are_not_garbage() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224, 0:224]
    image = np.full((224, 224, 3), 90.0) + 20 * rng.standard_normal((224, 224, 3))
    image[(yy - 112) ** 2 + (xx - 100) ** 2 < 60**2] = (200, 120, 50)  # an orange disc
    x = torch.from_numpy(((image - 127.0) / 128.0).transpose(2, 0, 1)[None]).float()
    logits = load_full_lite0()(x)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    assert logits.std() > 0.5  # a trained classifier is far from uniform
    features = efficientnet_lite0(block_index=10)(x)
    per_channel_std = features.std(dim=(0, 2, 3))
    assert torch.isfinite(features).all()
    assert (per_channel_std > 1e-3).float().mean() > 0.9  # almost every channel responds to the image


def test_b5_without_weights_names_the_file_to_download(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(WeightsError, match=r"efficientnet-b5-b6417697\.pth.*--backbone-weights"):
        build_backbone("efficientnet_b5")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(WeightsError, match=str(tmp_path / "efficientnet-b5-b6417697.pth")):
        build_backbone("efficientnet_b5")
    with pytest.raises(WeightsError, match="nope.pth"):
        build_backbone("efficientnet_b5", weights=tmp_path / "nope.pth")


def test_b5_loads_a_user_file_from_the_weights_dir(tmp_path, monkeypatch) -> None:
    reference = EfficientNet(B5, last_block=2)
    torch.save(reference.state_dict(), tmp_path / "efficientnet-b5-b6417697.pth")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    model = build_backbone("efficientnet_b5", block_index=2)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(model(x), reference.eval()(x))


def test_wrong_weights_file_lists_missing_and_unexpected_keys(tmp_path) -> None:
    lite_file = tmp_path / "lite.pth"
    torch.save(EfficientNet(LITE0, last_block=2).state_dict(), lite_file)
    with pytest.raises(
        WeightsError, match=r"does not fit efficientnet_b5: \d+ missing keys \(_blocks.0._se_expand"
    ) as info:
        build_backbone("efficientnet_b5", block_index=2, weights=lite_file)
    assert "unexpected keys (_blocks.1._bn0" in str(info.value)  # B5's second block has no expansion
    assert "shape mismatches" in str(info.value)
    extra = read_state_dict(lite0_weights_path())
    extra["_not_a_layer.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"1 unexpected keys \(_not_a_layer.weight\)"):
        build_backbone("efficientnet_lite0", block_index=2, weights=tmp_path / "extra.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        build_backbone("efficientnet_lite0", weights=garbage)


def test_registry_rejects_unknown_names_and_blocks_and_warns_on_collision() -> None:
    with pytest.raises(ConfigError, match="unknown name 'resnet9'.*efficientnet_lite0"):
        build_backbone("resnet9")
    with pytest.raises(ConfigError, match="blocks 0..15"):
        build_backbone("efficientnet_lite0", block_index=16, load_weights=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_backbone("efficientnet_lite0")(lambda block, weights, load: None)
        register_backbone("efficientnet_lite0")(efficientnet_lite0)  # restore the real factory
    assert any("registered twice" in str(w.message) for w in caught)
