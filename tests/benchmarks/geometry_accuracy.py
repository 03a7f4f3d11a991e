"""Plane-fit and foreground accuracy on synthetic line scenes, and geometry/preprocess timing.

Usage: python tests/benchmarks/geometry_accuracy.py [--scenes 20] [--repeat 30]

For each of ``--scenes`` scenes from ``edge_ad.synth.render_scene`` (seeds 0..N-1, default
SynthConfig) it compares the fitted belt plane with ``scene.plane`` (normal angle, offset d) and
the undilated foreground with ``scene.object_mask`` (IoU), for the "plane" and "corners" methods,
and prints the median and worst. Then it times extract_foreground and the whole preprocess at
256x256 and 640x480 (median and best of ``--repeat`` runs after a warm-up).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

from edge_ad.geometry import ForegroundConfig, Plane, extract_foreground  # noqa: E402
from edge_ad.preprocess import PreprocessConfig, preprocess  # noqa: E402
from edge_ad.synth import SynthConfig, render_scene  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks."""
    return float(np.count_nonzero(a & b)) / max(1, int(np.count_nonzero(a | b)))


def accuracy(n_scenes: int) -> None:
    """Print plane and foreground errors against the generator's ground truth."""
    config = SynthConfig()
    rows: dict[str, dict[str, list[float]]] = {
        m: {"angle": [], "offset": [], "iou": []} for m in ("plane", "corners")
    }
    for seed in range(n_scenes):
        scene = render_scene(seed, config)
        truth = Plane(scene.plane.normal, scene.plane.d)
        for method, row in rows.items():
            result = extract_foreground(scene.xyz, ForegroundConfig(method=method))
            row["iou"].append(iou(result.raw_mask, scene.object_mask))
            if result.plane is not None:
                row["angle"].append(result.plane.angle_to_deg(truth))
                row["offset"].append(abs(result.plane.d - truth.d) * 1000)
    print(f"accuracy over {n_scenes} synthetic scenes ({config.width}x{config.height}, SynthConfig defaults)")
    plane = rows["plane"]
    print(
        f"  plane fit angle error  deg: median {np.median(plane['angle']):.3f}  worst {max(plane['angle']):.3f}"
    )
    print(
        f"  plane fit offset error mm : median {np.median(plane['offset']):.3f}  worst {max(plane['offset']):.3f}"
    )
    for method, row in rows.items():
        print(
            f"  foreground IoU ({method:7s}): median {np.median(row['iou']):.3f}  worst {min(row['iou']):.3f}"
        )


def ms(fn: Callable[[], object], repeat: int) -> str:
    """Median and best wall time, and median CPU time, of ``fn`` in ms after one warm-up call.

    On a shared machine the best wall time and the CPU time are the least disturbed figures.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return f"{np.median(wall) * 1000:.1f} (best {min(wall) * 1000:.1f}, cpu {np.median(cpu) * 1000:.1f})"


def timing(repeat: int) -> None:
    """Print extract_foreground and preprocess latency at two camera sizes."""
    print(f"timing (ms, median of {repeat}, this CPU, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    for width, height in ((256, 256), (640, 480)):
        scene = render_scene(0, SynthConfig(width=width, height=height))
        foreground = ms(lambda s=scene: extract_foreground(s.xyz), repeat)
        full = ms(lambda s=scene: preprocess(s.rgb, s.xyz, PreprocessConfig()), repeat)
        print(f"  {width}x{height}: extract_foreground {foreground} ms   preprocess (256/128) {full} ms")


def main() -> None:
    """Parse arguments and print both reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    accuracy(args.scenes)
    timing(args.repeat)


if __name__ == "__main__":
    main()
