"""Dataset reader and writer: MVTec 3D-AD layout (with or without xyz) and MVTec AD layout.

Layouts, detected automatically from the category folder (reported as ``DatasetSplit.layout``):

``mvtec3d``
    ``<category>/{train,validation}/good/{rgb,xyz}/NNN.{png,tiff}`` and
    ``test/<type>/{rgb,xyz,gt}/NNN.*``. xyz: float32 (H, W, 3) metres, missing = (0, 0, 0).
``mvtec3d_rgb``
    the same folders without any ``xyz`` folder; samples have ``xyz=None``.
``mvtec_ad``
    ``train/good/*.png``, ``test/<type>/*.png``, ``ground_truth/<type>/<stem>_mask.png`` (RGB
    only, no validation split; good test images have no mask, so their ``gt`` is None).

Opening a split lists and cross-checks file names up front (counts and stems of rgb, xyz and
gt must match) but decodes nothing: images are read when a sample is indexed, so a large
dataset never sits in memory at once. Sizes are checked when a sample is decoded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from edge_ad.dataset_io import read_gt, read_rgb, read_xyz, sanitize_xyz, write_gt, write_rgb, write_xyz
from edge_ad.dataset_layout import (
    GOOD,
    SPLITS,
    Layout,
    SampleRef,
    available_splits,
    detect_layout,
    list_split,
    ordered_types,
)
from edge_ad.errors import DataError

__all__ = [
    "DatasetSplit",
    "Layout",
    "Sample",
    "SampleRef",
    "available_splits",
    "detect_layout",
    "load_sample",
    "open_split",
    "write_sample",
]


@dataclass(frozen=True, eq=False)
class Sample:
    """One decoded sample: rgb (H, W, 3) uint8 RGB, xyz (H, W, 3) float32 metres or None,
    gt (H, W) bool (True = defect) or None, label 0 good / 1 defective."""

    rgb: np.ndarray
    xyz: np.ndarray | None
    gt: np.ndarray | None
    label: int
    defect_type: str
    path: Path
    name: str


def load_sample(ref: SampleRef) -> Sample:
    """Decode the files of ``ref``; raises DataError naming the file when sizes disagree."""
    rgb = read_rgb(ref.rgb)
    height, width = rgb.shape[:2]
    xyz = None
    if ref.xyz is not None:
        xyz = read_xyz(ref.xyz)
        if xyz.shape[:2] != (height, width):
            raise DataError(
                f"point cloud {ref.xyz} is {xyz.shape[1]}x{xyz.shape[0]} (WxH) but its image {ref.rgb} "
                f"is {width}x{height}"
            )
    gt = None
    if ref.gt is not None:
        gt = read_gt(ref.gt)
        if gt.shape != (height, width):
            raise DataError(
                f"mask {ref.gt} is {gt.shape[1]}x{gt.shape[0]} (WxH) but its image {ref.rgb} is {width}x{height}"
            )
    return Sample(
        rgb=rgb, xyz=xyz, gt=gt, label=ref.label, defect_type=ref.defect_type, path=ref.rgb, name=ref.name
    )


class DatasetSplit(Sequence[Sample]):
    """The samples of one split, decoded lazily on indexing or iteration.

    Order: ``good`` first, then the other defect types alphabetically, each by file number.
    Slicing returns another (still lazy) DatasetSplit.
    """

    def __init__(self, category_root: Path, split: str, layout: Layout, refs: Sequence[SampleRef]) -> None:
        self.category_root = category_root
        self.split = split
        self.layout: Layout = layout
        self.refs: tuple[SampleRef, ...] = tuple(refs)

    def __len__(self) -> int:
        return len(self.refs)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> DatasetSplit: ...

    def __getitem__(self, index: int | slice) -> Sample | DatasetSplit:
        if isinstance(index, slice):
            return DatasetSplit(self.category_root, self.split, self.layout, self.refs[index])
        return load_sample(self.refs[index])

    def __iter__(self) -> Iterator[Sample]:
        for ref in self.refs:
            yield load_sample(ref)

    @property
    def has_xyz(self) -> bool:
        """True when every sample of the split has a point cloud."""
        return self.layout == "mvtec3d"

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Defect types present in this split, ``good`` first."""
        return ordered_types({ref.defect_type for ref in self.refs})

    def counts(self) -> dict[str, int]:
        """Number of samples per defect type, in :attr:`defect_types` order."""
        counts = dict.fromkeys(self.defect_types, 0)
        for ref in self.refs:
            counts[ref.defect_type] += 1
        return counts

    def __repr__(self) -> str:
        return f"DatasetSplit({str(self.category_root)!r}, split={self.split!r}, layout={self.layout!r}, n={len(self)})"


