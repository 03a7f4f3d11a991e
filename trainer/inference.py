"""Score dataset splits with a trained detector, through the runtime's preprocessing.

``score="ast"`` gives the student-teacher distance (the detector's forward output: the map and
the score that the exported model computes); ``score="teacher-nll"`` the teacher's per-position
negative log-likelihood aggregated the same way (AST's "teacher alone" ablation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from edge_ad.dataset import DatasetSplit, Sample
from edge_ad.errors import ConfigError
from trainer.ast.model import aggregate_masked
from trainer.features import preprocessed_batches
from trainer.run_io import LoadedRun
from trainer.torch_setup import cpu_threads

ScoreKind = Literal["ast", "teacher-nll"]
SCORE_KINDS: tuple[str, ...] = ("ast", "teacher-nll")
_MAP_OF = {"ast": "distance", "teacher-nll": "teacher_nll"}


@dataclass(eq=False)
class ScoredSample:
    """One scored sample: anomaly_map is (h, w) float32 at the feature grid, gt full resolution."""

    name: str
    label: int
    defect_type: str
    score: float
    anomaly_map: np.ndarray
    gt: np.ndarray | None
    has_mask: bool


@dataclass(eq=False)
class BothScores:
    """The two scores and maps of one sample (computed in one pass)."""

    sample: Sample
    has_mask: bool
    scores: dict[str, float]
    maps: dict[str, np.ndarray]


@torch.no_grad()
def iter_scores(
    loaded: LoadedRun, split: DatasetSplit, batch_size: int = 8, progress: bool = True
) -> Iterator[BothScores]:
    """Both scores ("ast", "teacher-nll") and maps for every sample of ``split``, in order."""
    detector = loaded.detector.eval()
    device = next(detector.parameters()).device
    batches = preprocessed_batches(
        split, loaded.preprocess_config, batch_size, f"scoring {split.split} ({len(split)})", progress
    )
    for batch in batches:
        inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.inputs.items()}
        maps = detector.score_maps(inputs["image"], inputs["depth"], inputs["mask"])
        grid_mask = maps["mask"][:, 0]
        scores = {
            kind: aggregate_masked(maps[_MAP_OF[kind]][:, 0], grid_mask, loaded.aggregation).cpu().numpy()
            for kind in SCORE_KINDS
        }
        arrays = {kind: maps[_MAP_OF[kind]][:, 0].float().cpu().numpy() for kind in SCORE_KINDS}
        for i, sample in enumerate(batch.samples):
            yield BothScores(
                sample=sample,
                has_mask=bool(batch.has_mask[i]),
                scores={kind: float(scores[kind][i]) for kind in SCORE_KINDS},
                maps={kind: np.ascontiguousarray(arrays[kind][i], dtype=np.float32) for kind in SCORE_KINDS},
            )


def score_split(
    loaded: LoadedRun, split: DatasetSplit, batch_size: int = 8, score: str = "ast", progress: bool = True
) -> list[ScoredSample]:
    """Score every sample of ``split`` with ``loaded``'s detector; ``score`` is "ast" or "teacher-nll"."""
    if score not in SCORE_KINDS:
        raise ConfigError(f"--score must be one of {', '.join(SCORE_KINDS)}, got {score!r}")
    # The preset's thread choice holds for inference too (tiny models: one thread is faster).
    with cpu_threads(loaded.config.get("train", {}).get("cpu_threads")):
        return [
            ScoredSample(
                name=item.sample.name,
                label=item.sample.label,
                defect_type=item.sample.defect_type,
                score=item.scores[score],
                anomaly_map=item.maps[score],
                gt=item.sample.gt,
                has_mask=item.has_mask,
            )
            for item in iter_scores(loaded, split, batch_size, progress)
        ]
