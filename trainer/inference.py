"""Score dataset splits with a trained detector, through the runtime's preprocessing.

Every detector declares its score kinds in ``SCORE_KINDS`` (score name -> key of the map in
``score_maps``); the first is the default, the one its ``forward`` (and so the exported model)
computes. AST: ``"ast"`` the student-teacher distance, ``"teacher-nll"`` the teacher's negative
log-likelihood aggregated the same way (the paper's "teacher alone" ablation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ad.dataset import DatasetSplit, Sample
from edge_ad.errors import ConfigError
from trainer.ast.model import aggregate_masked
from trainer.features import preprocessed_batches
from trainer.metrics_io import VALIDATION_SCORES, validation_scores_record, write_json
from trainer.run_io import LoadedRun
from trainer.torch_setup import cpu_threads


def score_kinds(detector: nn.Module) -> dict[str, str]:
    """The detector's score kinds (name -> map key), default first."""
    kinds = getattr(detector, "SCORE_KINDS", None)
    if not isinstance(kinds, dict) or not kinds:
        raise ConfigError(f"{type(detector).__name__} declares no SCORE_KINDS (score name -> map key)")
    return dict(kinds)


def default_score(detector: nn.Module) -> str:
    """The score kind the detector's forward (and the exported model) computes."""
    return next(iter(score_kinds(detector)))


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
    """Every score kind's score and map of one sample (computed in one pass)."""

    sample: Sample
    has_mask: bool
    scores: dict[str, float]
    maps: dict[str, np.ndarray]


@torch.no_grad()
def iter_scores(
    loaded: LoadedRun, split: DatasetSplit, batch_size: int = 8, progress: bool = True
) -> Iterator[BothScores]:
    """Every score kind's score and map for every sample of ``split``, in order."""
    detector = loaded.detector.eval()
    kinds = score_kinds(detector)
    device = next(detector.parameters()).device
    batches = preprocessed_batches(
        split, loaded.preprocess_config, batch_size, f"scoring {split.split} ({len(split)})", progress
    )
    for batch in batches:
        inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.inputs.items()}
        maps = detector.score_maps(inputs["image"], inputs["depth"], inputs["mask"])
        grid_mask = maps["mask"][:, 0]
        scores = {
            kind: aggregate_masked(maps[key][:, 0], grid_mask, loaded.aggregation).cpu().numpy()
            for kind, key in kinds.items()
        }
        arrays = {kind: maps[key][:, 0].float().cpu().numpy() for kind, key in kinds.items()}
        for i, sample in enumerate(batch.samples):
            yield BothScores(
                sample=sample,
                has_mask=bool(batch.has_mask[i]),
                scores={kind: float(scores[kind][i]) for kind in kinds},
                maps={kind: np.ascontiguousarray(arrays[kind][i], dtype=np.float32) for kind in kinds},
            )


def check_score(detector: nn.Module, score: str | None) -> str:
    """``score`` if the detector offers it (None: its default); ConfigError naming the choices otherwise."""
    kinds = score_kinds(detector)
    if score is None:
        return next(iter(kinds))
    if score not in kinds:
        raise ConfigError(f"--score must be one of {', '.join(kinds)} for this model, got {score!r}")
    return score


def write_validation_scores(run_dir: Path, scored: list[BothScores]) -> list[float]:
    """Write ``RUN/validation_scores.json`` from scored good validation parts; their default scores.

    Every family calls this after training: the threshold of evaluate and export comes from it.
    """
    kinds = list(scored[0].scores) if scored else []
    by_kind = {kind: [item.scores[kind] for item in scored] for kind in kinds}
    record = validation_scores_record(
        [item.sample.name for item in scored],
        by_kind,
        default=kinds[0] if kinds else "",
        has_mask=all(item.has_mask for item in scored),
    )
    write_json(Path(run_dir) / VALIDATION_SCORES, record)
    return record["scores"]


def score_split(
    loaded: LoadedRun,
    split: DatasetSplit,
    batch_size: int = 8,
    score: str | None = None,
    progress: bool = True,
) -> list[ScoredSample]:
    """Score every sample of ``split`` with ``loaded``'s detector by ``score`` (None: the default)."""
    score = check_score(loaded.detector, score)
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