def open_split(category_root: Path, split: str) -> DatasetSplit:
    """List the samples of ``split`` under ``category_root`` and check that their files pair up.

    Raises DataError for a missing category or split folder, an empty split, rgb/xyz/gt folders
    whose file counts or stems disagree, or a type folder lacking ``rgb`` (or ``xyz`` when the
    category has point clouds elsewhere).
    """
    category_root = Path(category_root)
    layout = detect_layout(category_root)
    refs = list_split(category_root, split, layout)
    if not refs:
        raise DataError(f"split {split!r} is empty: no images under {category_root / split}")
    return DatasetSplit(category_root, split, layout, refs)


def write_sample(
    category_root: Path,
    split: str,
    defect_type: str,
    index: int,
    rgb: np.ndarray,
    xyz: np.ndarray | None = None,
    gt: np.ndarray | None = None,
) -> Path:
    """Write one sample in the MVTec 3D-AD layout and return the path of its rgb PNG.

    Files are ``<split>/<defect_type>/{rgb,xyz,gt}/NNN.{png,tiff,png}`` with NNN the index
    zero-padded to 3 digits (more digits from 1000 on). rgb must be (H, W, 3) uint8 RGB; xyz
    (H, W, 3) float32/float64 metres (stored as float32, non-finite points as (0, 0, 0)); gt
    (H, W) bool or integer, non-zero = defect, stored as 0/255. Reading back gives the same arrays.
    """
    category_root = Path(category_root)
    if split not in SPLITS:
        raise DataError(f"write_sample: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split != "test" and defect_type != GOOD:
        raise DataError(
            f"write_sample: split {split!r} holds good parts only, got defect type {defect_type!r}"
        )
    if not defect_type or "/" in defect_type or "\\" in defect_type or defect_type.startswith("."):
        raise DataError(f"write_sample: defect type {defect_type!r} is not a valid folder name")
    if index < 0:
        raise DataError(f"write_sample: index must be >= 0, got {index}")
    stem = f"{index:03d}"
    where = f"{split}/{defect_type}/{stem}"
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"write_sample {where}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    size = rgb.shape[:2]
    if xyz is not None:
        xyz = np.asarray(xyz)
        if xyz.dtype not in (np.float32, np.float64) or xyz.shape != (*size, 3):
            raise DataError(
                f"write_sample {where}: xyz must be {(*size, 3)} float32/float64, got {xyz.shape} {xyz.dtype}"
            )
    if gt is not None:
        gt = np.asarray(gt)
        if gt.shape != size or not (gt.dtype == np.bool_ or np.issubdtype(gt.dtype, np.integer)):
            raise DataError(
                f"write_sample {where}: gt must be {size} bool or integer, got {gt.shape} {gt.dtype}"
            )

    type_dir = category_root / split / defect_type
    rgb_path = type_dir / "rgb" / f"{stem}.png"
    rgb_path.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(rgb_path, rgb)
    if xyz is not None:
        (type_dir / "xyz").mkdir(exist_ok=True)
        write_xyz(type_dir / "xyz" / f"{stem}.tiff", sanitize_xyz(xyz))
    if gt is not None:
        (type_dir / "gt").mkdir(exist_ok=True)
        write_gt(type_dir / "gt" / f"{stem}.png", gt)
    return rgb_path
