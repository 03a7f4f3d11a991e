"""Fault-suite helpers: frame corruptions, a scripted source, a truth-driven inspector, disk and log fakes.

Corruptions return new frames (frames are immutable); :class:`ListSource` plays a list of frames, read
timeouts (None) and exceptions, for runs with the real :class:`~edge_ad.inspector.Inspector` on real
RGB-D frames (:func:`box_line`); :func:`reject_events` feeds a :class:`~edge_ad.monitor.Monitor` the way
the loop does; :class:`FakeDisk`, :class:`BlockingWriter` and :class:`BlockingHandler` stand in for a
nearly full or stalled disk under the archive and the log writer. The FaultPlan harness (sources,
backends, GPIO, systemd) is ``tests/helpers/faults.py``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.backends.base import InferenceBackend, TensorSpec
from edge_ad.decision import Decision, Verdict
from edge_ad.frame import Frame
from edge_ad.geometry import ForegroundConfig, Presence
from edge_ad.line.reject import RejectTiming
from edge_ad.monitor.archive import DiskUsage
from edge_ad.part_tracker import TrackerConfig
from edge_ad.preprocess import PreprocessConfig
from edge_ad.run_summary import RunSummary
from edge_ad.runtime import RuntimeConfig
from edge_ad.sources import SourceBase, SourceExhausted, SourceInfo
from tests.helpers.bundles import make_box_frame, make_tiny_bundle

# --- corruptions ----------------------------------------------------------------------------------


def with_depth(frame: Frame, depth: np.ndarray | None) -> Frame:
    """The frame with ``depth`` replaced."""
    return dataclasses.replace(frame, depth=depth)


def zero_fraction(frame: Frame, fraction: float, seed: int = 0) -> Frame:
    """Depth with ``fraction`` of the pixels set to 0 (missing), chosen at random."""
    depth = np.array(frame.depth, dtype=np.float32, copy=True)
    rng = np.random.default_rng(seed)
    flat = rng.choice(depth.size, size=round(fraction * depth.size), replace=False)
    depth.reshape(-1)[flat] = 0.0
    return with_depth(frame, depth)


def patch(frame: Frame, value: float, box: tuple[float, float, float, float] = (0.1, 0.1, 0.4, 0.4)) -> Frame:
    """Depth with a normalised (x0, y0, x1, y1) patch set to ``value`` (NaN, inf, 65.535 ...)."""
    depth = np.array(frame.depth, dtype=np.float32, copy=True)
    h, w = depth.shape
    depth[round(box[1] * h) : round(box[3] * h), round(box[0] * w) : round(box[2] * w)] = value
    return with_depth(frame, depth)


def raw_uint16(frame: Frame, saturate_box: tuple[float, float, float, float] | None = None) -> Frame:
    """Depth as the camera's raw uint16 millimetres (not converted to metres), optionally with 65535 patches."""
    raw = np.round(np.nan_to_num(frame.depth) * 1000).astype(np.uint16)
    if saturate_box is not None:
        h, w = raw.shape
        x0, y0, x1, y1 = saturate_box
        raw[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)] = 65535
    return with_depth(frame, raw)


def without(frame: Frame, stream: str) -> Frame:
    """The frameset with one stream missing: ``color`` or ``depth`` becomes None."""
    if stream not in ("color", "depth"):
        raise ValueError(f"stream must be 'color' or 'depth', got {stream!r}")
    return dataclasses.replace(frame, **{stream: None})


# --- scripted source, real-frame line, loop checks ----------------------------------------------------------


class ListSource(SourceBase):
    """Plays ``items`` in order: a Frame is returned, None is a read timeout, an exception is raised."""

    def __init__(self, items: Iterable[Frame | BaseException | None], name: str = "list") -> None:
        self.items = list(items)
        self.name = name
        self.reads = 0

    def info(self) -> SourceInfo:
        """8x8 at 30 fps (the loop only reads the name)."""
        return SourceInfo(self.name, 8, 8, 30.0)

    def read(self, timeout_s: float) -> Frame | None:
        """The next scripted item."""
        self.reads += 1
        if not self.items:
            raise SourceExhausted(f"{self.name}: script done")
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


@dataclass(frozen=True, eq=False)
class TruthObservation:
    """An observation as the loop sees it (frame, presence, fault)."""

    frame: Frame
    presence: Presence | None
    fault: str | None = None
    fault_detail: str = ""
    preprocess_ms: float = 1.0


@dataclass(frozen=True, eq=False)
class TruthInspection:
    """An inspection as the loop sees it (observation, decision, timings, result)."""

    observation: TruthObservation
    decision: Decision
    timings_ms: dict[str, float]
    result: Any = None


def box_line(parts: int, frames_per_part: int = 3, gap: int = 2, **box: Any) -> list[Frame]:
    """Real RGB-D frames (``make_box_frame``): empty belt, then each part as a box, with truth attached."""
    frames: list[Frame] = []
    number = 0
    for part_id in range(parts):
        for value in [None] * gap + [part_id] * frames_per_part:
            frame = make_box_frame(frame_number=number, box=None if value is None else (0.3, 0.3, 0.7, 0.7), **box)
            truth = {"part_id": value, "part_present": value is not None, "defective": False}
            frames.append(dataclasses.replace(frame, truth=truth))
            number += 1
    for _ in range(gap):
        frames.append(dataclasses.replace(make_box_frame(frame_number=number, box=None), truth={"part_id": None}))
        number += 1
    return frames


