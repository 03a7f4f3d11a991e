"""Threshold calibration on the station's own good parts, written into the bundle it belongs to.

Every good part of a data folder (MVTec 3D-AD layout: train/good, validation/good, test/good; a
folder of ``edge-ad record`` recordings has the same layout) is scored through the runtime path
itself -- :class:`edge_ad.inspector.Inspector` on ONNX Runtime, frames from the ``folder:``
source -- so the threshold sits on exactly the numbers the line will compute. The threshold for
the target false-reject rate and its 95 % upper bound come from :mod:`edge_ad.thresholds`; the
manifest's ``scoring`` (threshold with the data's hash, robust normalization) is rewritten and the
bundle is verified again. Defective parts in test/ are scored too and reported as recall per
defect type (they never move the threshold).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.bundle import load_bundle
from edge_ad.dataset import open_split
from edge_ad.dataset_layout import GOOD, available_splits
from edge_ad.errors import BundleError, DataError
from edge_ad.frame import Frame
from edge_ad.hashing import sha256_file
from edge_ad.inspector import Inspector
from edge_ad.manifest import MANIFEST_NAME, describe_files, write_manifest
from edge_ad.progress import track
from edge_ad.scoring import Normalization, ScoringSpec, ThresholdSpec
from edge_ad.sources import SourceExhausted, open_source
from edge_ad.thresholds import NormalizationStats, ThresholdChoice, threshold_for_frr


@dataclass(frozen=True)
class DefectRecall:
    """How many parts of one defect type the new threshold rejects (faults count as rejected)."""

    n: int
    rejected: int
    faults: int

    @property
    def recall(self) -> float:
        """Share of this type's parts rejected."""
        return self.rejected / self.n if self.n else float("nan")


@dataclass(frozen=True)
class ThresholdCalibration:
    """The new operating point, what it was set on, and how defects fare under it.

    ``good_faults``: good parts the inspector could not score (they would be FAULT_REJECTs on the
    line, on top of the false-reject rate).
    """

    choice: ThresholdChoice
    normalization: NormalizationStats
    data_hash: str
    previous_threshold: float
    good_per_split: dict[str, int]
    good_faults: int
    recall: dict[str, DefectRecall]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "threshold": self.choice.to_dict(),
            "normalization": self.normalization.to_dict(),
            "data_hash": self.data_hash,
            "previous_threshold": self.previous_threshold,
            "good_per_split": self.good_per_split,
            "good_faults": self.good_faults,
            "recall": {
                name: {"n": r.n, "rejected": r.rejected, "faults": r.faults, "recall": r.recall}
                for name, r in self.recall.items()
            },
        }


def data_hash(data_dir: Path, splits: tuple[str, ...]) -> str:
    """``sha256:<hex>`` over the good samples' relative file names and contents (which data set the threshold)."""
    root = Path(data_dir)
    digest = hashlib.sha256()
    for split in splits:
        for ref in open_split(root, split).refs:
            if ref.defect_type != GOOD:
                continue
            for file in (ref.rgb, ref.xyz):
                if file is not None:
                    digest.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _frames(data_dir: Path, split: str) -> Iterator[Frame]:
    source = open_source(f"folder:{data_dir}", split=split)
    with source:
        while True:
            try:
                frame = source.read(1.0)
            except SourceExhausted:
                return
            if frame is not None:
                yield frame


def calibrate_threshold(
    bundle_dir: Path,
    data_dir: Path,
    target_frr: float,
    *,
    backend: str = "onnxruntime",
    progress: bool = True,
    **backend_options: Any,
) -> ThresholdCalibration:
    """Score ``data_dir``'s parts with the bundle and choose the threshold for ``target_frr`` (nothing written)."""
    data_dir = Path(data_dir)
    splits = available_splits(data_dir)
    total = sum(len(open_split(data_dir, split)) for split in splits)
    good_scores: list[float] = []
    good_per_split: dict[str, int] = defaultdict(int)
    good_faults = 0
    defects: dict[str, list[float | None]] = defaultdict(list)
    with Inspector.from_bundle(bundle_dir, backend, **backend_options) as inspector:
        previous = float(inspector.threshold)
        frames = ((split, frame) for split in splits for frame in _frames(data_dir, split))
        for split, frame in track(frames, "scoring parts", total=total, enabled=progress):
            inspection = inspector.inspect(frame)
            score = None if inspection.result is None else float(inspection.result.score)
            kind = str(frame.truth.get("defect_type", GOOD))
            if kind == GOOD:
                if score is None:
                    good_faults += 1
                    continue
                good_scores.append(score)
                good_per_split[split] += 1
            else:
                defects[kind].append(score)
    if not good_scores:
        raise DataError(
            f"{data_dir}: no good part could be scored ({good_faults} faulted); the threshold needs good parts "
            "in train/good, validation/good or test/good"
        )
    try:
        choice = threshold_for_frr(np.asarray(good_scores), target_frr)
    except ValueError as exc:
        raise DataError(f"{data_dir}: {exc}") from None
    stats = NormalizationStats.from_good_scores(np.asarray(good_scores), choice.threshold)
    recall = {
        kind: DefectRecall(
            n=len(scores),
            rejected=sum(1 for s in scores if s is None or s > choice.threshold),
            faults=sum(1 for s in scores if s is None),
        )
        for kind, scores in sorted(defects.items())
    }
    return ThresholdCalibration(
        choice, stats, data_hash(data_dir, splits), previous, dict(good_per_split), good_faults, recall
    )


def write_threshold(bundle_dir: Path, calibration: ThresholdCalibration) -> Path:
    """Put the new threshold and normalization into the bundle's manifest, re-hash, verify; returns the manifest.

    The bundle must verify before (BundleError otherwise); if it does not verify afterwards, the
    old manifest is put back and BundleError raised.
    """
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    stats = calibration.normalization
    scoring = ScoringSpec(
        aggregation=manifest.scoring.aggregation,
        normalization=Normalization(method="robust", median=stats.median, scale=stats.scale, threshold=stats.threshold),
        threshold=ThresholdSpec.from_choice(calibration.choice, calibration.data_hash),
    )
    roles = {name: entry.role for name, entry in manifest.files.items()}
    files = describe_files(bundle_dir, roles)
    if set(files) != set(manifest.files):
        raise BundleError(f"{bundle_dir}: files changed since verification: {sorted(set(files) ^ set(manifest.files))}")
    old_text = (bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    path = write_manifest(bundle_dir, dataclasses.replace(manifest, scoring=scoring, files=files))
    try:
        load_bundle(bundle_dir)
    except BundleError:
        (bundle_dir / MANIFEST_NAME).write_text(old_text, encoding="utf-8")
        raise
    return path
