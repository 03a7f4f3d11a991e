from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest

from edge_ad.errors import ConfigError, DataError, GeometryError
from edge_ad.geometry import ForegroundConfig, Plane
from edge_ad.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessConfig,
    preprocess,
    resize_map,
    to_model_inputs,
)
from tests.helpers.scenes import AnalyticScene, make_scene

SMALL = PreprocessConfig(image_size=64, depth_size=32, mask_dilate_px=2)


def scene_rgb(height: int = 240, width: int = 320, value: int = 128) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def small_scene(**kwargs: Any) -> AnalyticScene:
    """A 320x240 view of a belt square to the camera at 0.4 m (box and noise as in make_scene)."""
    options: dict[str, Any] = {
        "width": 320,
        "height": 240,
        "focal_px": 300.0,
        "tilt_deg": 0.0,
        "noise_m": 0.0,
    }
    options.update(kwargs)
    return make_scene(**options)


def test_shapes_dtypes_and_normalisation() -> None:
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    scene = small_scene()
    out = preprocess(rgb, scene.xyz, SMALL)
    assert out.image.shape == (3, 64, 64) and out.depth.shape == (1, 32, 32) and out.mask.shape == (1, 32, 32)
    for array in (out.image, out.depth, out.mask):
        assert array.dtype == np.float32 and array.flags.c_contiguous
    expected = (np.array([255, 128, 0]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.image[:, 10, 10], expected, rtol=1e-5)
    assert set(np.unique(out.mask)) == {0.0, 1.0}
    assert out.has_mask and out.foreground is not None


def test_image_shrinks_by_area_averaging() -> None:
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[:, ::4] = 255  # one bright column in four: area averaging gives 1/4 everywhere
    out = preprocess(rgb, None, PreprocessConfig(image_size=64, mode="rgb", mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(out.image, 0.25, atol=1e-6)


def test_rgb_only_path() -> None:
    config = PreprocessConfig(image_size=64, depth_size=32, mode="rgb")
    out = preprocess(scene_rgb(), None, config)
    assert not out.has_mask and out.foreground is None
    assert np.all(out.depth == 0) and np.all(out.mask == 1)
    with pytest.raises(DataError, match="mode 'rgbd' needs xyz"):
        preprocess(scene_rgb(), None, SMALL)


def test_depth_is_relative_to_the_foreground_mean_in_centimetres() -> None:
    # Belt square to the camera at 0.40 m, a 3 cm high box: its top is 3 cm closer than the belt.
    scene = small_scene(box_size_m=(0.12, 0.09, 0.03), hole_fraction=0.05)
    out = preprocess(scene_rgb(), scene.xyz, SMALL)
    depth, mask = out.depth[0], out.mask[0].astype(bool)
    assert 0.05 < mask.mean() < 0.6
    assert np.all(depth[~mask] == 0)
    assert depth[mask].mean() == pytest.approx(0.0, abs=1e-4)
    top = depth[16, 16]  # the box centre
    belt_in_mask = depth[mask].max()  # the dilated margin shows the belt around the box
    assert belt_in_mask - top == pytest.approx(3.0, abs=0.1)


def test_mask_covers_the_part_and_grows_with_dilation() -> None:
    scene = small_scene(box_size_m=(0.12, 0.09, 0.03))
    silhouette = cv2.resize(scene.silhouette.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.5
    areas = []
    for side in (0, 4, 8):
        config = PreprocessConfig(image_size=64, depth_size=32, mask_dilate_px=side)
        mask = preprocess(scene_rgb(), scene.xyz, config).mask[0].astype(bool)
        assert np.all(mask[silhouette])
        areas.append(int(mask.sum()))
    assert areas[0] < areas[1] < areas[2]


def test_empty_foreground_gives_zero_mask_and_depth() -> None:
    scene = small_scene(box_size_m=None, tilt_deg=6.0, noise_m=0.001)
    out = preprocess(scene_rgb(), scene.xyz, SMALL)
    assert out.has_mask
    assert not out.mask.any() and not out.depth.any()


def test_no_foreground_config_uses_the_whole_image() -> None:
    scene = small_scene(hole_fraction=0.05)
    config = PreprocessConfig(image_size=64, depth_size=32, foreground=None)
    out = preprocess(scene_rgb(), scene.xyz, config)
    assert not out.has_mask and np.all(out.mask == 1)
    assert out.depth.mean() == pytest.approx(0.0, abs=1e-4)
    assert out.depth.min() < -2.5  # the box top, about 3 cm in front of the mean


@pytest.mark.parametrize(
    ("rgb", "message"),
    [
        (np.zeros((240, 320, 3), np.float32), "rgb must be uint8"),
        (np.zeros((240, 320, 4), np.uint8), "rgb must be uint8"),
        (np.zeros((240, 320), np.uint8), "rgb must be uint8"),
    ],
)
def test_bad_rgb_raises(rgb: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        preprocess(rgb, None, PreprocessConfig(mode="rgb"))


def test_bad_xyz_raises() -> None:
    scene = small_scene()
    with pytest.raises(DataError, match="xyz is 320x240 but rgb is 160x120"):
        preprocess(scene_rgb(120, 160), scene.xyz, SMALL)
    with pytest.raises(DataError, match="xyz must be float"):
        preprocess(scene_rgb(), scene.xyz.astype(np.int32), SMALL)
    with pytest.raises(GeometryError, match="only 0.0% of"):
        preprocess(scene_rgb(), np.zeros_like(scene.xyz), SMALL)


def test_to_model_inputs_stacks_a_batch() -> None:
    scene = small_scene()
    items = [preprocess(scene_rgb(value=v), scene.xyz, SMALL) for v in (10, 200)]
    batch = to_model_inputs(items)
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["depth"].shape == batch["mask"].shape == (2, 1, 32, 32)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in batch.values())
    np.testing.assert_array_equal(batch["image"][1], items[1].image)
    with pytest.raises(DataError, match="no samples"):
        to_model_inputs([])
    other = preprocess(scene_rgb(), None, PreprocessConfig(image_size=32, depth_size=32, mode="rgb"))
    with pytest.raises(DataError, match="image shapes differ"):
        to_model_inputs([items[0], other])


def test_resize_map_is_bilinear() -> None:
    ramp = np.tile(np.arange(4, dtype=np.float32), (4, 1))
    big = resize_map(ramp, (8, 16))
    assert big.shape == (8, 16) and big.dtype == np.float32
    np.testing.assert_allclose(big[0], [0, 0, 0.125, 0.375, 0.625, 0.875, 1.125, 1.375,
                                        1.625, 1.875, 2.125, 2.375, 2.625, 2.875, 3, 3], atol=1e-6)  # fmt: skip
    with pytest.raises(DataError, match=r"expected an \(h, w\) map"):
        resize_map(np.zeros((1, 4, 4), np.float32), (8, 8))


def test_config_defaults_round_trip_and_fingerprint() -> None:
    config = PreprocessConfig()
    assert (config.image_size, config.depth_size, config.mode, config.mask_dilate_px) == (256, 128, "rgbd", 8)
    assert config.foreground == ForegroundConfig(method="plane") and config.depth_unit_scale == 100.0
    assert (config.depth_reference, config.depth_median_px) == ("foreground_mean", 0)  # AST
    data = config.to_dict()
    text = json.dumps(data)  # JSON-safe: lists, plain numbers, nested dict
    assert isinstance(data["mean"], list) and isinstance(data["foreground"], dict)
    again = PreprocessConfig.from_dict(json.loads(text))
    assert again == config and again.fingerprint() == config.fingerprint()
    assert len(config.fingerprint()) == 64

    calibrated = ForegroundConfig(method="calibrated", plane=Plane((0.0, 0.1, -1.0), 0.4))
    custom = PreprocessConfig(mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2], foreground=calibrated)
    assert PreprocessConfig.from_dict(custom.to_dict()) == custom
    assert PreprocessConfig(mean=(0.5, 0.5, 0.5), std=[0.2] * 3, foreground=calibrated.to_dict()) == custom
    assert custom.fingerprint() != config.fingerprint()
    assert PreprocessConfig(foreground=None).fingerprint() != config.fingerprint()
    assert PreprocessConfig.from_dict({"foreground": None}).foreground is None


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"preprocess\.image: unknown key"):
        PreprocessConfig.from_dict({"image": 256})
    with pytest.raises(ConfigError, match=r"preprocess\.foreground\.method: must be one of"):
        PreprocessConfig.from_dict({"foreground": {"method": "magic"}})
    with pytest.raises(ConfigError, match=r"preprocess\.mode: must be one of"):
        PreprocessConfig.from_dict({"mode": "grey"})
    with pytest.raises(ConfigError, match=r"PreprocessConfig\.std\[1\]: must be > 0"):
        PreprocessConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ConfigError, match=r"PreprocessConfig\.mean: expected 3 values"):
        PreprocessConfig(mean=(0.5, 0.5))
    with pytest.raises(ConfigError, match=r"PreprocessConfig\.depth_size: must be >= 1"):
        PreprocessConfig(depth_size=0)


def test_background_reference_is_height_above_the_tilted_belt() -> None:
    # Tilted 8 deg: relative to the mean, the flat box top is a ramp; above the belt it is flat at 3 cm.
    scene = small_scene(box_size_m=(0.12, 0.09, 0.03), tilt_deg=8.0)
    relative = preprocess(scene_rgb(), scene.xyz, SMALL)
    height_config = PreprocessConfig(image_size=64, depth_size=32, mask_dilate_px=2, depth_reference="background")
    height = preprocess(scene_rgb(), scene.xyz, height_config)
    np.testing.assert_array_equal(height.mask, relative.mask)
    top = cv2.erode(scene.silhouette.astype(np.uint8), np.ones((31, 31), np.uint8))
    top = cv2.resize(top.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.99
    assert top.sum() > 20
    assert np.ptp(height.depth[0][top]) < 0.05  # flat to 0.5 mm
    assert height.depth[0][top].mean() == pytest.approx(3.0, abs=0.05)
    assert np.ptp(relative.depth[0][top]) > 0.5  # the tilt shows as a ramp of several mm
    mask = height.mask[0].astype(bool)
    box_cells = cv2.resize(scene.silhouette.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0
    ring = mask & ~box_cells
    assert ring.any() and np.abs(height.depth[0][ring]).max() < 0.05  # belt inside the mask reads 0
    assert np.all(height.depth[0][~mask] == 0)


def test_median_filter_removes_speckle_and_keeps_a_wide_step() -> None:
    # 0.5 % junk pixels (random depths 0.1-1.5 m): isolated, so a 5x5 median removes them all.
    scene = small_scene(box_size_m=(0.12, 0.09, 0.03), junk_fraction=0.005, seed=3)
    base = {"image_size": 64, "depth_size": 32, "mask_dilate_px": 2, "depth_reference": "background"}
    plain = preprocess(scene_rgb(), scene.xyz, PreprocessConfig(**base))
    filtered = preprocess(scene_rgb(), scene.xyz, PreprocessConfig(**base, depth_median_px=5))
    top = cv2.erode(scene.silhouette.astype(np.uint8), np.ones((31, 31), np.uint8))
    top = cv2.resize(top.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.99
    assert np.abs(plain.depth[0][top] - 3.0).max() > 1.0  # junk averaged into the grid: > 1 cm off
    np.testing.assert_allclose(filtered.depth[0][top], 3.0, atol=0.01)  # the 3 cm step survives


def test_depth_options_are_checked_and_fingerprinted() -> None:
    with pytest.raises(ConfigError, match=r"depth_median_px: expected one of \[0, 3, 5\], got 4"):
        PreprocessConfig(depth_median_px=4)
    with pytest.raises(ConfigError, match=r"depth_reference: 'background' needs a foreground"):
        PreprocessConfig(depth_reference="background", foreground=None)
    with pytest.raises(ConfigError, match=r"preprocess\.depth_reference: must be one of"):
        PreprocessConfig.from_dict({"depth_reference": "belt"})
    edge = PreprocessConfig(depth_reference="background", depth_median_px=3)
    assert PreprocessConfig.from_dict(edge.to_dict()) == edge
    assert len({edge.fingerprint(), PreprocessConfig().fingerprint(),
                PreprocessConfig(depth_median_px=3).fingerprint()}) == 3  # fmt: skip
    # Older run configs and manifests without the fields keep AST's behaviour.
    assert PreprocessConfig.from_dict({}).depth_reference == "foreground_mean"


def test_part_top_reference_looks_alike_on_low_and_tall_parts() -> None:
    config = PreprocessConfig(
        image_size=64, depth_size=32, mask_dilate_px=4, depth_unit_scale=1000.0,
        depth_reference="part_top", depth_clip_m=0.005,
    )  # fmt: skip
    outs = []
    for height_m in (0.015, 0.035):
        scene = small_scene(box_size_m=(0.12, 0.09, height_m), tilt_deg=4.0)
        out = preprocess(scene_rgb(), scene.xyz, config)
        top = cv2.erode(scene.silhouette.astype(np.uint8), np.ones((31, 31), np.uint8))
        top = cv2.resize(top.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.99
        box_cells = cv2.resize(scene.silhouette.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0
        np.testing.assert_allclose(out.depth[0][top], 0.0, atol=0.05)  # flat top: 0 mm
        # The belt, inside and outside the mask, sits about 5 mm below (tanh saturation), not at -height.
        np.testing.assert_allclose(out.depth[0][~box_cells], -5.0 * np.tanh(height_m / 0.005), atol=0.05)
        outs.append(out.depth[0][~box_cells].mean())
    assert abs(outs[0] - outs[1]) < 0.05  # 15 mm and 35 mm parts: the same belt reading
