"""What a run did: counts, drops, faults, latency percentiles, throughput and, with ground truth, accuracy.

:class:`RunRecorder` accumulates while the loop runs (the capture and inspection threads both
write to it, under a lock); :meth:`RunRecorder.finish` freezes it into a :class:`RunSummary`
that prints as a rich table and saves as JSON.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from edge_ad.decision import Decision, Verdict
from edge_ad.errors import ConfigError

# Latency stages reported (milliseconds): geometry + preprocessing per frame, inference per scored
# frame, and end to end from the scored frame's arrival to the part's decision, which includes
# waiting for the part to leave the view (the reject delay must cover it).
STAGE_PREPROCESS = "geometry_preprocess"
STAGE_INFERENCE = "inference"
STAGE_END_TO_END = "end_to_end"
STAGES = (STAGE_PREPROCESS, STAGE_INFERENCE, STAGE_END_TO_END)
DROP_REASONS = ("queue_full", "timeout", "duplicate", "gap", "camera_error", "stopped")
# Per-part records kept for the JSON report (about 1 KB each); a long run keeps counting but stops
# logging parts, so a line running for weeks holds at most ~10 MB of them.
MAX_PART_RECORDS = 10_000
# Latency percentiles come from the most recent samples per stage (20k: ~11 minutes at 30 fps), so a run
# of days keeps flat memory.
LATENCY_WINDOW = 20_000


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles of one stage in milliseconds over ``count`` samples (None without samples)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @staticmethod
    def of(samples_ns: Sequence[int]) -> LatencyStats:
        """Stats of durations given in nanoseconds."""
        if len(samples_ns) == 0:
            return LatencyStats(0, None, None, None)
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        return LatencyStats(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()))


@dataclass(frozen=True)
class PartRecord:
    """One decided part: tracker id, frames it spanned, the decision and its ground truth if known."""

    part_id: int
    first_frame: int
    last_frame: int
    scored_frame: int | None
    frames: int
    fault_frames: int
    exit_reason: str
    verdict: str
    reason: str
    score: float | None
    capture_ns: int
    decided_ns: int
    truth_part_id: Any = None
    truth_defective: bool | None = None
    truth_defect_type: str | None = None


@dataclass(frozen=True)
class TruthStats:
    """Accuracy against ground truth, by real part (each real part counted once, by its first decision).

    ``recall``: share of defective parts rejected (REJECT or FAULT_REJECT); ``false_reject_rate``:
    share of good parts rejected; ``confusion[truth][verdict]``; ``missed_parts``: real parts that
    passed through the view without any decision; ``split_parts``: real parts decided more than
    once; ``phantom_parts``: decisions on tracks that matched no real part.
    """

    defective_parts: int
    good_parts: int
    defective_rejected: int
    good_rejected: int
    recall: float | None
    false_reject_rate: float | None
    confusion: dict[str, dict[str, int]]
    missed_parts: int
    split_parts: int
    phantom_parts: int


@dataclass(frozen=True)
class RunSummary:
    """Everything :func:`edge_ad.runtime.run_inspection` reports at exit."""

    source: str
    stop_reason: str
    duration_s: float
    frames_captured: int
    frames_inspected: int
    parts: int
    accepted: int
    rejected: int
    fault_rejected: int
    fault_reasons: dict[str, int]
    drops: dict[str, int]
    latency: dict[str, LatencyStats]
    frames_per_s: float
    parts_per_s: float
    pulses: dict[str, int]
    truth: TruthStats | None = None
    error: str | None = None
    part_records: list[PartRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        return asdict(self)

    def write_json(self, path: Path) -> None:
        """Save :meth:`to_dict` as indented JSON (parent folders are created)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--json {path}: cannot write the run summary: {exc}") from exc


