from __future__ import annotations

import numpy as np
import pytest

from edge_ad.errors import ConfigError, GeometryError, PlaneFitError
from edge_ad.geometry import (
    ForegroundConfig,
    Plane,
    corner_background,
    dilate_mask,
    extract_foreground,
    fill_holes,
    fit_plane,
    part_presence,
    roi_to_pixels,
    valid_mask,
)
from tests.helpers.scenes import make_scene


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b)) / float(np.count_nonzero(a | b))


# --- plane -----------------------------------------------------------------------------------------


def test_plane_is_oriented_toward_the_camera() -> None:
    plane = Plane((0.0, 0.0, 2.0), -0.8)  # z = 0.4 written with the normal pointing away
    assert plane.normal == (0.0, 0.0, -1.0)
    assert plane.d == pytest.approx(0.4)
    closer, farther = np.array([[0.1, 0.0, 0.35], [0.0, 0.1, 0.45]], np.float32)
    assert plane.signed_distance(closer) == pytest.approx(0.05, abs=1e-6)
    assert plane.signed_distance(farther) == pytest.approx(-0.05, abs=1e-6)
    assert plane.tilt_deg() == pytest.approx(0.0)


@pytest.mark.parametrize("tilt_deg", [5.0, 10.0])
def test_fit_recovers_tilted_plane_with_outliers_and_holes(tilt_deg: float) -> None:
    scene = make_scene(
        tilt_deg=tilt_deg,
        box_size_m=(0.16, 0.12, 0.04),
        noise_m=0.001,
        hole_fraction=0.11,
        junk_fraction=0.06,
    )
    valid = valid_mask(scene.xyz)
    points = scene.xyz[valid]
    outliers = np.abs(scene.plane.signed_distance(points)) > 0.005
    assert outliers.mean() >= 0.2  # the scene really is 20 % off-plane
    assert 1 - valid.mean() >= 0.1

    fit = fit_plane(points)

    assert fit.plane.angle_to_deg(scene.plane) < 0.5
    assert abs(fit.plane.d - scene.plane.d) < 0.001
    assert fit.plane.tilt_deg() == pytest.approx(tilt_deg, abs=0.5)
    assert 0.6 < fit.inlier_ratio < 0.85
    assert fit.rms_m < 0.0015


def test_fit_is_deterministic_for_a_seed() -> None:
    scene = make_scene(noise_m=0.002, junk_fraction=0.1, width=160, height=120, focal_px=150)
    points = scene.xyz[valid_mask(scene.xyz)]
    assert fit_plane(points, seed=3) == fit_plane(points, seed=3)


def test_fit_refuses_too_few_points() -> None:
    with pytest.raises(PlaneFitError, match="10 points, need at least 30"):
        fit_plane(np.random.default_rng(0).uniform(0.3, 0.5, (10, 3)))


def test_fit_refuses_collinear_points() -> None:
    t = np.linspace(0.0, 1.0, 500)[:, None]
    points = np.array([0.1, -0.2, 0.5]) + t * np.array([0.05, 0.02, 0.1])
    with pytest.raises(PlaneFitError, match="collinear"):
        fit_plane(points)


def test_fit_refuses_a_cloud_without_a_dominant_plane() -> None:
    points = np.random.default_rng(1).uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 0.7], (5000, 3))
    with pytest.raises(
        PlaneFitError, match=r"no dominant plane: best RANSAC plane holds \d+\.\d% of 1000 points"
    ):
        fit_plane(points)


def test_a_flat_part_larger_than_the_visible_belt_is_not_taken_for_the_belt() -> None:
    # The box top is the largest plane; calling it background would hide the part silently.
    scene = make_scene(box_size_m=(0.34, 0.26, 0.03), box_center_m=(0.0, 0.0), noise_m=0.001)
    assert scene.silhouette.mean() > 0.7
    with pytest.raises(
        PlaneFitError, match=r"no background plane: 2\d\.\d% of 5000 points lie more than 12 mm"
    ):
        extract_foreground(scene.xyz)
    points = scene.xyz[valid_mask(scene.xyz)]
    top = fit_plane(points, max_behind_ratio=1.0)  # check off: the dominant plane is the box top
    assert top.plane.d == pytest.approx(scene.plane.d - 0.03, abs=0.001)


def test_fit_refuses_missing_marker_points() -> None:
    scene = make_scene(width=64, height=48, focal_px=60, hole_fraction=0.2)
    with pytest.raises(GeometryError, match=r"\(0, 0, 0\) missing marker; filter with valid_mask"):
        fit_plane(scene.xyz.reshape(-1, 3))


# --- validity, hole filling, corners ---------------------------------------------------------------


def test_valid_mask_rejects_zero_nan_inf_and_out_of_range() -> None:
    xyz = np.full((1, 6, 3), 0.4, np.float32)
    xyz[0, 0] = 0.0
    xyz[0, 1, 2] = np.nan
    xyz[0, 2, 0] = np.inf
    xyz[0, 3, 2] = 0.01  # closer than z_min
    xyz[0, 4, 2] = 9.0  # farther than z_max
    assert valid_mask(xyz, z_min=0.05, z_max=5.0).tolist() == [[False, False, False, False, False, True]]


