"""INT8 against FP32 per bundle: the gate's numbers, what stayed float, and model latency on this CPU.

Usage: python tests/benchmarks/int8_report.py BUNDLE [BUNDLE ...] [--runs 30] [--threads 1]
       python tests/benchmarks/int8_report.py --model NAME=FP32.onnx,INT8.onnx ...

A BUNDLE is an ``edge-ad export --precision int8`` output: its ``export_report.json`` gives the
gate (decision agreement with FP32 at the bundle threshold, image AUROC drop) and its
``quantization.json`` the retry level and float-node groups. ``--model`` times a pair of graphs
without a bundle (e.g. from a failed export's attempts). Latency is the median of ``--runs``
batch-of-one inferences through the ONNX Runtime backend (after 3 warm-up runs), one thread by
default, on the bundle's own input shapes; ratio = FP32 / INT8 (> 1: INT8 faster).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends.onnxruntime import OnnxRuntimeBackend

FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"


def median_ms(model: Path, runs: int, threads: int) -> float:
    """Median wall time (ms) of one batch-of-one inference of ``model`` on fixed random inputs."""
    backend = OnnxRuntimeBackend(model, intra_op_num_threads=threads)
    try:
        rng = np.random.default_rng(0)
        feeds = {s.name: rng.standard_normal([d or 1 for d in s.shape]).astype(np.float32) for s in backend.input_spec()}
        if "mask" in feeds:
            feeds["mask"] = np.ones_like(feeds["mask"])  # every grid cell foreground: the full cost
        for _ in range(3):
            backend.infer(feeds)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            backend.infer(feeds)
            times.append(time.perf_counter() - start)
        return 1000.0 * float(np.median(times))
    finally:
        backend.close()


def bundle_row(bundle: Path) -> dict[str, Any]:
    """Gate numbers and float-node groups recorded by the export."""
    report = json.loads((bundle / "export_report.json").read_text())["int8"]
    quantization = json.loads((bundle / "quantization.json").read_text())
    gate = report["gate"]
    return {
        "name": bundle.name,
        "fp32": bundle / FP32_FILE,
        "int8": bundle / INT8_FILE,
        "level": quantization["retry_level"],
        "agreement": gate["decision_agreement"],
        "auroc": (gate["auroc_fp32"], gate["auroc_int8"]),
        "float": quantization["float_node_groups"],
    }


def main() -> None:
    """Print one line per bundle or model pair."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="*", type=Path)
    parser.add_argument("--model", action="append", default=[], help="NAME=FP32.onnx,INT8.onnx")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = [bundle_row(b) for b in args.bundles]
    for spec in args.model:
        name, paths = spec.split("=", 1)
        fp32, int8 = paths.split(",")
        rows.append({"name": name, "fp32": Path(fp32), "int8": Path(int8)})
    print(f"{'model':24s} {'level':>5s} {'agree':>7s} {'AUROC fp32 -> int8':>20s} {'fp32 ms':>8s} {'int8 ms':>8s} {'ratio':>6s}  float groups")
    for row in rows:
        fp32_ms = median_ms(row["fp32"], args.runs, args.threads)
        int8_ms = median_ms(row["int8"], args.runs, args.threads)
        level = str(row.get("level", "-"))
        agree = f"{row['agreement']:.2%}" if "agreement" in row else "-"
        auroc = "-"
        if row.get("auroc") and row["auroc"][0] is not None:
            auroc = f"{row['auroc'][0]:.4f} -> {row['auroc'][1]:.4f}"
        groups = ", ".join(f"{k}={v}" for k, v in row.get("float", {}).items()) or "-"
        print(
            f"{row['name']:24s} {level:>5s} {agree:>7s} {auroc:>20s} {fp32_ms:8.1f} {int8_ms:8.1f} "
            f"{fp32_ms / int8_ms:6.2f}  {groups}"
        )


if __name__ == "__main__":
    main()
