"""``edge-ad export``: run -> ONNX -> parity gate -> bundle, each step proving itself."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.bundle import verify_bundle
from edge_ad.dataset import DatasetSplit, open_split
from edge_ad.errors import BundleError, DataError, ExportError
from edge_ad.preprocess import preprocess, to_model_inputs
from export.bundle_writer import MODEL_FILE, operating_point, write_bundle_manifest
from export.onnx_graph import OPSET, add_metadata, export_detector
from export.parity import ParityReport, ParityTolerance, run_parity
from trainer.features import needs_xyz
from trainer.run_io import LoadedRun, load_detector

EXPORT_REPORT = "export_report.json"


@dataclass(frozen=True)
class ExportResult:
    """Where the bundle went and what its gates measured."""

    bundle_dir: Path
    parity: ParityReport
    threshold: float
    report: dict[str, Any]


def held_out_samples(data_root: Path, max_samples: int) -> list[DatasetSplit]:
    """Good validation parts plus test parts (defects included, so both decisions are exercised)."""
    splits = []
    for name in ("validation", "test"):
        try:
            split = open_split(data_root, name)
        except DataError:
            continue
        step = max(1, len(split) // max(1, max_samples // 2))
        splits.append(split[::step][: max_samples // 2])
    if not splits:
        raise DataError(f"{data_root}: no validation or test split to check export parity on")
    return splits


def parity_inputs(loaded: LoadedRun, splits: list[DatasetSplit]) -> list[dict[str, np.ndarray]]:
    """Batch-of-one model inputs through THE preprocessing, exactly as the runtime builds them."""
    config = loaded.preprocess_config
    use_xyz = needs_xyz(config)
    return [to_model_inputs([preprocess(s.rgb, s.xyz if use_xyz else None, config)]) for split in splits for s in split]


def data_root_of(loaded: LoadedRun, data: Path | None) -> Path:
    """The dataset to check parity on: ``data`` or the one the run was trained on."""
    if data is not None:
        return Path(data)
    root = loaded.config.get("data", {}).get("root")
    if not root:
        raise DataError("the run does not record its dataset; pass --data ROOT/CATEGORY")
    return Path(root)


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    data: Path | None = None,
    target_frr: float = 0.01,
    parity_samples: int = 16,
    tolerance: ParityTolerance = ParityTolerance(),
    overwrite: bool = False,
) -> ExportResult:
    """Export ``run_dir`` to a verified fp32 bundle in ``out_dir``.

    The bundle is assembled in a temporary folder next to ``out_dir`` and moved into place only
    after the parity gate and bundle verification pass, so a failed export leaves nothing half-made.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} exists; pass --overwrite to replace it")
    loaded = load_detector(Path(run_dir))
    point = operating_point(Path(run_dir), target_frr)
    data_root = data_root_of(loaded, data)
    inputs = parity_inputs(loaded, held_out_samples(data_root, parity_samples))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model_path = staging / MODEL_FILE
        specs = export_detector(loaded.detector, loaded.preprocess_config, model_path)
        add_metadata(
            model_path,
            {
                "edge_ad.family": str(loaded.config["family"]),
                "edge_ad.preprocess_fingerprint": loaded.preprocess_config.fingerprint(),
                "edge_ad.aggregation": loaded.aggregation,
                "edge_ad.threshold": repr(point.choice.threshold),
                "edge_ad.opset": str(OPSET),
            },
        )
        parity = run_parity(loaded.detector, model_path, inputs, point.choice.threshold, tolerance)
        if not parity.passed:
            raise ExportError("parity gate failed: " + "; ".join(parity.failures))
        report = {
            "run": Path(run_dir).name,
            "precision": "fp32",
            "parity": parity.to_dict(),
            "threshold": point.choice.to_dict(),
        }
        (staging / EXPORT_REPORT).write_text(json.dumps(report, indent=2) + "\n")
        write_bundle_manifest(staging, loaded, point, specs, roles={MODEL_FILE: "model", EXPORT_REPORT: "report"})
        verification = verify_bundle(staging)
        if not verification.ok:
            details = "; ".join(f"{c.name}: {c.detail}" for c in verification.failures)
            raise BundleError(f"the exported bundle failed its own verification: {details}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out_dir, parity, point.choice.threshold, report)