def test_fill_holes_single_hole_gets_neighbour_mean() -> None:
    z = np.random.default_rng(0).uniform(0.3, 0.5, (9, 9)).astype(np.float32)
    valid = np.ones_like(z, bool)
    valid[4, 4] = valid[0, 0] = False
    filled = fill_holes(z, valid)
    neighbours = np.delete(z[3:6, 3:6].ravel(), 4)
    assert filled[4, 4] == pytest.approx(neighbours.mean(), rel=1e-6)
    assert filled[0, 0] == pytest.approx(np.mean([z[0, 1], z[1, 0], z[1, 1]]), rel=1e-6)
    np.testing.assert_array_equal(filled[valid], z[valid])


def test_fill_holes_leaves_the_core_of_a_large_hole_after_three_passes() -> None:
    z = np.full((21, 21), 0.4, np.float32)
    valid = np.ones_like(z, bool)
    valid[5:16, 5:16] = False  # 11 x 11 hole: 3 passes reach 3 pixels in, a 5 x 5 core stays
    filled = fill_holes(z, valid, iterations=3)
    assert np.all(filled[8:13, 8:13] == 0)
    assert np.count_nonzero(filled == 0) == 25
    np.testing.assert_allclose(filled[filled > 0], 0.4, rtol=1e-6)


def test_corner_background_reproduces_a_bilinear_surface() -> None:
    h, w = 40, 60
    s = np.linspace(0, 1, w)[None, :]
    t = np.linspace(0, 1, h)[:, None]
    corners = (0.40, 0.43, 0.38, 0.45)  # top-left, top-right, bottom-left, bottom-right
    surface = (1 - t) * ((1 - s) * corners[0] + s * corners[1]) + t * ((1 - s) * corners[2] + s * corners[3])
    # Anything between the corners (a part, noise) must not move the background.
    z = np.random.default_rng(0).uniform(0.3, 0.5, (h, w)).astype(np.float32)
    for value, rows, cols in zip(corners, (0, 0, h - 2, h - 2), (0, w - 2, 0, w - 2), strict=True):
        z[rows : rows + 2, cols : cols + 2] = value
    valid = np.ones_like(z, bool)
    valid[0, 0] = False  # a missing corner pixel is left out of its patch mean
    z[0, 0] = 0.0
    background = corner_background(z, valid)
    np.testing.assert_allclose(background, surface, atol=1e-6)
    valid[-2:, -2:] = False
    with pytest.raises(GeometryError, match="bottom-right corner"):
        corner_background(z, valid)


# --- foreground ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["plane", "corners"])
def test_box_on_plane_is_recovered(method: str) -> None:
    scene = make_scene(noise_m=0.001, hole_fraction=0.1, dent_radius_m=0.03)
    result = extract_foreground(scene.xyz, ForegroundConfig(method=method))
    assert iou(result.raw_mask, scene.silhouette) > 0.9
    assert np.count_nonzero(result.mask) > np.count_nonzero(result.raw_mask)  # dilated
    assert result.valid_fraction == pytest.approx(0.9, abs=0.01)
    assert result.z_filled.dtype == np.float32 and np.all(result.z_filled > 0.3)


def test_dent_below_the_plane_is_not_foreground() -> None:
    scene = make_scene(noise_m=0.001, dent_radius_m=0.04, dent_depth_m=0.02)
    result = extract_foreground(scene.xyz)
    assert scene.dent.sum() > 1000
    assert not (result.raw_mask & scene.dent).any()
    # The dent is 2 cm behind the belt along the rays: about -2 cm along the normal.
    assert np.median(result.height_m[scene.dent]) == pytest.approx(-0.02, abs=0.002)


def test_empty_belt_gives_an_empty_mask() -> None:
    scene = make_scene(box_size_m=None, noise_m=0.001, hole_fraction=0.05)
    result = extract_foreground(scene.xyz)
    assert not result.raw_mask.any() and not result.mask.any()
    assert result.fit is not None and result.fit.inlier_ratio > 0.95


def test_unfillable_hole_reads_as_belt() -> None:
    scene = make_scene(width=320, height=240, focal_px=300, noise_m=0.0)
    xyz = scene.xyz.copy()
    xyz[20:60, 20:60] = 0.0  # belt hole too large for 3 passes
    result = extract_foreground(xyz)
    assert not result.raw_mask[20:60, 20:60].any()
    assert np.all(result.z_filled[20:60, 20:60] > 0)
    # The core that 3 passes cannot reach gets the plane's depth along each pixel's ray.
    np.testing.assert_allclose(result.z_filled[23:57, 23:57], scene.depth[23:57, 23:57], rtol=1e-4)


