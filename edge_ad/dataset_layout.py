"""Where the files of a dataset split are: layout detection and listing, without decoding anything.

See :mod:`edge_ad.dataset` for the layouts. Listing cross-checks the rgb, xyz and gt folders
(same counts, same file stems) so that a broken dataset fails when it is opened, naming the
folders and files, rather than halfway through training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_ad.errors import DataError

Layout = Literal["mvtec3d", "mvtec3d_rgb", "mvtec_ad"]

SPLITS = ("train", "validation", "test")
GOOD = "good"
RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
XYZ_SUFFIXES = (".tiff", ".tif")
GT_SUFFIXES = (".png",)
MASK_SUFFIX = "_mask"  # MVTec AD: ground_truth/<type>/<stem>_mask.png


@dataclass(frozen=True)
class SampleRef:
    """Where one sample's files live; listing a split creates these without decoding anything."""

    rgb: Path
    xyz: Path | None
    gt: Path | None
    defect_type: str
    name: str

    @property
    def label(self) -> int:
        """0 for good parts, 1 for any defect type."""
        return 0 if self.defect_type == GOOD else 1


def detect_layout(category_root: Path) -> Layout:
    """Tell which layout ``category_root`` uses; DataError when it is missing or matches none."""
    category_root = Path(category_root)
    if not category_root.is_dir():
        raise DataError(f"category directory not found: {category_root}")
    type_dirs = [d for split in SPLITS for d in _subdirs(category_root / split)]
    if any((d / "rgb").is_dir() for d in type_dirs):
        return "mvtec3d" if any((d / "xyz").is_dir() for d in type_dirs) else "mvtec3d_rgb"
    if (category_root / "ground_truth").is_dir() or any(_files(d, RGB_SUFFIXES) for d in type_dirs):
        return "mvtec_ad"
    hint = ""
    categories = [d.name for d in _subdirs(category_root) if (d / "train").is_dir() or (d / "test").is_dir()]
    if categories:
        hint = f"; it looks like a dataset root, pass one of its categories: {', '.join(categories)}"
    raise DataError(
        f"{category_root}: no known dataset layout (expected train/good/rgb/*.png for MVTec 3D-AD or "
        f"train/good/*.png for MVTec AD){hint}"
    )


def available_splits(category_root: Path) -> tuple[str, ...]:
    """The splits (of train, validation, test) that exist as folders under ``category_root``."""
    detect_layout(category_root)
    return tuple(split for split in SPLITS if (Path(category_root) / split).is_dir())


def list_split(category_root: Path, split: str, layout: Layout) -> list[SampleRef]:
    """File references of ``split`` (good first, then types alphabetically, each by file number).

    Raises DataError for a missing split folder or rgb/xyz/gt files that do not pair up.
    """
    split_dir = category_root / split
    if not split_dir.is_dir():
        present = [s for s in SPLITS if (category_root / s).is_dir()]
        raise DataError(
            f"split {split!r} not found: {split_dir} is not a directory (present: {', '.join(present) or 'none'})"
        )
    refs: list[SampleRef] = []
    for type_dir in sorted(_subdirs(split_dir), key=lambda d: _type_order(d.name)):
        if layout == "mvtec_ad":
            refs.extend(_list_mvtec_ad(category_root, split, type_dir))
        else:
            refs.extend(_list_mvtec3d(split, type_dir, with_xyz=layout == "mvtec3d"))
    return refs


def _list_mvtec3d(split: str, type_dir: Path, with_xyz: bool) -> list[SampleRef]:
    rgb_dir = type_dir / "rgb"
    if not rgb_dir.is_dir():
        raise DataError(f"{type_dir}: missing rgb folder (MVTec 3D-AD layout expects {rgb_dir})")
    rgb_files = _stem_map(rgb_dir, RGB_SUFFIXES)
    xyz_files: dict[str, Path] | None = None
    if with_xyz:
        xyz_dir = type_dir / "xyz"
        if not xyz_dir.is_dir():
            raise DataError(
                f"{type_dir}: missing xyz folder {xyz_dir} (other folders of this category have one)"
            )
        xyz_files = _stem_map(xyz_dir, XYZ_SUFFIXES)
        _check_pairing(rgb_dir, rgb_files, xyz_dir, xyz_files)
    gt_files: dict[str, Path] | None = None
    gt_dir = type_dir / "gt"
    if gt_dir.is_dir():
        gt_files = _stem_map(gt_dir, GT_SUFFIXES)
        _check_pairing(rgb_dir, rgb_files, gt_dir, gt_files)
    return [
        SampleRef(
            rgb=rgb_files[stem],
            xyz=xyz_files[stem] if xyz_files is not None else None,
            gt=gt_files[stem] if gt_files is not None else None,
            defect_type=type_dir.name,
            name=f"{split}/{type_dir.name}/{stem}",
        )
        for stem in sorted(rgb_files, key=_stem_order)
    ]


def _list_mvtec_ad(category_root: Path, split: str, type_dir: Path) -> list[SampleRef]:
    rgb_files = _stem_map(type_dir, RGB_SUFFIXES)
    gt_files: dict[str, Path] | None = None
    gt_dir = category_root / "ground_truth" / type_dir.name
    # Good images have no masks in MVTec AD; a mask folder for a type must cover every image.
    if split == "test" and gt_dir.is_dir():
        masks = _stem_map(gt_dir, GT_SUFFIXES)
        gt_files = {stem.removesuffix(MASK_SUFFIX): path for stem, path in masks.items()}
        _check_pairing(type_dir, rgb_files, gt_dir, gt_files)
    return [
        SampleRef(
            rgb=rgb_files[stem],
            xyz=None,
            gt=gt_files[stem] if gt_files is not None else None,
            defect_type=type_dir.name,
            name=f"{split}/{type_dir.name}/{stem}",
        )
        for stem in sorted(rgb_files, key=_stem_order)
    ]


def _check_pairing(rgb_dir: Path, rgb: dict[str, Path], other_dir: Path, other: dict[str, Path]) -> None:
    if rgb.keys() == other.keys():
        return
    only_rgb = sorted(rgb.keys() - other.keys(), key=_stem_order)
    only_other = sorted(other.keys() - rgb.keys(), key=_stem_order)
    details = []
    if only_rgb:
        details.append(f"no partner in {other_dir} for {', '.join(rgb[s].name for s in only_rgb[:5])}")
    if only_other:
        details.append(f"no image in {rgb_dir} for {', '.join(other[s].name for s in only_other[:5])}")
    raise DataError(
        f"{rgb_dir} has {len(rgb)} files but {other_dir} has {len(other)}, or their names differ: "
        + "; ".join(details)
    )


def _stem_map(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files = _files(folder, suffixes)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise DataError(
                f"{folder}: two files share the name {path.stem!r}: {stems[path.stem].name}, {path.name}"
            )
        stems[path.stem] = path
    return stems


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stem_order(stem: str) -> tuple[int, int, str]:
    # Numeric stems sort by value so that 1000 comes after 999 even though it has more digits.
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _type_order(defect_type: str) -> tuple[int, str]:
    return (0 if defect_type == GOOD else 1, defect_type)


def ordered_types(types: set[str]) -> tuple[str, ...]:
    return tuple(sorted(types, key=_type_order))