class RunRecorder:
    """Thread-safe accumulator behind a :class:`RunSummary`."""

    def __init__(self, source: str, on_drop: Callable[[str, int], object] | None = None) -> None:
        """``on_drop(reason, count)`` is told of every drop too (the monitor's metrics)."""
        self.source = source
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self.frames_captured = 0
        self.frames_inspected = 0
        self.drops: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
        self._stages: dict[str, deque[int]] = {stage: deque(maxlen=LATENCY_WINDOW) for stage in STAGES}
        self._verdicts: Counter[str] = Counter()
        self._fault_reasons: Counter[str] = Counter()
        self._records: list[PartRecord] = []
        self._parts = 0
        self._truth_by_id: dict[Any, Mapping[str, Any]] = {}
        self._last_seen: dict[Any, int] = {}
        self._last_frame = -1

    @property
    def parts(self) -> int:
        """Parts decided so far."""
        with self._lock:
            return self._parts

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` frames lost for ``reason`` (one of DROP_REASONS)."""
        with self._lock:
            self.drops[reason] += count
        if self._on_drop is not None and count:
            self._on_drop(reason, count)

    def captured(self) -> None:
        """Count a frame handed to the queue."""
        with self._lock:
            self.frames_captured += 1

    def inspected(self, frame_number: int, truth: Mapping[str, Any] | None) -> None:
        """Count an inspected frame and remember which real part (if any) it showed."""
        with self._lock:
            self.frames_inspected += 1
            self._last_frame = frame_number
            truth_id = truth.get("part_id") if truth else None
            if truth_id is not None and truth.get("part_present", True):
                self._truth_by_id.setdefault(truth_id, truth)
                self._last_seen[truth_id] = frame_number

    def stage(self, name: str, duration_ns: int) -> None:
        """Add one latency sample for stage ``name``."""
        with self._lock:
            self._stages[name].append(int(duration_ns))

    def part(self, record: PartRecord) -> None:
        """Count one decided part."""
        with self._lock:
            self._parts += 1
            self._verdicts[record.verdict] += 1
            if record.verdict == Verdict.FAULT_REJECT.value:
                self._fault_reasons[record.reason] += 1
            if len(self._records) < MAX_PART_RECORDS:
                self._records.append(record)

    def finish(
        self,
        stop_reason: str,
        duration_s: float,
        pulses: Mapping[str, int],
        in_view_frames: int,
        error: str | None = None,
    ) -> RunSummary:
        """Freeze into a RunSummary; real parts seen within the last ``in_view_frames`` frames are not "missed"."""
        with self._lock:
            duration = max(duration_s, 1e-9)
            return RunSummary(
                source=self.source,
                stop_reason=stop_reason,
                duration_s=duration_s,
                frames_captured=self.frames_captured,
                frames_inspected=self.frames_inspected,
                parts=self._parts,
                accepted=self._verdicts[Verdict.ACCEPT.value],
                rejected=self._verdicts[Verdict.REJECT.value],
                fault_rejected=self._verdicts[Verdict.FAULT_REJECT.value],
                fault_reasons=dict(self._fault_reasons),
                drops=dict(self.drops),
                latency={stage: LatencyStats.of(samples) for stage, samples in self._stages.items()},
                frames_per_s=self.frames_inspected / duration,
                parts_per_s=self._parts / duration,
                pulses=dict(pulses),
                truth=self._truth_stats(in_view_frames),
                error=error,
                part_records=list(self._records),
            )

    def _truth_stats(self, in_view_frames: int) -> TruthStats | None:
        if not self._truth_by_id and not any(r.truth_part_id is not None for r in self._records):
            return None
        first: dict[Any, PartRecord] = {}
        decisions: Counter[Any] = Counter()
        phantom = 0
        for record in self._records:
            if record.truth_part_id is None:
                # An unseen trigger is a real part the camera never saw (decided FAULT_REJECT), not a phantom.
                phantom += record.exit_reason != "unseen_trigger"
                continue
            decisions[record.truth_part_id] += 1
            first.setdefault(record.truth_part_id, record)
        confusion = {kind: {v.value: 0 for v in Verdict} for kind in ("defective", "good")}
        for record in first.values():
            confusion["defective" if record.truth_defective else "good"][record.verdict] += 1
        n_def = sum(confusion["defective"].values())
        n_good = sum(confusion["good"].values())
        def_rej = n_def - confusion["defective"][Verdict.ACCEPT.value]
        good_rej = n_good - confusion["good"][Verdict.ACCEPT.value]
        # A real part still in view when the run stopped is not missed, just unfinished.
        missed = sum(
            1
            for truth_id, last in self._last_seen.items()
            if truth_id not in first and last < self._last_frame - in_view_frames
        )
        return TruthStats(
            defective_parts=n_def,
            good_parts=n_good,
            defective_rejected=def_rej,
            good_rejected=good_rej,
            recall=def_rej / n_def if n_def else None,
            false_reject_rate=good_rej / n_good if n_good else None,
            confusion=confusion,
            missed_parts=missed,
            split_parts=sum(1 for count in decisions.values() if count > 1),
            phantom_parts=phantom,
        )


def part_record(part: Any, decision: Decision, decided_ns: int) -> PartRecord:
    """Record of a :class:`edge_ad.part_tracker.TrackedPart` and its decision."""
    truth = part.truth
    return PartRecord(
        part_id=part.part_id,
        first_frame=part.first_frame,
        last_frame=part.last_frame,
        scored_frame=part.best.frame.frame_number if part.best is not None else None,
        frames=part.frames,
        fault_frames=part.fault_frames,
        exit_reason=part.exit_reason,
        verdict=decision.verdict.value,
        reason=decision.reason,
        score=decision.score,
        capture_ns=part.capture_ns,
        decided_ns=decided_ns,
        truth_part_id=truth.get("part_id") if truth else None,
        truth_defective=bool(truth.get("defective")) if truth else None,
        truth_defect_type=truth.get("defect_type") if truth else None,
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(summary: RunSummary) -> Table:
    """The summary as one rich table (sections: run, decisions, drops, latency, accuracy)."""
    table = Table(title=f"edge-ad run: {summary.source}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("stop reason", summary.stop_reason + (f" ({summary.error})" if summary.error else "")),
        ("duration (s)", _fmt(summary.duration_s)),
        ("frames captured / inspected", f"{summary.frames_captured} / {summary.frames_inspected}"),
        ("throughput (frames/s, parts/s)", f"{summary.frames_per_s:.1f}, {summary.parts_per_s:.2f}"),
        ("parts", str(summary.parts)),
        ("accepted", str(summary.accepted)),
        ("rejected", str(summary.rejected)),
        ("fault-rejected", str(summary.fault_rejected)),
    ]
    rows += [(f"  fault: {reason}", str(count)) for reason, count in sorted(summary.fault_reasons.items())]
    rows += [(f"dropped: {reason}", str(count)) for reason, count in summary.drops.items()]
    for stage, stats in summary.latency.items():
        rows.append((f"latency {stage} p50 / p99 (ms)", f"{_fmt(stats.p50_ms)} / {_fmt(stats.p99_ms)}"))
    rows += [(f"pulses {name}", str(count)) for name, count in summary.pulses.items()]
    if summary.truth is not None:
        t = summary.truth
        rows += [
            ("defective parts rejected (recall)", f"{t.defective_rejected}/{t.defective_parts} ({_fmt(t.recall, 3)})"),
            ("good parts rejected (false-reject rate)", f"{t.good_rejected}/{t.good_parts} ({_fmt(t.false_reject_rate, 3)})"),
            ("missed / split / phantom parts", f"{t.missed_parts} / {t.split_parts} / {t.phantom_parts}"),
        ]
        for kind, verdicts in t.confusion.items():
            rows.append((f"confusion {kind}", ", ".join(f"{v} {n}" for v, n in verdicts.items())))
    for name, value in rows:
        table.add_row(name, value)
    return table