def test_calibrated_plane_matches_and_a_moved_camera_is_refused() -> None:
    scene = make_scene(noise_m=0.001, hole_fraction=0.05)
    result = extract_foreground(scene.xyz, ForegroundConfig(method="calibrated", plane=scene.plane))
    assert iou(result.raw_mask, scene.silhouette) > 0.9
    assert result.plane == scene.plane and result.fit is None
    moved = Plane(scene.plane.normal, scene.plane.d - 0.05)
    with pytest.raises(PlaneFitError, match="calibrated plane does not match"):
        extract_foreground(scene.xyz, ForegroundConfig(method="calibrated", plane=moved))


@pytest.mark.parametrize(
    ("fill", "message"),
    [(0.0, r"only 0\.0% of"), (np.nan, r"only 0\.0% of")],
)
def test_unusable_depth_raises(fill: float, message: str) -> None:
    xyz = np.full((48, 64, 3), fill, np.float32)
    with pytest.raises(GeometryError, match=message):
        extract_foreground(xyz)


def test_too_few_valid_pixels_raise_with_numbers() -> None:
    scene = make_scene(width=64, height=48, focal_px=60)
    xyz = scene.xyz.copy()
    xyz[np.random.default_rng(0).random((48, 64)) < 0.85] = 0.0
    with pytest.raises(GeometryError, match=r"only 1\d\.\d% of 3072 pixels .* need >= 25%"):
        extract_foreground(xyz)


def test_cluttered_cloud_raises_plane_fit_error() -> None:
    xyz = np.random.default_rng(2).uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 0.7], (48, 64, 3)).astype(np.float32)
    with pytest.raises(PlaneFitError, match="no dominant plane"):
        extract_foreground(xyz)


def test_wrong_shape_raises() -> None:
    with pytest.raises(GeometryError, match=r"\(H, W, 3\)"):
        extract_foreground(np.zeros((48, 64), np.float32))


def test_dilate_mask_uses_a_square_of_the_given_side() -> None:
    mask = np.zeros((20, 20), bool)
    mask[10, 10] = True
    assert np.count_nonzero(dilate_mask(mask, 8)) == 64
    assert np.count_nonzero(dilate_mask(mask, 0)) == 1


# --- config and presence ---------------------------------------------------------------------------


def test_foreground_config_round_trip_and_errors() -> None:
    config = ForegroundConfig(
        method="calibrated", plane=Plane((0.1, 0.0, -1.0), 0.4), roi=[0.1, 0.2, 0.9, 1.0]
    )
    data = config.to_dict()
    assert data["roi"] == [0.1, 0.2, 0.9, 1.0] and set(data["plane"]) == {"normal", "d"}
    assert ForegroundConfig.from_dict(data) == config
    with pytest.raises(ConfigError, match=r"foreground\.thresh: unknown key"):
        ForegroundConfig.from_dict({"thresh": 0.01})
    with pytest.raises(ConfigError, match=r"foreground\.threshold_m: expected a number"):
        ForegroundConfig.from_dict({"threshold_m": "7mm"})
    with pytest.raises(ConfigError, match=r"ForegroundConfig\.threshold_m: must be > 0"):
        ForegroundConfig(threshold_m=-0.001)
    with pytest.raises(ConfigError, match="needs a plane"):
        ForegroundConfig(method="calibrated")
    with pytest.raises(ConfigError, match="roi"):
        ForegroundConfig(roi=(0.5, 0.0, 0.4, 1.0))


def test_part_presence_in_roi() -> None:
    mask = np.zeros((100, 200), bool)
    mask[40:60, 120:160] = True  # 800 px
    full = part_presence(mask)
    assert full.present and full.bbox == (120, 40, 160, 60) and not full.touches_roi_edge
    assert full.area_fraction == pytest.approx(800 / 20000)
    left = part_presence(mask, roi=(0.0, 0.0, 0.5, 1.0))
    assert not left.present and left.bbox is None and left.area_fraction == 0.0
    cut = part_presence(mask, roi=(0.0, 0.0, 0.7, 1.0))  # ROI ends at x = 140, inside the part
    assert cut.present and cut.touches_roi_edge and cut.bbox == (120, 40, 140, 60)
    assert not part_presence(mask, min_area_fraction=0.05).present
    assert roi_to_pixels((0.25, 0.5, 0.75, 1.0), 200, 100) == (50, 50, 150, 100)


# --- synthetic line scenes (edge_ad.synth) ---------------------------------------------------------


def test_synthetic_scenes_plane_and_foreground_accuracy() -> None:
    from edge_ad.synth import SynthConfig, render_scene

    config = SynthConfig()
    angles, offsets, ious = [], [], []
    for seed in range(6):
        scene = render_scene(seed, config)
        truth = Plane(scene.plane.normal, scene.plane.d)
        result = extract_foreground(scene.xyz)
        angles.append(result.plane.angle_to_deg(truth))
        offsets.append(abs(result.plane.d - truth.d))
        ious.append(iou(result.raw_mask, scene.object_mask))
    assert max(angles) < 0.5 and max(offsets) < 0.001
    # Only the part's lowest 7 mm and its silhouette edge may be missed.
    assert np.median(ious) > 0.9 and min(ious) > 0.85
