"""Accuracy of a preset on the synthetic line: train and evaluate it in rgbd, rgb and depth modes.

Usage: python tests/benchmarks/synthetic_accuracy.py [--data DIR] [--out DIR] [--preset ast-edge]
       [--modes rgbd,rgb,depth] [--threads 2]

``--data`` is a category folder written by ``edge-ad synth`` (default size); without it the
default dataset (category widget, seed 0) is generated under ``--out``. Each mode is trained from
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

from edge_ad.synth import generate_dataset  # noqa: E402
from trainer.evaluate import evaluate_run  # noqa: E402
from trainer.train_run import train  # noqa: E402

DEFECTS = ("dent", "bump", "stain", "crack", "missing", "contamination")


def measure(data: Path, out: Path, preset: str, mode: str, threads: int) -> list[dict[str, Any]]:
    """Train ``preset`` in ``mode`` on ``data`` and evaluate it; one row per score kind."""
    run_dir = out / f"{preset}-{mode}"
    started = time.perf_counter()
    overrides = {"mode": mode, "train": {"cpu_threads": threads}}
    train(data, run_dir, preset=preset, overrides=overrides, cache_dir=out / "cache", progress=False)
    seconds = time.perf_counter() - started
    rows = []
    for score in ("ast", "teacher-nll") if mode == "rgbd" else ("ast",):
        result = evaluate_run(run_dir, data, score=score, json_path=run_dir / f"eval-{score}.json")
        rows.append(
            {
                "mode": mode,
                "score": score,
                "train_s": seconds,
                "image_auroc": result["image"]["auroc"],
                "pixel_auroc": result["pixel"]["auroc"],
                "aupro": result["pixel"]["aupro"],
                "by_type": {k: v["image_auroc"] for k, v in result["by_type"].items()},
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table: one line per (mode, score)."""
    head = ["mode", "score", "image", *DEFECTS, "pixel", "aupro", "train s"]
    lines = [" ".join(f"{h:>13}" for h in head)]
    for row in rows:
        cells = [row["mode"], row["score"], f"{row['image_auroc']:.3f}"]
        cells += [f"{row['by_type'].get(kind, float('nan')):.3f}" for kind in DEFECTS]
        cells += [f"{row['pixel_auroc']:.3f}", f"{row['aupro']:.3f}", f"{row['train_s']:.0f}"]
        lines.append(" ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="synthetic category folder (default: generate)")
    parser.add_argument("--out", type=Path, default=None, help="runs, cache and results (default: a temp dir)")
    parser.add_argument("--preset", default="ast-edge")
    parser.add_argument("--modes", default="rgbd,rgb,depth")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for training and scoring")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edge-ad-accuracy-"))
    data = args.data
    if data is None:
        data = generate_dataset(out / "data", "widget", 0).out
    rows = []
    for mode in args.modes.split(","):
        rows.extend(measure(data, out, args.preset, mode.strip(), args.threads))
        print(format_table(rows[-2:] if mode == "rgbd" else rows[-1:]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{args.preset} on {data}\n{format_table(rows)}\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