def station_bundle(out_dir: Path, **foreground: Any) -> Path:
    """The tiny real bundle (tests/helpers/bundles.py) with station foreground settings (min_valid_fraction, ...)."""
    config = PreprocessConfig(
        image_size=32, depth_size=32, mode="rgbd", mask_dilate_px=2,
        foreground=ForegroundConfig(**({"method": "plane", "dilate_px": 2} | foreground)),
    )
    return make_tiny_bundle(out_dir, preprocess_config=config)


class RecordingBackend:
    """Wraps a real backend and keeps every input and output it saw."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner = inner
        self.calls: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def input_spec(self) -> list[TensorSpec]:
        return self.inner.input_spec()

    def output_spec(self) -> list[TensorSpec]:
        return self.inner.output_spec()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.inner.infer(inputs)
        self.calls.append((inputs, outputs))
        return outputs

    def close(self) -> None:
        self.inner.close()


def fast_runtime_config(**overrides: Any) -> RuntimeConfig:
    """Lossless, one-frame debounce, immediate short pulses: deterministic loop runs for fault tests."""
    base: dict[str, Any] = {
        "lossless": True,
        "read_timeout_s": 0.05,
        "tracker": TrackerConfig(enter_frames=1, leave_frames=1),
        "reject": RejectTiming(delay_s=0.0, pulse_s=0.001),
        "drain_timeout_s": 2.0,
    }
    return RuntimeConfig(**(base | overrides))


def assert_each_part_decided_once(summary: RunSummary, truth_ids: Iterable[Any]) -> None:
    """Every real part has exactly one decision, nothing is decided twice or lost, and every reject is pulsed."""
    decided = [r.truth_part_id for r in summary.part_records]
    assert sorted(decided, key=repr) == sorted(truth_ids, key=repr), f"decisions per real part: {decided}"
    assert summary.parts == summary.accepted + summary.rejected + summary.fault_rejected == len(summary.part_records)
    assert summary.pulses["scheduled"] == summary.rejected + summary.fault_rejected
    assert sum(summary.fault_reasons.values()) == summary.fault_rejected


def reject_events(
    monitor: Any, clock: Any, count: int, images: list[np.ndarray], before: Callable[[int], None] | None = None,
    frame_period_ms: float = 33.3,
) -> None:
    """Feed ``count`` REJECT decisions to ``monitor`` on a FakeClock, one per frame period, as the loop would."""
    from types import SimpleNamespace

    for i in range(count):
        if before is not None:
            before(i)
        frame = Frame(images[i % len(images)], None, None, i, i * frame_period_ms, clock.now_ns(), {})
        observation = TruthObservation(frame, None)
        decision = Decision(Verdict.REJECT, "above_threshold", 2.0, 2.0, "score 2 > 1")
        heat = np.full((4, 4), float(i % 7), np.float32)
        inspection = TruthInspection(observation, decision, {"inference": 5.0, "scoring": 0.2}, SimpleNamespace(anomaly_map=heat))
        part = SimpleNamespace(part_id=i, first_frame=i, last_frame=i, best=observation, frames=1, fault_frames=0,
                               exit_reason="left", capture_ns=clock.now_ns(), truth=None)
        clock.advance_ms(frame_period_ms)
        monitor.on_decision(inspection, part)


# --- disk and log fakes ---------------------------------------------------------------------------


class FakeDisk:
    """A small disk: ``total`` bytes, ``other`` used by someone else, plus what ``archived()`` reports.

    ``usage`` stands in for :func:`shutil.disk_usage`; ``write`` for the archive's file writer,
    raising ENOSPC when a file would not fit (as a real full disk does).
    """

    def __init__(self, total: int, other: int, archived: Callable[[], int] = lambda: 0) -> None:
        self.total = total
        self.other = other
        self.archived = archived
        self.enospc = 0

    def usage(self, _path: Path) -> DiskUsage:
        """Total, used and free bytes now."""
        used = self.other + self.archived()
        return DiskUsage(self.total, used, max(0, self.total - used))

    def write(self, path: Path, data: bytes) -> None:
        """Write like a real disk of this size would (ENOSPC past the end)."""
        if self.other + self.archived() + len(data) > self.total:
            self.enospc += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        path.write_bytes(data)


class BlockingWriter:
    """A file writer stuck (like a dead disk) until :meth:`unblock` or ``max_block_s`` passes."""

    def __init__(self, max_block_s: float = 2.0) -> None:
        self.max_block_s = max_block_s
        self.entered = threading.Event()
        self._released = threading.Event()
        self.writes = 0

    def __call__(self, path: Path, data: bytes) -> None:
        self.entered.set()
        self._released.wait(self.max_block_s)
        path.write_bytes(data)
        self.writes += 1

    def unblock(self) -> None:
        """Let every blocked and future write through."""
        self._released.set()


class BlockingHandler(logging.Handler):
    """A log handler whose ``emit`` blocks like a stalled disk, then collects the formatted lines."""

    def __init__(self, max_block_s: float = 2.0) -> None:
        super().__init__()
        self.max_block_s = max_block_s
        self.entered = threading.Event()
        self._released = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Block, then keep the line."""
        self.entered.set()
        self._released.wait(self.max_block_s)
        self.lines.append(self.format(record))

    def unblock(self) -> None:
        """Let blocked and future records through (not ``release``: that is the Handler's lock)."""
        self._released.set()


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with Path("/proc/self/statm").open() as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    """Open file descriptors of this process (Linux /proc)."""
    return len(os.listdir("/proc/self/fd"))


def directory_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) actually on disk under ``path`` (not the archive's own accounting)."""
    files = [p for p in Path(path).iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)
