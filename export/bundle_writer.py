"""Turn a trained run into a bundle: ONNX graph, threshold from good validation parts, manifest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_ad.backends.base import TensorSpec
from edge_ad.manifest import (
    SCHEMA_VERSION,
    Manifest,
    ModelInfo,
    Normalization,
    ScoringSpec,
    ThresholdSpec,
    Versions,
    describe_files,
    utc_now_iso,
    write_manifest,
)
from edge_ad.thresholds import NormalizationStats, ThresholdChoice, threshold_for_frr
from export.onnx_graph import OPSET
from trainer.metrics_io import load_validation_scores
from trainer.run_io import LoadedRun

MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold chosen on good validation parts, its normalisation and the data it came from."""

    choice: ThresholdChoice
    normalization: NormalizationStats
    data_hash: str


def operating_point(run_dir: Path, target_frr: float) -> OperatingPoint:
    """Threshold for ``target_frr`` on the run's good validation scores (never test data)."""
    scores = np.asarray(load_validation_scores(run_dir).for_score(None), dtype=np.float64)
    choice = threshold_for_frr(scores, target_frr)
    stats = NormalizationStats.from_good_scores(scores, choice.threshold)
    digest = hashlib.sha256(json.dumps([float(s) for s in scores]).encode()).hexdigest()
    return OperatingPoint(choice, stats, f"sha256:{digest}")


def write_bundle_manifest(
    bundle_dir: Path,
    loaded: LoadedRun,
    point: OperatingPoint,
    specs: tuple[list[TensorSpec], list[TensorSpec]],
    precision: str = "fp32",
    roles: dict[str, str] | None = None,
    float_nodes: tuple[str, ...] = (),
    extra_versions: dict[str, Any] | None = None,
) -> Path:
    """Write ``manifest.yaml`` describing every file already in ``bundle_dir``."""
    config = loaded.config
    stats = point.normalization
    run_name = loaded.run_dir.name if loaded.run_dir is not None else "unknown"
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        model=ModelInfo(
            name=str(config.get("name") or run_name),
            family=str(config["family"]),
            preset=str(config.get("preset", "custom")),
            mode=loaded.preprocess_config.mode,
            source_run=run_name,
            created=utc_now_iso(),
        ),
        inputs=tuple(specs[0]),
        outputs=tuple(specs[1]),
        preprocess=loaded.preprocess_config.to_dict(),
        scoring=ScoringSpec(
            aggregation=loaded.aggregation,  # type: ignore[arg-type]
            normalization=Normalization(
                method="robust", median=stats.median, scale=stats.scale, threshold=stats.threshold
            ),
            threshold=ThresholdSpec.from_choice(point.choice, point.data_hash),
        ),
        files=describe_files(bundle_dir, roles or {MODEL_FILE: "model"}),
        versions=Versions.current(torch=str(torch.__version__), opset=OPSET, **(extra_versions or {})),
        precision=precision,  # type: ignore[arg-type]
        float_nodes=float_nodes,
    )
    return write_manifest(bundle_dir, manifest)
