"""Accuracy of a preset on the synthetic line: train and evaluate it in rgbd, rgb and depth modes.

Usage: python tests/benchmarks/synthetic_accuracy.py [--data DIR] [--out DIR] [--preset ast-edge]
       [--modes rgbd,rgb,depth] [--threads 2] [--seeds 0] [--test-good 20] [--test-per-defect 10]

``--data`` is a category folder written by ``edge-ad synth`` (default size); without it one
dataset per ``--seeds`` entry (category widget) is generated under ``--out``, with the default
training and validation sizes and ``--test-good`` / ``--test-per-defect`` test parts. The default
test split (20 good, 60 defective) measures image AUROC to about +-0.03 (the DeLong interval in
each row says how much exactly); compare presets on several seeds and a larger test split
(e.g. ``--seeds 10,11 --test-good 100 --test-per-defect 25``), where the mean over seeds is printed too. Each mode is trained from
scratch with the preset (training time includes feature extraction; the feature cache lives
under ``--out``), then evaluated on the test split with the operating threshold from good
validation parts only. Prints image AUROC overall and per defect type, pixel AUROC, AUPRO and
training seconds, plus the teacher-NLL score of the rgbd run. The test split is never used to
choose anything here.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")

from dataclasses import replace  # noqa: E402

from edge_ad.detection_metrics import format_interval  # noqa: E402
from edge_ad.synth import generate_dataset  # noqa: E402
from edge_ad.synth_config import SynthConfig  # noqa: E402
from trainer.evaluate import evaluate_run  # noqa: E402
from trainer.train_run import train  # noqa: E402

DEFECTS = ("dent", "bump", "stain", "crack", "missing", "contamination")


def measure(data: Path, out: Path, preset: str, mode: str, threads: int, tag: str = "") -> list[dict[str, Any]]:
    """Train ``preset`` in ``mode`` on ``data`` and evaluate it; one row per score kind."""
    run_dir = out / f"{preset}-{mode}{tag}"
    started = time.perf_counter()
    overrides = {"mode": mode, "train": {"cpu_threads": threads}}
    train(data, run_dir, preset=preset, overrides=overrides, cache_dir=out / "cache", progress=False)
    seconds = time.perf_counter() - started
    rows = []
    for score in ("ast", "teacher-nll") if mode == "rgbd" else ("ast",):
        result = evaluate_run(run_dir, data, score=score, json_path=run_dir / f"eval-{score}.json")
        rows.append(
            {
                "data": tag.lstrip("-") or data.name,
                "mode": mode,
                "score": score,
                "train_s": seconds,
                "image_auroc": result["image"]["auroc"],
                "image_auroc_ci95": result["image"]["auroc_ci95"],
                "pixel_auroc": result["pixel"]["auroc"],
                "aupro": result["pixel"]["aupro"],
                "by_type": {k: v["image_auroc"] for k, v in result["by_type"].items()},
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table: one line per (mode, score)."""
    head = ["data", "mode", "score", "image", "95% interval", *DEFECTS, "pixel", "aupro", "train s"]
    lines = [" ".join(f"{h:>13}" for h in head)]
    for row in rows:
        span = format_interval(row.get("image_auroc_ci95"))  # none for the mean over seeds
        cells = [row.get("data", ""), row["mode"], row["score"], f"{row['image_auroc']:.3f}", span]
        cells += [f"{row['by_type'].get(kind, float('nan')):.3f}" for kind in DEFECTS]
        cells += [f"{row['pixel_auroc']:.3f}", f"{row['aupro']:.3f}", f"{row['train_s']:.0f}"]
        lines.append(" ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, score): the mean over datasets of every number (no interval: seeds differ)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["score"]), []).append(row)
    means = []
    for (mode, score), group in groups.items():
        kinds = sorted({k for row in group for k in row["by_type"]})
        means.append(
            {
                "data": f"mean of {len(group)}",
                "mode": mode,
                "score": score,
                **{k: sum(row[k] for row in group) / len(group) for k in ("image_auroc", "pixel_auroc", "aupro", "train_s")},
                "by_type": {k: sum(row["by_type"].get(k, float("nan")) for row in group) / len(group) for k in kinds},
            }
        )
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="synthetic category folder (default: generate)")
    parser.add_argument("--out", type=Path, default=None, help="runs, cache and results (default: a temp dir)")
    parser.add_argument("--preset", default="ast-edge")
    parser.add_argument("--modes", default="rgbd,rgb,depth")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for training and scoring")
    parser.add_argument("--seeds", default="0", help="comma-separated dataset seeds (without --data)")
    parser.add_argument("--test-good", type=int, default=SynthConfig.n_test_good, help="good test parts per dataset")
    parser.add_argument("--test-per-defect", type=int, default=SynthConfig.n_test_per_defect, help="parts per defect type")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edge-ad-accuracy-"))
    if args.data is not None:
        datasets = [(args.data, "")]
    else:
        config = replace(SynthConfig(), n_test_good=args.test_good, n_test_per_defect=args.test_per_defect)
        seeds = [int(s) for s in args.seeds.split(",")]
        datasets = [
            (generate_dataset(out / f"data-seed{seed}", "widget", seed, config, overwrite=True).out, f"-seed{seed}")
            for seed in seeds
        ]
    rows = []
    for data, tag in datasets:
        for mode in args.modes.split(","):
            rows.extend(measure(data, out, args.preset, mode.strip(), args.threads, tag))
            print(format_table(rows[-2:] if mode == "rgbd" else rows[-1:]), flush=True)
    if len(datasets) > 1:
        rows.extend(mean_rows(rows))
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{args.preset} on {', '.join(str(d) for d, _ in datasets)}\n{format_table(rows)}\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
