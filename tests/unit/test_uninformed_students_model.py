"""UninformedStudentsDetector: shapes, the paper's score formula, multi-scale averaging, config checks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edge_ad.errors import ConfigError  # noqa: E402
from trainer.ast.model import aggregate_masked  # noqa: E402
from trainer.config import resolve_settings  # noqa: E402
from trainer.uninformed_students.model import (  # noqa: E402
    UninformedStudentsDetector,
    USModelConfig,
    grid_mask,
)
from trainer.uninformed_students.setup import build_parts  # noqa: E402

pytestmark = pytest.mark.torch


def _detector(
    mode: str = "rgbd", patch_sizes: tuple[int, ...] = (33,), aggregation: str = "max"
) -> UninformedStudentsDetector:
    torch.manual_seed(0)
    config = USModelConfig(
        mode=mode, image_size=32, patch_sizes=patch_sizes, target_channels=5, width=2, descriptor_dim=4,
        students=3, aggregation=aggregation,
    )  # fmt: skip
    return UninformedStudentsDetector(config).eval()


def _inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.zeros(n, 1, 32, 32)
    mask[:, :, 8:20, 4:24] = 1
    return (
        torch.randn(n, 3, 32, 32, generator=generator),
        torch.randn(n, 1, 32, 32, generator=generator),
        mask,
    )


def test_forward_is_the_default_score_kind_aggregated_over_the_foreground() -> None:
    detector = _detector()
    image, depth, mask = _inputs()
    with torch.no_grad():
        anomaly_map, score = detector(image, depth, mask)
        maps = detector.score_maps(image, depth, mask)
    assert anomaly_map.shape == (2, 1, 8, 8) and score.shape == (2,)
    assert set(maps) == {"score", "regression", "variance", "mask"}
    default_key = next(iter(detector.SCORE_KINDS.values()))
    torch.testing.assert_close(maps[default_key], anomaly_map)
    torch.testing.assert_close(score, aggregate_masked(anomaly_map[:, 0], maps["mask"][:, 0], "max"))
    # Foreground cells: rows 2..4 and columns 1..5 of the 8x8 grid (cells touching the mask).
    assert (
        maps["mask"][0, 0].sum() == 3 * 5 and maps["mask"][0, 0, 2, 1] == 1 and maps["mask"][0, 0, 5, 1] == 0
    )
    assert torch.all(anomaly_map[:, 0][maps["mask"][:, 0] == 0] == 0)


def test_score_is_the_error_plus_variance_each_over_its_good_std() -> None:
    detector = _detector()
    detector.descriptor_mean.fill_(0.3)
    detector.descriptor_std.fill_(2.0)
    detector.error_stats[0] = torch.tensor([0.5, 4.0])
    detector.variance_stats[0] = torch.tensor([0.1, 0.25])
    image, depth, mask = _inputs(1)
    x = torch.cat([image, depth], dim=1)
    with torch.no_grad():
        students = torch.stack([s.dense(x) for s in detector.students[0]])
        target = (detector.teachers[0].net.dense(x) - 0.3) / 2.0
        error = (students.mean(0) - target).square().sum(1)
        variance = (students - students.mean(0)).square().sum(2).mean(0)
        # Divided by the std, not centred (a constant offset would change no ranking; see the model).
        expected = (error / 4.0 + variance / 0.25) * grid_mask(mask, 4)
        torch.testing.assert_close(detector.score_maps(image, depth, mask)["score"][:, 0], expected)


def test_multi_scale_maps_are_averaged_on_the_finest_grid() -> None:
    detector = _detector(mode="rgb", patch_sizes=(17, 33))
    image, depth, mask = _inputs(1)
    with torch.no_grad():
        raw = detector.raw_scores(image)
        maps = detector.score_maps(image, depth, mask)
    assert [e.shape[-1] for e, _ in raw] == [32, 8]
    assert maps["score"].shape == (1, 1, 32, 32)
    coarse = F.interpolate(raw[1][0][:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps["regression"][0, 0], ((raw[0][0] + coarse) / 2 * mask[:, 0])[0])


def test_rgb_mode_ignores_depth_and_depth_mode_ignores_the_image() -> None:
    image, depth, mask = _inputs(1)
    with torch.no_grad():
        rgb = _detector(mode="rgb")
        torch.testing.assert_close(rgb(image, depth, mask)[1], rgb(image, depth * 5, mask)[1])
        only_depth = _detector(mode="depth")
        torch.testing.assert_close(only_depth(image, depth, mask)[1], only_depth(image * 5, depth, mask)[1])
    assert (
        rgb.teachers[0].net.layers[0].in_channels == 3
        and only_depth.teachers[0].net.layers[0].in_channels == 1
    )


def test_config_round_trip_and_checks() -> None:
    config = _detector().config
    assert USModelConfig.from_dict(config.to_dict()) == config
    assert config.grid == 8 and config.in_channels == 4
    with pytest.raises(ConfigError, match="students"):
        USModelConfig(mode="rgb", image_size=32, patch_sizes=(33,), target_channels=4, students=1)
    with pytest.raises(ConfigError, match="multiple of the stride 8"):
        USModelConfig(mode="rgb", image_size=36, patch_sizes=(65,), target_channels=4)
    with pytest.raises(ConfigError, match="unknown key"):
        USModelConfig.from_dict({**config.to_dict(), "depth_unshuffle": 8})


def test_presets_build_their_parts() -> None:
    edge = build_parts(resolve_settings("uninformed_students-edge", has_xyz=True), has_xyz=True)
    assert edge.model.mode == "rgbd" and edge.model.target_channels == 40 + 16
    assert edge.preprocess.depth_size == edge.preprocess.image_size == 256 and edge.model.grid == 64
    assert edge.model.aggregation == "max"
    no_xyz = build_parts(resolve_settings("uninformed_students-edge", has_xyz=False), has_xyz=False)
    assert (
        no_xyz.model.mode == "rgb"
        and no_xyz.model.target_channels == 40
        and no_xyz.model.aggregation == "mean"
    )
    depth = build_parts(
        resolve_settings("uninformed_students-tiny", has_xyz=True, overrides={"mode": "depth"}), has_xyz=True
    )
    assert depth.backbone is None and depth.model.target_channels == 16
    paper = resolve_settings("uninformed_students-paper", has_xyz=True)
    assert paper.model["patch_sizes"] == [17, 33, 65] and paper.model["students"] == 3
    with pytest.raises(ConfigError, match="crop_size"):
        build_parts(
            resolve_settings("uninformed_students-tiny", True, overrides={"model": {"crop_size": 30}}), True
        )


def test_paper_preset_distils_resnet18_and_names_the_missing_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ad.errors import WeightsError
    from trainer.uninformed_students.setup import build_parts

    monkeypatch.delenv("EDGE_AD_WEIGHTS_DIR", raising=False)
    settings = resolve_settings("uninformed_students-paper", has_xyz=True)
    assert settings.backbone.name == "resnet18"
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth"):
        build_parts(settings, True)
