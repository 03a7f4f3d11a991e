"""``edge-ad export``: run -> ONNX -> parity gate -> (INT8 + its gate) -> bundle, each step proving itself."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from edge_ad.bundle import verify_bundle
from edge_ad.dataset import DatasetSplit, open_split
from edge_ad.errors import BundleError, ConfigError, DataError, ExportError
from edge_ad.preprocess import preprocess, to_model_inputs
from edge_ad.trt_engine_cache import TRT_INT8_FILE, build_engine_command
from export.bundle_writer import MODEL_FILE, operating_point, write_bundle_manifest
from export.float_nodes import MAX_RETRY_LEVEL, FloatNodePlan, float_node_plan
from export.int8_gate import Int8GateReport, Int8Tolerance, gate_set, run_int8_gate, score_all
from export.onnx_graph import OPSET, add_metadata, export_detector
from export.parity import ParityReport, ParityTolerance, run_parity
from export.quantize import (
    PreprocessedReader,
    QuantizationSettings,
    calibration_batches,
    prepare_for_quantization,
    quantize_model,
)
from export.score_offset import apply_score_offset, offset_node_names
from trainer.features import needs_xyz
from trainer.run_io import LoadedRun, load_detector

EXPORT_REPORT = "export_report.json"
INT8_FILE = "model.int8.onnx"
QUANTIZATION_FILE = "quantization.json"
Precision = Literal["fp32", "fp16", "int8"]
Target = Literal["onnxruntime", "tensorrt"]
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("onnxruntime", "tensorrt")
DEFAULT_PARITY = ParityTolerance()


@dataclass(frozen=True)
class Int8Options:
    """INT8 calibration and gate settings (``retry``: escalate float nodes instead of failing at once)."""

    calibration_samples: int = 32
    gate_samples: int = 200
    retry: bool = False
    tolerance: Int8Tolerance = field(default_factory=Int8Tolerance)


@dataclass(frozen=True)
class Int8Result:
    """The quantized models' gate reports, settings and float nodes."""

    gate: Int8GateReport
    tensorrt_gate: Int8GateReport | None
    settings: QuantizationSettings
    plan: FloatNodePlan
    attempts: list[dict[str, Any]]


@dataclass(frozen=True)
class ExportResult:
    """Where the bundle went and what its gates measured."""

    bundle_dir: Path
    parity: ParityReport
    threshold: float
    report: dict[str, Any]
    int8: Int8Result | None = None
    device_command: str | None = None  # what to run on the Jetson (target tensorrt)


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


