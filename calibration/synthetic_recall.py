"""Recall at a threshold on DefectMaker defects: an estimate for stations without real defective parts.

A new station often has only good parts. :func:`estimate_recall_with_defect_maker` pastes
synthetic defects (edge_ad.defect_maker: 3 shapes x 2 fills, taken in turn so every class gets
the same count) into the colour images of good parts, inside the part's foreground found from
depth (the whole image without depth), with CutPaste fills cut from another good part, and
scores each defective frame through the runtime path itself (:class:`edge_ad.inspector.Inspector`
on the bundle, so the same preprocessing, model and scoring the line runs). A defect counts as
caught when its score is above the threshold or the frame faults (the line rejects it either way).

The numbers are an estimate: synthetic defects are not the station's real ones (REB uses them
to train features, not to measure), and depth is left untouched, so a depth-only model sees none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration.threshold import DefectRecall
from edge_ad.dataset_layout import GOOD, available_splits
from edge_ad.defect_maker import CLASSES, DefectMakerConfig, make_defect
from edge_ad.errors import DataError
from edge_ad.frame import Frame
from edge_ad.inspector import Inspector
from edge_ad.progress import track
from edge_ad.sources import SourceExhausted, open_source


@dataclass(frozen=True)
class SyntheticRecall:
    """Recall per DefectMaker class at ``threshold``; ``skipped``: good frames that could not be scored."""

    threshold: float
    good_parts: int
    skipped: int
    per_class: dict[str, DefectRecall]

    @property
    def recall(self) -> float:
        """Share of all synthetic defects caught."""
        n = sum(r.n for r in self.per_class.values())
        return sum(r.rejected for r in self.per_class.values()) / n if n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "threshold": self.threshold,
            "good_parts": self.good_parts,
            "skipped": self.skipped,
            "recall": self.recall,
            "per_class": {
                name: {"n": r.n, "rejected": r.rejected, "faults": r.faults, "recall": r.recall}
                for name, r in self.per_class.items()
            },
        }


def good_frames(data_dir: Path, splits: tuple[str, ...]) -> list[Frame]:
    """Every good part's frame of ``splits`` (MVTec 3D-AD layout, read by the ``folder:`` source)."""
    frames: list[Frame] = []
    for split in splits:
        frames.extend(f for f in _frames(data_dir, split) if str(f.truth.get("defect_type", GOOD)) == GOOD)
    return frames


def _frames(data_dir: Path, split: str) -> Iterator[Frame]:
    with open_source(f"folder:{data_dir}", split=split) as source:
        while True:
            try:
                frame = source.read(1.0)
            except SourceExhausted:
                return
            if frame is not None:
                yield frame


def estimate_recall_with_defect_maker(
    bundle_dir: Path,
    data_dir: Path,
    n_defects: int,
    *,
    threshold: float | None = None,
    seed: int = 0,
    splits: tuple[str, ...] | None = None,
    backend: str = "onnxruntime",
    config: DefectMakerConfig | None = None,
    progress: bool = True,
    **backend_options: Any,
) -> SyntheticRecall:
    """Make ``n_defects`` DefectMaker defects on DATA's good parts and report recall per class.

    ``threshold`` None: the bundle's own; ``splits`` None: every split DATA has. DataError when
    DATA has no good part or ``n_defects`` < 1; BundleError for a bundle that does not verify.
    """
    if n_defects < 1:
        raise DataError(f"n_defects must be >= 1, got {n_defects}")
    data_dir = Path(data_dir)
    frames = good_frames(data_dir, splits or available_splits(data_dir))
    if not frames:
        raise DataError(f"{data_dir}: no good parts to put synthetic defects on")
    rng = np.random.default_rng(seed)
    classes = CLASSES[1:]
    scores: dict[str, list[float | None]] = {name: [] for name in classes}
    skipped = 0
    with Inspector.from_bundle(bundle_dir, backend, **backend_options) as inspector:
        limit = float(inspector.threshold if threshold is None else threshold)
        for i in track(range(n_defects), "synthetic defects", enabled=progress):
            frame = frames[i % len(frames)]
            observation = inspector.observe(frame)
            if not observation.usable or observation.sample is None:
                skipped += 1  # the good part itself faults: it says nothing about defects
                continue
            foreground = observation.sample.foreground
            location = foreground.raw_mask if foreground is not None and foreground.raw_mask.any() else None
            other = frames[(i + 1 + int(rng.integers(max(1, len(frames) - 1)))) % len(frames)]
            shape, fill = classes[i % len(classes)].split("-")
            defect = make_defect(
                frame.color, rng, location=location, source=other.color, shape=shape, fill=fill, config=config
            )
            result = inspector.inspect(dataclasses.replace(frame, color=defect.image)).result
            scores[defect.name].append(None if result is None else float(result.score))
    per_class = {
        name: DefectRecall(
            n=len(values),
            rejected=sum(1 for s in values if s is None or s > limit),
            faults=sum(1 for s in values if s is None),
        )
        for name, values in scores.items()
        if values
    }
    return SyntheticRecall(limit, len(frames), skipped, per_class)
