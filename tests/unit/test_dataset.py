"""Dataset reader/writer: layouts, round trip, the real tire subset, and every error case."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import typer
from typer.testing import CliRunner

from edge_ad.commands import data as data_commands
from edge_ad.dataset import available_splits, detect_layout, open_split, write_sample
from edge_ad.errors import DataError
from tests.helpers.datasets import make_mvtec3d, make_mvtecad, plane_xyz, random_rgb

SIZE = (24, 32)  # (H, W) of the helper datasets


@pytest.fixture
def mvtec3d(tmp_path: Path) -> Path:
    return make_mvtec3d(
        tmp_path, "part", n_train=4, n_validation=2, n_test_good=2, defects={"crack": 2, "hole": 1}
    )


# --- layouts -------------------------------------------------------------------------------------


def test_mvtec3d_layout_lists_and_decodes(mvtec3d: Path) -> None:
    assert detect_layout(mvtec3d) == "mvtec3d"
    assert available_splits(mvtec3d) == ("train", "validation", "test")
    train = open_split(mvtec3d, "train")
    assert train.layout == "mvtec3d" and train.has_xyz and len(train) == 4
    assert train.defect_types == ("good",)
    sample = train[1]
    assert sample.rgb.shape == (*SIZE, 3) and sample.rgb.dtype == np.uint8
    assert sample.xyz is not None and sample.xyz.shape == (*SIZE, 3) and sample.xyz.dtype == np.float32
    assert sample.gt is None and sample.label == 0 and sample.defect_type == "good"
    assert sample.name == "train/good/001"
    assert sample.path == mvtec3d / "train" / "good" / "rgb" / "001.png"

    test = open_split(mvtec3d, "test")
    assert test.defect_types == ("good", "crack", "hole")
    assert test.counts() == {"good": 2, "crack": 2, "hole": 1}
    assert [s.name for s in test] == [
        "test/good/000",
        "test/good/001",
        "test/crack/000",
        "test/crack/001",
        "test/hole/000",
    ]
    good, crack = test[0], test[2]
    assert good.gt is not None and good.gt.dtype == np.bool_ and not good.gt.any() and good.label == 0
    assert crack.gt is not None and crack.gt.any() and crack.label == 1 and crack.defect_type == "crack"


def test_rgb_only_3d_layout(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path, "flat", n_train=3, n_validation=1, with_xyz=False)
    assert detect_layout(root) == "mvtec3d_rgb"
    split = open_split(root, "test")
    assert not split.has_xyz
    assert all(ref.xyz is None for ref in split.refs)
    sample = split[-1]
    assert sample.xyz is None and sample.rgb.shape == (*SIZE, 3) and sample.gt is not None and sample.gt.any()


def test_mvtec_ad_layout(tmp_path: Path) -> None:
    root = make_mvtecad(tmp_path, "screw", n_train=3, n_test_good=2, defects={"scratch": 2})
    assert detect_layout(root) == "mvtec_ad"
    assert available_splits(root) == ("train", "test")
    train = open_split(root, "train")
    assert train.layout == "mvtec_ad" and not train.has_xyz and len(train) == 3
    test = open_split(root, "test")
    assert test.counts() == {"good": 2, "scratch": 2}
    good, scratch = test[0], test[3]
    assert good.gt is None and good.xyz is None and good.label == 0
    assert scratch.name == "test/scratch/001" and scratch.label == 1
    assert scratch.gt is not None and scratch.gt.shape == SIZE and scratch.gt.any()
    assert test.refs[3].gt == root / "ground_truth" / "scratch" / "001_mask.png"
    with pytest.raises(DataError, match="split 'validation' not found.*present: train, test"):
        open_split(root, "validation")


def test_slicing_is_lazy_and_keeps_metadata(mvtec3d: Path) -> None:
    test = open_split(mvtec3d, "test")
    head = test[:3]
    assert len(head) == 3 and head.layout == "mvtec3d" and head.split == "test"
    assert head.counts() == {"good": 2, "crack": 1}
    # Listing does not decode: a file corrupted after listing only fails when it is indexed.
    test.refs[4].rgb.write_bytes(b"not a png")
    assert head[2].defect_type == "crack"
    with pytest.raises(DataError, match=r"cannot read image .*hole.*000\.png"):
        test[4]


# --- writer / reader round trip ----------------------------------------------------------------


def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rgb = random_rgb(rng, (17, 23))
    xyz = plane_xyz(rng, (17, 23), missing_fraction=0.2)
    gt = rng.random((17, 23)) < 0.3
    path = write_sample(tmp_path / "cat", "test", "dent", 5, rgb, xyz, gt)
    assert path == tmp_path / "cat" / "test" / "dent" / "rgb" / "005.png"
    assert (tmp_path / "cat" / "test" / "dent" / "xyz" / "005.tiff").is_file()
    stored_gt = cv2.imread(str(tmp_path / "cat" / "test" / "dent" / "gt" / "005.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(stored_gt)) == {0, 255}
    write_sample(tmp_path / "cat", "train", "good", 0, rgb, xyz)  # layout needs a train split too
    sample = open_split(tmp_path / "cat", "test")[0]
    assert np.array_equal(sample.rgb, rgb)
    assert sample.xyz is not None and sample.xyz.tobytes() == xyz.tobytes()
    assert sample.gt is not None and np.array_equal(sample.gt, gt)
    assert sample.name == "test/dent/005" and sample.label == 1


def test_writer_normalises_xyz_float64_and_non_finite(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xyz = plane_xyz(rng, SIZE, missing_fraction=0.0).astype(np.float64)
    xyz[3, 4, 1] = np.nan
    xyz[5, 6, 2] = np.inf
    write_sample(tmp_path / "cat", "train", "good", 0, random_rgb(rng, SIZE), xyz)
    back = open_split(tmp_path / "cat", "train")[0].xyz
    assert back is not None and back.dtype == np.float32
    assert np.all(back[3, 4] == 0) and np.all(back[5, 6] == 0)
    assert np.array_equal(back[0, 0], xyz[0, 0].astype(np.float32))
    assert np.count_nonzero(np.all(back == 0, axis=2)) == 2  # only the two non-finite points are missing


def test_index_padding_and_numeric_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for index in (1000, 999, 2):
        write_sample(tmp_path / "cat", "train", "good", index, random_rgb(rng, SIZE))
    split = open_split(tmp_path / "cat", "train")
    assert [ref.rgb.name for ref in split.refs] == ["002.png", "999.png", "1000.png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "val"}, "split must be one of"),
        ({"split": "train", "defect_type": "crack"}, "holds good parts only"),
        ({"defect_type": "a/b"}, "not a valid folder name"),
        ({"index": -1}, "index must be >= 0"),
        ({"rgb": np.zeros((*SIZE, 3), np.uint16)}, "rgb must be"),
        ({"rgb": np.zeros(SIZE, np.uint8)}, "rgb must be"),
        ({"xyz": np.zeros((*SIZE, 3), np.int32)}, "xyz must be"),
        ({"xyz": np.zeros((SIZE[0] + 1, SIZE[1], 3), np.float32)}, "xyz must be"),
        ({"gt": np.zeros((SIZE[0], SIZE[1] + 1), bool)}, "gt must be"),
        ({"gt": np.zeros(SIZE, np.float32)}, "gt must be"),
    ],
)
def test_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {
        "split": "test",
        "defect_type": "dent",
        "index": 0,
        "rgb": np.zeros((*SIZE, 3), np.uint8),
    } | kwargs
    with pytest.raises(DataError, match=message):
        write_sample(tmp_path / "cat", **args)


# --- image conversions ---------------------------------------------------------------------------


def test_channel_order_matches_opencv_files(tmp_path: Path) -> None:
    root = make_mvtecad(tmp_path, "c", n_train=1, n_test_good=1, defects={})
    bgr = np.zeros((*SIZE, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's BGR order
    cv2.imwrite(str(root / "train" / "good" / "000.png"), bgr)
    assert tuple(open_split(root, "train")[0].rgb[0, 0]) == (0, 0, 200)
    red = np.zeros((*SIZE, 3), np.uint8)
    red[..., 0] = 180
    path = write_sample(tmp_path / "w", "train", "good", 0, red)
    assert tuple(cv2.imread(str(path))[0, 0]) == (0, 0, 180)  # other tools see red too


def test_grey_and_rgba_images_become_rgb(tmp_path: Path) -> None:
    root = make_mvtecad(tmp_path, "c", n_train=2, n_test_good=1, defects={})
    grey = np.arange(SIZE[0] * SIZE[1], dtype=np.uint8).reshape(SIZE)
    cv2.imwrite(str(root / "train" / "good" / "000.png"), grey)
    bgra = np.zeros((*SIZE, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0  # fully transparent
    cv2.imwrite(str(root / "train" / "good" / "001.png"), bgra)
    train = open_split(root, "train")
    from_grey, from_rgba = train[0], train[1]
    assert from_grey.rgb.shape == (*SIZE, 3) and np.array_equal(from_grey.rgb[..., 1], grey)
    assert from_rgba.rgb.shape == (*SIZE, 3) and tuple(from_rgba.rgb[0, 0]) == (30, 20, 10)  # alpha dropped


def test_sixteen_bit_rgb_is_an_error(tmp_path: Path) -> None:
    root = make_mvtecad(tmp_path, "c", n_train=1, n_test_good=1, defects={})
    cv2.imwrite(str(root / "train" / "good" / "000.png"), np.full((*SIZE, 3), 4000, np.uint16))
    with pytest.raises(DataError, match=r"000\.png: expected 8-bit channels, got dtype uint16"):
        open_split(root, "train")[0]


# --- inconsistent datasets -----------------------------------------------------------------------


def test_missing_category_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="category directory not found: .*nope"):
        open_split(tmp_path / "nope", "train")


def test_unknown_layout_and_dataset_root_hint(tmp_path: Path) -> None:
    (tmp_path / "junk" / "stuff").mkdir(parents=True)
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_layout(tmp_path / "junk")
    make_mvtec3d(tmp_path / "root", "bagel", n_train=1, n_validation=0, n_test_good=0, defects={})
    with pytest.raises(DataError, match="looks like a dataset root.*bagel"):
        detect_layout(tmp_path / "root")


def test_empty_split(tmp_path: Path) -> None:
    root = make_mvtec3d(tmp_path, "c", n_train=1, n_validation=0, n_test_good=1, defects={})
    (root / "validation" / "good" / "rgb").mkdir(parents=True)
    (root / "validation" / "good" / "xyz").mkdir(parents=True)
    with pytest.raises(DataError, match="split 'validation' is empty: no images under .*validation"):
        open_split(root, "validation")


def test_xyz_count_mismatch(mvtec3d: Path) -> None:
    (mvtec3d / "train" / "good" / "xyz" / "002.tiff").unlink()
    with pytest.raises(DataError, match=r"rgb has 4 files but .*xyz has 3.*no partner .* for 002\.png"):
        open_split(mvtec3d, "train")


def test_stem_mismatch_between_rgb_and_xyz(mvtec3d: Path) -> None:
    xyz_dir = mvtec3d / "train" / "good" / "xyz"
    (xyz_dir / "003.tiff").rename(xyz_dir / "007.tiff")
    with pytest.raises(DataError, match=r"no partner .* for 003\.png; no image in .* for 007\.tiff"):
        open_split(mvtec3d, "train")


def test_gt_stem_mismatch(mvtec3d: Path) -> None:
    gt_dir = mvtec3d / "test" / "crack" / "gt"
    (gt_dir / "001.png").rename(gt_dir / "01.png")
    with pytest.raises(DataError, match=r"crack.gt.*no image in .* for 01\.png"):
        open_split(mvtec3d, "test")


def test_xyz_folder_missing_in_one_type(mvtec3d: Path) -> None:
    for path in (mvtec3d / "test" / "hole" / "xyz").iterdir():
        path.unlink()
    (mvtec3d / "test" / "hole" / "xyz").rmdir()
    with pytest.raises(DataError, match="hole: missing xyz folder"):
        open_split(mvtec3d, "test")
    assert len(open_split(mvtec3d, "train")) == 4  # other splits still open


def test_type_folder_without_rgb(mvtec3d: Path) -> None:
    (mvtec3d / "test" / "bent" / "xyz").mkdir(parents=True)
    with pytest.raises(DataError, match="bent: missing rgb folder"):
        open_split(mvtec3d, "test")


def test_mvtec_ad_missing_mask(tmp_path: Path) -> None:
    root = make_mvtecad(tmp_path, "c", n_train=1, n_test_good=1, defects={"scratch": 3})
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"no partner in .*ground_truth.scratch for 001\.png"):
        open_split(root, "test")


def test_xyz_size_mismatch(mvtec3d: Path) -> None:
    path = mvtec3d / "train" / "good" / "xyz" / "001.tiff"
    tifffile.imwrite(path, np.zeros((SIZE[0], SIZE[1] - 1, 3), np.float32), photometric="rgb")
    split = open_split(mvtec3d, "train")
    with pytest.raises(
        DataError, match=r"point cloud .*001\.tiff is 31x24 \(WxH\) but its image .*001\.png is 32x24"
    ):
        split[1]


def test_gt_size_mismatch(mvtec3d: Path) -> None:
    cv2.imwrite(
        str(mvtec3d / "test" / "crack" / "gt" / "000.png"), np.zeros((SIZE[0] + 2, SIZE[1]), np.uint8)
    )
    split = open_split(mvtec3d, "test")
    with pytest.raises(DataError, match=r"mask .*crack.gt.000\.png is 32x26"):
        split[2]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((*SIZE, 3), np.int32), "expected float32 or float64 coordinates, got int32"),
        (np.zeros(SIZE, np.float32), r"expected shape \(H, W, 3\), got \(24, 32\)"),
        (np.zeros((*SIZE, 4), np.float32), r"expected shape \(H, W, 3\), got \(24, 32, 4\)"),
    ],
)
def test_bad_xyz_content(mvtec3d: Path, array: np.ndarray, message: str) -> None:
    path = mvtec3d / "train" / "good" / "xyz" / "000.tiff"
    photometric = "rgb" if array.ndim == 3 and array.shape[2] == 3 else "minisblack"
    tifffile.imwrite(path, array, photometric=photometric, planarconfig="contig" if array.ndim == 3 else None)
    with pytest.raises(DataError, match=f"point cloud .*000\\.tiff: {message}"):
        open_split(mvtec3d, "train")[0]


@pytest.mark.parametrize("keep", [8, 100, 0.5])
def test_unreadable_xyz(mvtec3d: Path, keep: float) -> None:
    path = mvtec3d / "train" / "good" / "xyz" / "000.tiff"
    content = path.read_bytes()
    path.write_bytes(content[: int(keep * len(content)) if keep < 1 else int(keep)])
    with pytest.raises(DataError, match=r"cannot read point cloud .*000\.tiff"):
        open_split(mvtec3d, "train")[0]


def test_truncated_png(mvtec3d: Path) -> None:
    path = mvtec3d / "train" / "good" / "rgb" / "000.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cannot read image .*000\.png"):
        open_split(mvtec3d, "train")[0]


# --- the real MVTec 3D-AD tire subset (RGB only) ---------------------------------------------------


def test_real_tire_subset(tire_root: Path) -> None:
    assert detect_layout(tire_root) == "mvtec3d_rgb"
    assert len(open_split(tire_root, "train")) == 30
    assert len(open_split(tire_root, "validation")) == 2
    test = open_split(tire_root, "test")
    assert test.counts() == {"good": 25, "combined": 5, "contamination": 28, "cut": 27, "hole": 27}
    assert all(ref.gt is not None for ref in test.refs)
    good = test[0]
    assert good.rgb.shape == (800, 600, 3) and good.xyz is None and good.gt is not None and not good.gt.any()
    for defect_type in ("combined", "contamination", "cut", "hole"):
        index = next(i for i, ref in enumerate(test.refs) if ref.defect_type == defect_type)
        sample = test[index]
        assert sample.label == 1 and sample.gt is not None and sample.gt.any(), defect_type
        assert sample.gt.shape == sample.rgb.shape[:2]


# --- edge-ad inspect-data ----------------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Keeps `inspect-data` a named sub-command, as in the real root app."""

    data_commands.register(app)
    return app


