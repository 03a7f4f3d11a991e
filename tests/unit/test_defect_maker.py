"""DefectMaker (edge_ad.defect_maker): exact masks, classes, location, determinism, shapes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ad.defect_maker import (
    CLASSES,
    FILLS,
    SHAPES,
    DefectMakerConfig,
    bezier_points,
    class_label,
    defect_location,
    make_defect,
    random_defect_or_normal,
)
from edge_ad.errors import DataError


def _scene(seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, (size, size, 3)).astype(np.uint8)
    other = rng.integers(0, 255, (size, size, 3)).astype(np.uint8)
    location = np.zeros((size, size), bool)
    location[20:70, 30:80] = True
    return image, other, location


def test_seven_classes_in_order() -> None:
    assert len(CLASSES) == 7 and CLASSES[0] == "normal"
    assert [class_label(s, f) for s in SHAPES for f in FILLS] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(DataError, match="unknown defect class"):
        class_label("circle", "noise")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fill", FILLS)
def test_mask_is_exactly_the_changed_pixels_inside_the_location(shape: str, fill: str) -> None:
    image, other, location = _scene()
    rng = np.random.default_rng(1)
    for _ in range(10):
        defect = make_defect(image, rng, location=location, source=other, shape=shape, fill=fill)
        changed = np.any(defect.image != image, axis=2)
        assert np.array_equal(defect.mask, changed) and defect.mask.any()
        assert not (defect.mask & ~location).any()
        assert defect.label == CLASSES.index(f"{shape}-{fill}") and defect.name == f"{shape}-{fill}"
        assert defect.image.dtype == np.uint8 and defect.image.shape == image.shape
    assert image.sum() == _scene()[0].sum()  # the input is never modified


def test_same_seed_same_defect_other_seed_other_defect() -> None:
    image, other, location = _scene()
    a = make_defect(image, np.random.default_rng(7), location=location, source=other)
    b = make_defect(image, np.random.default_rng(7), location=location, source=other)
    c = make_defect(image, np.random.default_rng(8), location=location, source=other)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.label == b.label
    assert not np.array_equal(a.mask, c.mask)


def test_classes_are_drawn_uniformly_normal_included() -> None:
    image, other, location = _scene(size=48)
    location = np.ones((48, 48), bool)
    rng = np.random.default_rng(0)
    labels = [random_defect_or_normal(image, rng, location=location, source=other).label for _ in range(700)]
    counts = np.bincount(labels, minlength=7)
    assert counts.sum() == 700 and counts.min() >= 70 and counts.max() <= 130  # 100 expected each
    normal = random_defect_or_normal(image, np.random.default_rng(3))
    if normal.label == 0:
        assert not normal.mask.any() and np.array_equal(normal.image, image)


def test_clumps_fall_apart_bezier_strokes_do_not() -> None:
    image, other, _ = _scene(size=128)
    rng = np.random.default_rng(2)

    def pieces(shape: str) -> float:
        counts = []
        for _ in range(30):
            mask = make_defect(image, rng, shape=shape, fill="noise").mask.astype(np.uint8)
            counts.append(cv2.connectedComponents(mask)[0] - 1)
        return float(np.mean(counts))

    assert pieces("clump") > 1.5 > pieces("bezier")


def test_scars_are_thin() -> None:
    image, _, _ = _scene(size=128)
    rng = np.random.default_rng(4)
    config = DefectMakerConfig()
    for _ in range(20):
        mask = make_defect(image, rng, shape="scar", fill="noise", config=config).mask
        # The scar lies in a rectangle at most scar_width[1] * 128 wide: its minimum-area box is that thin.
        points = np.argwhere(mask)[:, ::-1].astype(np.float32)
        (_, _), (w, h), _ = cv2.minAreaRect(points)
        assert min(w, h) <= config.scar_width[1] * 128 + 2


def test_bezier_points_hand_computed() -> None:
    control = np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 0.0]])
    points = bezier_points(control, samples=3)
    # Quadratic Bezier at t = 0.5: 0.25 P0 + 0.5 P1 + 0.25 P2 = (2, 2).
    np.testing.assert_allclose(points, [[0, 0], [2, 2], [4, 0]])


def test_bad_inputs_raise_data_errors() -> None:
    image, other, location = _scene()
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="location mask is empty"):
        make_defect(image, rng, location=np.zeros_like(location))
    with pytest.raises(DataError, match="uint8"):
        make_defect(image.astype(np.float32), rng)
    with pytest.raises(DataError, match="does not match"):
        make_defect(image, rng, location=location[:10])
    with pytest.raises(DataError, match="blend_min"):
        DefectMakerConfig(blend_min=0.0)
    small = make_defect(image, rng, source=other[:50, :60])  # a source of another size is resized
    assert small.mask.any()
    assert defect_location(None, None) is None
