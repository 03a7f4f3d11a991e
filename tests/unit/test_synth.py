"""The procedural RGB-D conveyor generator: determinism, exact defect masks, sensor effects, dataset, CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_ad.cli import app
from edge_ad.dataset import open_split
from edge_ad.errors import ConfigError, DataError
from edge_ad.synth import (
    DEFECT_TYPES,
    DEPTH_ONLY_DEFECTS,
    RGB_ONLY_DEFECTS,
    SynthConfig,
    generate_dataset,
    load_meta,
    render_scene,
    sample_part,
    sample_rig,
)

CONFIG = SynthConfig()
TINY = SynthConfig(
    width=96,
    height=96,
    n_train=3,
    n_validation=2,
    n_test_good=2,
    n_test_per_defect=1,
    small_defect_fraction=0.0,
)


@pytest.fixture(scope="module")
def rig():  # noqa: ANN201 - a Rig
    return sample_rig(np.random.default_rng(11), CONFIG)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=2)


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    first = render_scene(5, CONFIG, (0.003, -0.004), "crack")
    again = render_scene(5, CONFIG, (0.003, -0.004), "crack")
    other = render_scene(6, CONFIG, (0.003, -0.004), "crack")
    for name in ("rgb", "xyz", "gt", "object_mask"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert first.plane == again.plane
    assert not np.array_equal(first.rgb, other.rgb)
    assert not np.array_equal(first.xyz, other.xyz)
    assert first.plane != other.plane


def test_generator_argument_is_deterministic_too(rig) -> None:  # noqa: ANN001
    a = render_scene(np.random.default_rng(3), CONFIG, rig=rig)
    b = render_scene(np.random.default_rng(3), CONFIG, rig=rig)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.xyz, b.xyz)


@pytest.mark.parametrize("small_fraction", [0.0, 1.0], ids=["large", "small"])
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_gt_is_exactly_the_changed_pixels(rig, defect: str, small_fraction: float) -> None:  # noqa: ANN001
    config = replace(CONFIG, small_defect_fraction=small_fraction)
    for seed in (1, 2):
        clean = render_scene(seed, config, (0.004, 0.002), None, rig=rig)
        bad = render_scene(seed, config, (0.004, 0.002), defect, rig=rig)
        rgb_changed, xyz_changed = _diff(clean.rgb, bad.rgb), _diff(clean.xyz, bad.xyz)
        assert np.array_equal(clean.object_mask, bad.object_mask)
        assert bad.gt.sum() >= 3
        assert not (bad.gt & ~bad.object_mask).any(), "defect pixels must lie on the part"
        if defect in DEPTH_ONLY_DEFECTS:
            assert np.array_equal(clean.rgb, bad.rgb)
            assert np.array_equal(xyz_changed, bad.gt)
        elif defect in RGB_ONLY_DEFECTS:
            assert np.array_equal(clean.xyz, bad.xyz)
            assert np.array_equal(rgb_changed, bad.gt)
        else:
            assert np.array_equal(rgb_changed | xyz_changed, bad.gt)
            assert np.array_equal(rgb_changed, bad.gt)
            assert xyz_changed.sum() >= 0.5 * bad.gt.sum()
        if small_fraction == 1.0:
            # 2-4 mm across is a handful of pixels at ~0.65 mm per pixel.
            assert bad.defect_spec is not None and bad.defect_spec.small
            assert bad.gt.sum() < 80


def test_depth_defects_move_the_surface_the_right_way(rig) -> None:  # noqa: ANN001
    for defect, sign in (("dent", -1.0), ("bump", 1.0)):
        clean = render_scene(4, CONFIG, (0.0, 0.0), None, rig=rig)
        bad = render_scene(4, CONFIG, (0.0, 0.0), defect, rig=rig)
        lift = bad.plane.signed_distance(bad.xyz[bad.gt]) - clean.plane.signed_distance(clean.xyz[bad.gt])
        assert np.all(sign * lift > 0.0005), defect


def test_part_stands_above_the_belt_and_belt_is_the_true_plane(rig) -> None:  # noqa: ANN001
    config = replace(CONFIG, part_shapes=("puck",))
    scene = render_scene(8, config, (0.0, 0.0), rig=rig)
    valid = scene.valid
    assert scene.part_shape == "puck" and scene.object_mask.sum() > 1000
    height = scene.plane.signed_distance(scene.xyz)
    part = height[valid & scene.object_mask]
    belt = height[valid & ~scene.object_mask]
    low, high = config.part_height_m
    assert np.median(part) > max(0.007, 0.8 * scene.part.height_m)
    assert low - 0.005 < np.median(part) < high + 0.005
    assert np.percentile(np.abs(belt), 99.9) < 0.006
    assert config.belt_tilt_deg[0] - 1e-9 <= scene.plane.tilt_deg() <= config.belt_tilt_deg[1] + 1e-9
    assert config.camera_height_m[0] <= scene.plane.d <= config.camera_height_m[1]


def test_depth_noise_grows_with_distance(rig) -> None:  # noqa: ANN001
    for noise in (0.0, 0.002):
        scene = render_scene(2, replace(CONFIG, depth_noise_m=noise), None, rig=rig)
        assert scene.valid.all(), "an empty belt has no dropouts"
        residual = scene.plane.signed_distance(scene.xyz)
        z = scene.depth.astype(np.float64)
        expected = noise * (z / 0.4) ** 2 * np.abs(scene.plane.normal[2])
        if noise == 0.0:
            assert np.abs(residual).max() < 1e-5
        else:
            assert np.std(residual / expected) == pytest.approx(1.0, rel=0.05)


def test_invalid_pixels_are_few_and_at_the_part_edge(rig) -> None:  # noqa: ANN001
    for seed in range(3):
        scene = render_scene(seed, CONFIG, (0.01, -0.005), rig=rig)
        invalid = ~scene.valid
        assert 0.001 < invalid.mean() < 0.05
        mask = scene.object_mask.astype(np.uint8)
        kernel = np.ones((31, 31), np.uint8)
        band = (cv2.dilate(mask, kernel) > 0) & ~(cv2.erode(mask, kernel) > 0)
        assert (invalid & band).sum() == invalid.sum()
    # The projector sits on +x: the shadow of a solid part is a band on its -x side, wider than
    # the one-pixel ring of dropped flying pixels all around the silhouette.
    scene = render_scene(0, replace(CONFIG, part_shapes=("puck",)), (0.0, 0.0), rig=rig)
    outside = cv2.distanceTransform((~scene.object_mask).astype(np.uint8), cv2.DIST_L2, 3)
    cols = np.nonzero(~scene.valid & (outside > 1.5))[1]
    assert cols.size > 20
    assert np.all(cols < np.nonzero(scene.object_mask)[1].mean())


def test_part_follows_its_belt_position(rig) -> None:  # noqa: ANN001
    part = sample_part(np.random.default_rng(1), CONFIG, rig.part_colour)
    cols = []
    for x in (-0.02, 0.0, 0.02):
        scene = render_scene(0, CONFIG, (x, 0.0), rig=rig, part=part)
        cols.append(np.nonzero(scene.object_mask)[1].mean())
    assert cols[0] < cols[1] < cols[2]
    assert abs(cols[1] - (CONFIG.width - 1) / 2) < 3, "(0, 0) is where the optical axis meets the belt"
    px_per_m = rig.intrinsics.fx / rig.plane.d
    assert cols[2] - cols[0] == pytest.approx(0.04 * px_per_m, rel=0.1)


def test_moving_line_keeps_part_and_defect_across_frames(rig) -> None:  # noqa: ANN001
    first = render_scene(1, CONFIG, (-0.01, 0.0), "stain", rig=rig)
    later = render_scene(2, CONFIG, (0.01, 0.0), rig=rig, part=first.part, defect_spec=first.defect_spec)
    assert later.defect == "stain" and later.part_shape == first.part_shape
    assert later.gt.sum() == pytest.approx(first.gt.sum(), rel=0.25)
    part_shift = np.nonzero(later.object_mask)[1].mean() - np.nonzero(first.object_mask)[1].mean()
    defect_shift = np.nonzero(later.gt)[1].mean() - np.nonzero(first.gt)[1].mean()
    assert part_shift > 20 and defect_shift == pytest.approx(part_shift, abs=3)
    gone = render_scene(3, CONFIG, (0.5, 0.0), rig=rig, part=first.part, defect_spec=first.defect_spec)
    assert not gone.object_mask.any() and not gone.gt.any()
    # Belt travel moves the belt texture only: same geometry and noise, other colours.
    still = render_scene(4, CONFIG, None, rig=rig)
    moved = render_scene(4, CONFIG, None, rig=rig, belt_offset_m=0.01)
    assert np.array_equal(still.xyz, moved.xyz) and not np.array_equal(still.rgb, moved.rgb)
    shift = round(0.01 * rig.intrinsics.fx / rig.plane.d)  # pixels the belt moved along +x
    grey_still = still.rgb.astype(float).mean(axis=2)[:, 60:190]
    grey_moved = moved.rgb.astype(float).mean(axis=2)
    errors = {k: np.abs(grey_moved[:, 60 + k : 190 + k] - grey_still).mean() for k in (-shift, shift)}
    assert errors[shift] < 0.5 * errors[-shift]


def test_empty_belt_has_no_part_and_no_gt(rig) -> None:  # noqa: ANN001
    scene = render_scene(1, CONFIG, None, rig=rig)
    assert not scene.object_mask.any() and not scene.gt.any() and scene.part_shape is None
    assert scene.rgb.std() > 2, "the belt is textured, not flat"


def test_render_rejects_bad_requests() -> None:
    with pytest.raises(ConfigError, match="unknown defect 'scratch'"):
        render_scene(0, CONFIG, (0.0, 0.0), "scratch")
    with pytest.raises(ConfigError, match="needs a part"):
        render_scene(0, CONFIG, None, "dent")
    with pytest.raises(ConfigError, match="rig is 256x256"):
        render_scene(0, TINY, rig=sample_rig(np.random.default_rng(0), CONFIG))


def test_config_validation_and_round_trip() -> None:
    assert SynthConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ConfigError, match="SynthConfig.defect_types: unknown 'scratch'"):
        SynthConfig(defect_types=("dent", "scratch"))
    with pytest.raises(ConfigError, match="SynthConfig.width"):
        SynthConfig(width=8)
    with pytest.raises(ConfigError, match="part_height_m"):
        SynthConfig(part_height_m=(0.3, 0.2))
    with pytest.raises(ConfigError, match="synth.bogus: unknown key"):
        SynthConfig.from_dict({"bogus": 1})


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_generate_dataset_reads_back_through_open_split(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path / "a", "widget", seed=4, config=TINY)
    root = tmp_path / "a" / "widget"
    assert summary.out == root and summary.total == 3 + 2 + 2 + 6
    assert summary.counts["test"] == {"good": 2, **dict.fromkeys(DEFECT_TYPES, 1)}
    train, validation, test = (open_split(root, split) for split in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (3, 2, 8)
    assert train.has_xyz and test.has_xyz
    assert set(test.defect_types) == {"good", *DEFECT_TYPES}
    for sample in test:
        assert sample.rgb.shape == (96, 96, 3) and sample.xyz is not None and sample.gt is not None
        assert sample.gt.any() == (sample.defect_type != "good")
    assert train[0].gt is None
    meta = load_meta(root)
    assert meta["seed"] == 4 and SynthConfig.from_dict(meta["config"]) == TINY
    assert meta["rig"]["intrinsics"]["width"] == 96 and len(meta["samples"]) == summary.total
    # The dataset is a pure function of (seed, config).
    generate_dataset(tmp_path / "b", "widget", seed=4, config=TINY)
    generate_dataset(tmp_path / "c", "widget", seed=5, config=TINY)
    digest_a = _tree_digest(root)
    assert digest_a == _tree_digest(tmp_path / "b" / "widget")
    digest_c = _tree_digest(tmp_path / "c" / "widget")
    assert digest_a.keys() == digest_c.keys() and digest_a != digest_c


def test_generate_dataset_protects_existing_folders(tmp_path: Path) -> None:
    config = replace(TINY, n_train=1, n_validation=1, n_test_good=0, n_test_per_defect=0)
    generate_dataset(tmp_path, "part", 0, config)
    with pytest.raises(ConfigError, match="already exists"):
        generate_dataset(tmp_path, "part", 0, config)
    generate_dataset(tmp_path, "part", 1, config, overwrite=True)
    assert load_meta(tmp_path / "part")["seed"] == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an edge-ad synth dataset"):
        generate_dataset(tmp_path, "mine", 0, config, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="not a valid folder name"):
        generate_dataset(tmp_path, "../up", 0, config)
    with pytest.raises(DataError, match="not found"):
        load_meta(foreign)


def test_cli_help_lists_every_option() -> None:
    result = CliRunner().invoke(app, ["synth", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--category",
        "--seed",
        "--size",
        "--train",
        "--validation",
        "--test-good",
        "--test-per-defect",
        "--defects",
        "--shapes",
        "--small-fraction",
        "--force",
    ):
        assert option in result.output, option
    assert "synth" in CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    args = [
        "synth",
        str(tmp_path),
        "--category",
        "gear",
        "--seed",
        "3",
        "--size",
        "64",
        "--train",
        "2",
        "--validation",
        "1",
        "--test-good",
        "1",
        "--test-per-defect",
        "1",
        "--defects",
        "stain,bump",
        "--small-fraction",
        "0",
        "--shapes",
        "puck",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 6 samples" in result.output
    assert open_split(tmp_path / "gear", "test").counts() == {"good": 1, "bump": 1, "stain": 1}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    "extra",
    [["--size", "8"], ["--defects", "dent,scratch"], ["--shapes", ""], ["--train", "-1"], ["--seed", "x"]],
    ids=["size", "defect", "shapes", "count", "seed"],
)
def test_cli_bad_arguments_exit_2(tmp_path: Path, extra: list[str]) -> None:
    result = CliRunner().invoke(app, ["synth", str(tmp_path), *extra])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "part").exists()
