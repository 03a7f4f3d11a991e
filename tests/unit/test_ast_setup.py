from __future__ import annotations

import pytest

from edge_ad.errors import ConfigError

pytest.importorskip("torch")

from trainer.ast.setup import build_parts  # noqa: E402
from trainer.config import resolve_settings  # noqa: E402

pytestmark = pytest.mark.torch


def test_ast_edge_preprocessing_measures_depth_from_the_part_top() -> None:
    parts = build_parts(resolve_settings("ast-edge", has_xyz=True), has_xyz=True, load_weights=False)
    config = parts.preprocess
    assert (config.depth_reference, config.depth_median_px, config.depth_clip_m) == ("part_top", 3, 0.005)
    assert config.depth_unit_scale == 1000.0 and config.foreground is not None
    assert config.foreground.method == "plane"
    assert config.depth_size == parts.model.grid * 8


def test_ast_paper_keeps_ast_depth_and_overrides_reach_preprocessing() -> None:
    paper = build_parts(resolve_settings("ast-paper", has_xyz=True), has_xyz=True, load_weights=False)
    assert paper.preprocess.depth_reference == "foreground_mean" and paper.preprocess.depth_median_px == 0
    assert paper.preprocess.foreground is not None and paper.preprocess.foreground.method == "corners"
    overrides = {"mode": "depth", "preprocess": {"depth_reference": "background", "depth_median_px": 5}}
    tiny = build_parts(resolve_settings("ast-tiny", True, overrides), has_xyz=True, load_weights=False)
    assert (tiny.preprocess.depth_reference, tiny.preprocess.depth_median_px) == ("background", 5)
    assert tiny.backbone is None and tiny.preprocess.mode == "depth"


def test_choose_preset_follows_model_and_refuses_a_mismatch() -> None:
    from trainer.config import DEFAULT_PRESET, choose_preset

    assert choose_preset(None, None) == DEFAULT_PRESET
    assert choose_preset("ast", None) == "ast-edge"
    assert choose_preset(None, "ast-tiny") == "ast-tiny" and choose_preset("ast", "ast-tiny") == "ast-tiny"
    with pytest.raises(ConfigError, match="unknown model 'nope'; known: .*ast"):
        choose_preset("nope", None)
    with pytest.raises(ConfigError, match="does not match preset 'ast-tiny'"):
        choose_preset("other", "ast-tiny")


def test_ast_edge_builds_for_rgb_data_without_point_clouds() -> None:
    # The tire (MVTec 3D-AD RGB only): no foreground, so depth measured from the part top cannot apply.
    parts = build_parts(resolve_settings("ast-edge", has_xyz=False), has_xyz=False, load_weights=False)
    assert parts.preprocess.mode == "rgb" and parts.preprocess.foreground is None
    assert parts.preprocess.depth_reference == "foreground_mean"
