"""Wall-clock overload soak (F24): the real pipeline, the synthetic line at twice the inspection budget.

Usage: python tests/benchmarks/soak.py [--minutes 10] [--budget-ms 33.3] [--size 128] [--bundle DIR] [--json FILE]

The synthetic camera (real renderer, realtime pacing) streams at ``2 x 1000 / budget-ms`` fps into the
real runtime (capture thread, drop-oldest queue of 2, tracker, reject slots, supervisor, sim output)
with the real Inspector on ONNX Runtime (one thread). Each frame's inspection is held to the budget (a
pause fills what the CPU did not use), so the overload is the same on any machine. Every 5 s it samples
RSS and open file descriptors. At the end it prints (and with --json writes) parts decided and lost
(ground truth: missed / split / phantom), drops by reason, deadline misses, latency p50/p99 per stage,
RSS and fd counts at start (after a 30 s warm-up) and end. Done when: no part lost, memory flat.
Without --bundle the tiny test bundle (tests/helpers/bundles.py) is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # tests.helpers, when run as a script

from edge_ad.clock import MonotonicClock  # noqa: E402
from edge_ad.frame import Frame  # noqa: E402
from edge_ad.inspector import Inspector  # noqa: E402
from edge_ad.line.outputs import SimOutput  # noqa: E402
from edge_ad.line.reject import RejectTiming  # noqa: E402
from edge_ad.monitor import Monitor  # noqa: E402
from edge_ad.part_tracker import TrackerConfig  # noqa: E402
from edge_ad.runtime import RuntimeConfig, run_inspection  # noqa: E402
from edge_ad.sources import open_source  # noqa: E402
from tests.helpers.bundles import make_tiny_bundle  # noqa: E402
from tests.helpers.fault_frames import open_fds, rss_bytes  # noqa: E402

WARMUP_S = 30.0
SAMPLE_EVERY_S = 5.0


class BudgetedInspector:
    """The real inspector, with each frame's observation held to ``budget_s`` and reported to a Monitor."""

    def __init__(self, inner: Inspector, budget_s: float, monitor: Monitor) -> None:
        self.inner, self.budget_s, self.monitor = inner, budget_s, monitor
        self.over_budget = 0

    def observe(self, frame: Frame) -> Any:
        start = time.perf_counter()
        observation = self.inner.observe(frame)
        self.monitor.on_frame(frame, observation)
        spare = self.budget_s - (time.perf_counter() - start)
        if spare > 0:
            time.sleep(spare)
        else:
            self.over_budget += 1
        return observation

    def score(self, observation: Any) -> Any:
        return self.inner.score(observation)


def sample_resources(stop: threading.Event, samples: list[dict[str, float]], started: float) -> None:
    """Every SAMPLE_EVERY_S: seconds since start, RSS (MB) and open fds."""
    while not stop.wait(SAMPLE_EVERY_S):
        samples.append({"t_s": time.monotonic() - started, "rss_mb": rss_bytes() / 1e6, "fds": open_fds()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--budget-ms", type=float, default=1000 / 30)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--speed", type=float, default=0.25, help="belt speed m/s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    bundle = args.bundle or make_tiny_bundle(Path(tempfile.mkdtemp(prefix="soak-")) / "bundle")
    clock = MonotonicClock()
    fps = 2 * 1000.0 / args.budget_ms
    source = open_source(f"synthetic:{args.seed}", fps=fps, speed_mps=args.speed, width=args.size,
                         height=args.size, realtime=True, clock=clock)
    passage_s = source.info().frames_per_part / fps  # type: ignore[operator]
    config = RuntimeConfig(
        queue_size=2, lossless=False, duration_s=args.minutes * 60,
        tracker=TrackerConfig(max_frames_per_part=max(120, math.ceil(2 * source.info().frames_per_part))),  # type: ignore[arg-type]
        reject=RejectTiming(delay_s=2 * passage_s + 0.5, pulse_s=0.02),
    )
    monitor = Monitor(clock=clock)
    inner = Inspector.from_bundle(bundle, clock=clock, intra_op_num_threads=1)
    inspector = BudgetedInspector(inner, args.budget_ms / 1000, monitor)
    samples: list[dict[str, float]] = []
    stop = threading.Event()
    started = time.monotonic()
    sampler = threading.Thread(target=sample_resources, args=(stop, samples, started), daemon=True)
    sampler.start()
    fds_start = open_fds()
    print(f"soak: {args.minutes} min, camera {fps:.1f} fps into a {args.budget_ms:.1f} ms budget, "
          f"{args.size}x{args.size}, part passage {passage_s:.2f} s", flush=True)
    try:
        summary = run_inspection(source, inspector, SimOutput(clock), config, clock)
    finally:
        stop.set()
        sampler.join(timeout=SAMPLE_EVERY_S + 1)
        inner.close()
    settled = [s for s in samples if s["t_s"] >= WARMUP_S] or samples
    truth = summary.truth
    report = {
        "minutes": args.minutes, "camera_fps": fps, "budget_ms": args.budget_ms, "size": args.size,
        "stop_reason": summary.stop_reason, "duration_s": summary.duration_s,
        "frames_captured": summary.frames_captured, "frames_inspected": summary.frames_inspected,
        "over_budget_frames": inspector.over_budget, "drops": summary.drops,
        "parts": summary.parts, "accepted": summary.accepted, "rejected": summary.rejected,
        "fault_rejected": summary.fault_rejected, "fault_reasons": summary.fault_reasons,
        "parts_lost": None if truth is None else truth.missed_parts,
        "parts_split": None if truth is None else truth.split_parts,
        "parts_phantom": None if truth is None else truth.phantom_parts,
        "pulses": summary.pulses,
        "latency_ms": {k: {"p50": v.p50_ms, "p99": v.p99_ms, "max": v.max_ms} for k, v in summary.latency.items()},
        "rss_mb": {"start": settled[0]["rss_mb"] if settled else None, "end": settled[-1]["rss_mb"] if settled else None,
                   "max": max((s["rss_mb"] for s in settled), default=None)},
        "fds": {"start": fds_start, "end": open_fds(), "max": max((s["fds"] for s in samples), default=None)},
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "platform": platform.platform()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