def _invoke(*args: str | os.PathLike) -> tuple[int, str]:
    result = CliRunner().invoke(_cli(), ["inspect-data", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_inspect_data_reports_layout_counts_and_xyz(mvtec3d: Path) -> None:
    code, output = _invoke(mvtec3d, "-n", "2")
    assert code == 0, output
    assert "layout: mvtec3d" in output
    assert "crack" in output and "hole" in output and "validation" in output
    assert "32x24" in output
    assert re.search(r"32x24 .* 9\d%-9\d% .* 0\.50\d m", output), output  # ~95 % valid points near 0.5 m


def test_inspect_data_rgb_only_and_mvtec_ad(tmp_path: Path) -> None:
    code, output = _invoke(make_mvtecad(tmp_path, "screw"))
    assert code == 0, output
    assert "layout: mvtec_ad" in output and re.search(r"24 +│ none +│ -", output), output


def test_inspect_data_warns_about_millimetres(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_sample(tmp_path / "mm", "train", "good", 0, random_rgb(rng, SIZE), plane_xyz(rng, SIZE) * 1000)
    code, output = _invoke(tmp_path / "mm")
    assert code == 0, output
    assert "millimetres" in output


def test_inspect_data_exit_codes(tmp_path: Path, mvtec3d: Path) -> None:
    code, output = _invoke(tmp_path / "missing")
    assert code == 3 and "category directory not found" in output
    (mvtec3d / "test" / "crack" / "xyz" / "001.tiff").unlink()
    code, output = _invoke(mvtec3d)
    assert code == 3 and "DataError" in output


def test_inspect_data_on_tire(tire_root: Path) -> None:
    code, output = _invoke(tire_root, "-n", "2")
    assert code == 0, output
    assert "layout: mvtec3d_rgb" in output and "600x800" in output and "contamination" in output


def test_inspect_data_is_registered_on_the_root_app() -> None:
    from edge_ad.cli import app

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "inspect-data" in result.output