def check_precision_target(precision: str, target: str) -> None:
    """ConfigError for unknown names and for fp16 on ONNX Runtime (no fast fp16 on the CPU)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if target not in TARGETS:
        raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if precision == "fp16" and target != "tensorrt":
        raise ConfigError("--precision fp16 is a TensorRT engine precision; use --target tensorrt (or fp32 / int8)")


def quantize_with_gate(
    staging: Path,
    loaded: LoadedRun,
    data_root: Path,
    threshold: float,
    target: str,
    options: Int8Options,
) -> Int8Result:
    """Calibrate on good training parts, quantize, gate against FP32; escalate float nodes on ``retry``.

    Each quantized model has its systematic score offset removed (:mod:`export.score_offset`),
    measured on the same calibration parts, before it faces the gate.
    """
    config = loaded.preprocess_config
    use_xyz = needs_xyz(config)
    train = open_split(data_root, "train")
    step = max(1, len(train) // max(1, options.calibration_samples))
    batches, data_hash = calibration_batches(train[::step][: options.calibration_samples], config, use_xyz)
    reader = PreprocessedReader(batches)
    gate = gate_set(data_root, config, use_xyz, options.gate_samples)
    fp32_path, int8_path = staging / MODEL_FILE, staging / INT8_FILE
    fp32_scores: np.ndarray | None = None
    calibration_fp32 = score_all(fp32_path, batches)
    attempts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-ad-int8-") as work:
        # Quantize a shape-folded copy (outside the bundle); the gate compares with the bundle's FP32.
        prepared = prepare_for_quantization(fp32_path, Path(work) / "prepared.onnx")
        model = onnx.load(str(prepared))
        for level in range(MAX_RETRY_LEVEL + 1 if options.retry else 1):
            plan = float_node_plan(model, level)
            quantize_model(prepared, int8_path, reader, plan)
            offset = apply_score_offset(calibration_fp32, int8_path, batches)
            report, fp32_scores = run_int8_gate(fp32_path, int8_path, gate, threshold, options.tolerance, fp32_scores)
            attempts.append(
                {"level": level, "float_nodes": plan.summary(), "score_offset": offset, "gate": report.to_dict()}
            )
            if report.passed:
                break
        else:
            hint = "" if options.retry else "; pass --int8-retry to keep more of the graph in float"
            tried = " | ".join(_attempt_summary(a) for a in attempts)
            raise ExportError(f"INT8 gate failed at level {level}: {'; '.join(report.failures)}{hint} [tried: {tried}]")
        trt_report, trt_offset = None, None
        if target == "tensorrt":
            trt_path = quantize_model(prepared, staging / TRT_INT8_FILE, reader, plan, for_tensorrt=True)
            trt_offset = apply_score_offset(calibration_fp32, trt_path, batches)
            trt_report, _ = run_int8_gate(fp32_path, trt_path, gate, threshold, options.tolerance, fp32_scores)
            if not trt_report.passed:
                raise ExportError("INT8 gate failed for the TensorRT (symmetric) model: " + "; ".join(trt_report.failures))
    plan = FloatNodePlan({**plan.groups, "score_offset": offset_node_names()})
    offsets = {"onnxruntime": offset, **({"tensorrt": trt_offset} if trt_offset is not None else {})}
    settings = QuantizationSettings(len(reader), data_hash, level, float_groups=plan.summary(), score_offsets=offsets)
    return Int8Result(report, trt_report, settings, plan, attempts)


def _attempt_summary(attempt: dict[str, Any]) -> str:
    gate = attempt["gate"]
    drop = "n/a" if gate["auroc_drop"] is None else f"{100 * gate['auroc_drop']:.2f} pts"
    return f"level {attempt['level']}: agree {gate['decision_agreement']:.1%}, AUROC drop {drop}"


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    data: Path | None = None,
    target_frr: float = 0.01,
    parity_samples: int = 16,
    tolerance: ParityTolerance = DEFAULT_PARITY,
    overwrite: bool = False,
    precision: Precision = "fp32",
    target: Target = "onnxruntime",
    int8: Int8Options | None = None,
) -> ExportResult:
    """Export ``run_dir`` to a verified bundle in ``out_dir``.

    ``precision`` int8 adds ``model.int8.onnx`` (and, for ``target`` tensorrt, a symmetric QDQ
    model for TensorRT) after the INT8 gate; fp16 (tensorrt only) is chosen when the engine is
    built on the device. The bundle is assembled in a temporary folder next to ``out_dir`` and
    moved into place only after every gate and bundle verification pass, so a failed export
    leaves nothing half-made.
    """
    check_precision_target(precision, target)
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
        metadata = {
            "edge_ad.family": str(loaded.config["family"]),
            "edge_ad.preprocess_fingerprint": loaded.preprocess_config.fingerprint(),
            "edge_ad.aggregation": loaded.aggregation,
            "edge_ad.threshold": repr(point.choice.threshold),
            "edge_ad.opset": str(OPSET),
        }
        add_metadata(model_path, metadata)
        parity = run_parity(loaded.detector, model_path, inputs, point.choice.threshold, tolerance)
        if not parity.passed:
            raise ExportError("parity gate failed: " + "; ".join(parity.failures))
        report: dict[str, Any] = {
            "run": Path(run_dir).name,
            "precision": precision,
            "target": target,
            "parity": parity.to_dict(),
            "threshold": point.choice.to_dict(),
        }
        roles = {MODEL_FILE: "model", EXPORT_REPORT: "report"}
        int8_result = None
        # FP16 engines pin these layers to FP32 on the device (the distance tail, the soft clamp).
        float_nodes = float_node_plan(onnx.load(str(model_path))).nodes if precision == "fp16" else ()
        if precision == "int8":
            int8_result = quantize_with_gate(
                staging, loaded, data_root, point.choice.threshold, target, int8 or Int8Options()
            )
            _write_int8_files(staging, metadata, int8_result, report, roles)
        (staging / EXPORT_REPORT).write_text(json.dumps(report, indent=2) + "\n")
        write_bundle_manifest(
            staging,
            loaded,
            point,
            specs,
            precision="int8" if precision == "int8" else "fp32",
            roles=roles,
            float_nodes=int8_result.plan.nodes if int8_result else float_nodes,
        )
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
    command = build_engine_command(out_dir, "fp32" if precision == "fp32" else precision) if target == "tensorrt" else None
    return ExportResult(out_dir, parity, point.choice.threshold, report, int8_result, command)


def _write_int8_files(
    staging: Path, metadata: dict[str, str], result: Int8Result, report: dict[str, Any], roles: dict[str, str]
) -> None:
    """quantization.json, INT8 metadata in the ONNX files, the report section and the file roles."""
    quantization = {
        **result.settings.to_dict(),
        "float_nodes": {reason: list(names) for reason, names in result.plan.groups.items()},
        "attempts": result.attempts,
    }
    (staging / QUANTIZATION_FILE).write_text(json.dumps(quantization, indent=2) + "\n")
    int8_meta = {
        **metadata,
        "edge_ad.precision": "int8",
        "edge_ad.calibration_samples": str(result.settings.calibration_samples),
        "edge_ad.calibration_data_hash": result.settings.data_hash,
    }
    add_metadata(staging / INT8_FILE, int8_meta)
    roles[INT8_FILE] = "model_int8"
    roles[QUANTIZATION_FILE] = "quantization"
    report["int8"] = {"settings": result.settings.to_dict(), "gate": result.gate.to_dict()}
    if result.tensorrt_gate is not None:
        add_metadata(staging / TRT_INT8_FILE, {**int8_meta, "edge_ad.quantization": "symmetric-int8-tensorrt"})
        roles[TRT_INT8_FILE] = "model_int8_tensorrt"
        report["int8"]["tensorrt_gate"] = result.tensorrt_gate.to_dict()
