"""Train, evaluate, export and time every model family on one dataset: ``edge-ad benchmark-models``.

Each family works in its own folder ``WORK/<family>/``:

1. train ``<family>-<size>`` with :func:`trainer.train_run.train` (mode, epochs and threads as
   overrides) into ``run/`` -- or, with ``reuse``, keep a finished run of the same preset and mode;
2. evaluate the test split with :func:`trainer.evaluate.evaluate_run` (``evaluation.json``,
   ``run/report.html``): image / pixel AUROC, AUPRO, per-type image AUROC, FRR and recall at the
   threshold set on the good validation parts;
3. count parameters (all, and trained: the frozen backbones excluded) and multiply-adds of
   convolutions and linear layers per image (:func:`trainer.complexity.count`, generic hooks);
4. export an FP32 bundle with :func:`export.pipeline.export_run` (its parity gate must pass) into
   ``bundle/``;
5. time the bundle's model.onnx on ONNX Runtime at batch 1 with its own input shapes: median of
   ``runs`` calls after ``warmup`` (:class:`edge_ad.bench.TimedBackend`, :func:`edge_ad.bench.stage_stats`).

A failure in a stage is recorded in the family's row (with the exit code of its error) and the
table goes on; stages that need what failed are skipped. The report is rewritten after every
family, so an interrupted table keeps what it measured. Torch-heavy modules are imported inside
the functions that need them: the timing helpers and the table import without torch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends.base import InferenceBackend, TensorSpec
from edge_ad.bench import StageStats, TimedBackend, stage_stats
from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import ConfigError, EdgeAdError
from trainer.benchmark_table import BenchmarkRow, build_report, check_choices, choose_families, reuse_decision
from trainer.metrics_io import write_json

Log = Callable[[str], None]
MASK_INPUT = "mask"  # the contract's foreground mask input (export.onnx_graph.INPUT_NAMES): all foreground


@dataclass(frozen=True)
class BenchmarkOptions:
    """How every family is trained, evaluated and timed (None: the preset's or the library's default)."""

    size: str = "edge"
    mode: str | None = None  # None: rgbd when the data has xyz, else rgb
    target_frr: float = 0.01
    threads: int | None = None  # training, torch scoring and ONNX Runtime threads
    epochs: int | None = None
    runs: int = 50
    warmup: int = 5
    reuse: bool = False
    cache_dir: Path | None = None
    batch_size: int = 8  # evaluation batch

    def check(self) -> None:
        """ConfigError for values out of range (the size and mode are checked against the data)."""
        if not 0.0 <= self.target_frr < 1.0:
            raise ConfigError(f"--frr must be in [0, 1), got {self.target_frr}")
        for name, low in (("threads", 1), ("epochs", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"--{name} must be >= {low}, got {value}")
        if self.runs < 1 or self.warmup < 0:
            raise ConfigError(f"--runs must be >= 1 and --warmup >= 0, got {self.runs} and {self.warmup}")


def default_work_dir(json_path: Path) -> Path:
    """Runs and bundles go next to the JSON: ``bm.json`` -> ``bm-runs/``."""
    return json_path.parent / f"{json_path.stem}-runs"


# ---- ONNX Runtime speed ------------------------------------------------------------------------


def spec_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Batch-of-one inputs for ``specs`` (dynamic dims as 1): normal noise, the mask all foreground."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in specs:
        shape = tuple(1 if dim is None else dim for dim in spec.shape)
        if spec.name == MASK_INPUT:
            inputs[spec.name] = np.ones(shape, dtype=spec.dtype)
        else:
            inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return inputs


def median_latency(
    backend: InferenceBackend, inputs: dict[str, np.ndarray], clock: Clock, runs: int, warmup: int
) -> StageStats:
    """Latency of ``backend.infer(inputs)`` over ``runs`` calls after ``warmup`` unmeasured ones."""
    if runs < 1 or warmup < 0:
        raise ConfigError(f"timing needs runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    timed = TimedBackend(backend, clock)
    samples: list[float] = []
    for index in range(warmup + runs):
        timed.infer(inputs)
        if index >= warmup and timed.last_ms is not None:
            samples.append(timed.last_ms)
    return stage_stats(samples)


def ort_latency(model_path: Path, threads: int, runs: int, warmup: int, clock: Clock | None = None) -> StageStats:
    """Median latency of an ONNX model on ONNX Runtime (CPU, ``threads`` intra-op threads) at batch 1."""
    from edge_ad.backends import create_backend

    backend = create_backend("onnxruntime", model_path, intra_op_num_threads=threads)
    try:
        return median_latency(backend, spec_inputs(backend.input_spec()), clock or MonotonicClock(), runs, warmup)
    finally:
        backend.close()


# ---- model size -------------------------------------------------------------------------------


def model_size(run_dir: Path) -> tuple[int, int, int]:
    """(parameters, trained parameters, multiply-adds per image) of a run's detector.

    Trained = all minus those of the frozen backbones (modules with the
    :class:`trainer.backbones.FeatureBackbone` attributes); multiply-adds count convolutions and
    linear layers on the bundle's input shapes (:func:`trainer.complexity.count`).
    """
    from export.onnx_graph import example_inputs
    from trainer.backbones import FeatureBackbone
    from trainer.complexity import count
    from trainer.run_io import load_detector

    loaded = load_detector(run_dir)
    detector = loaded.detector
    params = {id(p): p.numel() for p in detector.parameters()}  # by id: a shared module counts once
    frozen = {
        id(p): p.numel() for module in detector.modules() if isinstance(module, FeatureBackbone) for p in module.parameters()
    }
    parts = count(detector, example_inputs(loaded.preprocess_config))
    macs = next(part.macs for part in parts if part.name == "total")
    return sum(params.values()), sum(params.values()) - sum(frozen.values()), macs


# ---- one family -------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    from trainer.torch_setup import cpu_threads

    with cpu_threads(threads):
        yield


def _stage(row: BenchmarkRow, stage: str, log: Log, action: Callable[[], None]) -> bool:
    """Run one stage; a failure goes into the row (and the log) instead of ending the table."""
    try:
        action()
    except EdgeAdError as exc:
        text = row.record_error(stage, exc, exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - a bug in one family must not cost the other families' hours
        text = row.record_error(stage, exc, 1)
        log(traceback.format_exc().rstrip())
    else:
        return True
    log(f"[{row.family}] failed: {text}")
    return False


def _train_seconds(run_dir: Path) -> float | None:
    try:
        return float(json.loads((run_dir / "train_log.json").read_text(encoding="utf-8"))["seconds"]["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _train(row: BenchmarkRow, data: Path, run_dir: Path, options: BenchmarkOptions, log: Log) -> None:
    from trainer.train_run import train

    if options.reuse:
        decision = reuse_decision(run_dir, row.preset, row.mode, options.epochs)
        log(f"[{row.family}] {decision.reason}")
        if decision.reuse:
            row.reused, row.train_seconds = True, _train_seconds(run_dir)
            return
    if run_dir.exists():
        shutil.rmtree(run_dir)  # files of an earlier run must not mix with the new one
    log(f"[{row.family}] train {row.preset} (mode {row.mode}) -> {run_dir}")
    overrides = {"mode": row.mode, "train": {"epochs": options.epochs, "cpu_threads": options.threads}}
    result = train(data, run_dir, preset=row.preset, overrides=overrides, cache_dir=options.cache_dir, progress=False)
    row.mode = str(result.config.get("mode", row.mode))
    row.train_seconds = float(result.log["seconds"]["total"])
    log(f"[{row.family}] trained in {row.train_seconds:.1f} s")


def _evaluate(row: BenchmarkRow, data: Path, folder: Path, options: BenchmarkOptions, log: Log) -> None:
    from trainer.evaluate import evaluate_run

    log(f"[{row.family}] evaluate on {data.name}/test")
    summary = evaluate_run(
        folder / "run", data, target_frr=options.target_frr, json_path=folder / "evaluation.json",
        batch_size=options.batch_size,
    )
    row.score = summary["score"]
    row.image_auroc, row.pixel_auroc = summary["image"]["auroc"], summary["pixel"]["auroc"]
    row.image_auroc_ci95 = summary["image"]["auroc_ci95"]
    row.aupro = summary["pixel"]["aupro"]
    row.frr, row.recall = summary["operating_point"]["frr"], summary["operating_point"]["recall"]
    row.by_type = {name: entry["image_auroc"] for name, entry in summary["by_type"].items()}
    shown = ", ".join(f"{name} {_fmt(value)}" for name, value in (
        ("image AUROC", row.image_auroc), ("pixel AUROC", row.pixel_auroc), ("AUPRO", row.aupro)))
    log(f"[{row.family}] {shown}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _size(row: BenchmarkRow, run_dir: Path, log: Log) -> None:
    row.params, row.trained_params, row.macs = model_size(run_dir)
    log(f"[{row.family}] {row.params} parameters ({row.trained_params} trained), {row.macs / 1e9:.3f} GMACs")


def _export_and_time(row: BenchmarkRow, data: Path, folder: Path, options: BenchmarkOptions, threads: int, log: Log) -> None:
    from edge_ad.bundle import load_bundle
    from export.pipeline import export_run

    log(f"[{row.family}] export FP32 bundle -> {folder / 'bundle'}")
    result = export_run(folder / "run", folder / "bundle", data=data, target_frr=options.target_frr, overwrite=True)
    log(f"[{row.family}] parity gate passed (score max |diff| {result.parity.score_max_abs:.2e} of the threshold)")
    model_path = load_bundle(result.bundle_dir).model_path("fp32")
    log(f"[{row.family}] time ONNX Runtime: {options.warmup} + {options.runs} runs, {threads} thread(s)")
    stats = ort_latency(model_path, threads, options.runs, options.warmup)
    row.ort_latency_ms_median, row.ort_fps = stats.median_ms, 1000.0 / stats.median_ms
    log(f"[{row.family}] {stats.median_ms:.2f} ms median -> {row.ort_fps:.1f} frames/s")


def benchmark_family(
    family: str, data: Path, work_dir: Path, mode: str, options: BenchmarkOptions, ort_threads: int, log: Log
) -> BenchmarkRow:
    """Train, evaluate, size, export and time one family; every failure ends up in the returned row."""
    row = BenchmarkRow(family=family, preset=f"{family}-{options.size}", mode=mode)
    folder = work_dir / family
    with _torch_threads(options.threads):
        if not _stage(row, "train", log, lambda: _train(row, data, folder / "run", options, log)):
            return row
        _stage(row, "evaluate", log, lambda: _evaluate(row, data, folder, options, log))
        _stage(row, "size", log, lambda: _size(row, folder / "run", log))
        _stage(row, "export", log, lambda: _export_and_time(row, data, folder, options, ort_threads, log))
    return row


# ---- the table --------------------------------------------------------------------------------


def run_benchmark(
    data: Path,
    json_path: Path,
    *,
    models: str | None = None,
    work_dir: Path | None = None,
    options: BenchmarkOptions | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Benchmark ``models`` (comma-separated; None: every registered family) on ``data``; write and return the report.

    ConfigError before any training for an unknown family, a bad size/mode or option; DataError
    when ``data`` has no train split. Per-family failures are in the rows (see the module docstring).
    """
    from edge_ad.backends.onnxruntime import default_thread_count
    from edge_ad.bench import machine_info
    from edge_ad.dataset import open_split
    from trainer.registry import list_families

    data, json_path = Path(data), Path(json_path)
    options = options or BenchmarkOptions()
    options.check()
    families = choose_families(models, list_families())
    mode = check_choices(options.size, options.mode, open_split(data, "train").has_xyz)
    work = Path(work_dir) if work_dir is not None else default_work_dir(json_path)
    ort_threads = options.threads or default_thread_count()
    setup = {
        "data": str(data),
        "category": data.resolve().name,
        "mode": mode,
        "size": options.size,
        "target_frr": options.target_frr,
        "epochs": options.epochs,
        "work": str(work),
        "ort": {"runs": options.runs, "warmup": options.warmup, "batch": 1, "threads": ort_threads, "precision": "fp32"},
    }
    machine = machine_info(ort_threads)
    rows: list[BenchmarkRow] = []
    report = build_report(rows, setup, machine)
    for index, family in enumerate(families, start=1):
        log(f"[{index}/{len(families)}] {family}: {family}-{options.size}, mode {mode}")
        rows.append(benchmark_family(family, data, work, mode, options, ort_threads, log))
        report = build_report(rows, setup, machine)
        write_json(json_path, report)  # after every family: an interrupted table keeps what it measured
    return report
