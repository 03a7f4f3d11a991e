"""Monitoring of the line: metrics, reject archive and fault logs behind one facade the loop calls.

The runtime loop calls :class:`Monitor` at four points; every call is cheap and never blocks
(archive writes and log output happen on their own threads behind bounded queues)::

    monitor.on_frame(frame, observation)   # after Inspector.observe
    monitor.on_decision(inspection, part)  # once per part; ``inspection`` may be a bare Decision
    monitor.on_drop(reason, count)         # a frame lost before inspection (queue_full, duplicate, ...)
    monitor.on_fault(reason, detail, **context)  # camera/stage faults; on_recovered(reason) when they end

:meth:`Monitor.status` is OK or DEGRADED (archive paused for disk space, or ``degraded_after``
consecutive unusable frames), also exported as the ``edge_ad_status`` gauge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.decision import Decision
from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.monitor.archive import ArchiveConfig, ArchiveItem, RejectArchive
from edge_ad.monitor.logs import FaultLog, LogConfig, LogPipeline
from edge_ad.monitor.metrics import LineMetrics, MetricsRegistry
from edge_ad.monitor.metrics_http import DEFAULT_HOST, MetricsServer
from edge_ad.run_summary import DROP_REASONS, STAGE_END_TO_END, STAGE_INFERENCE, STAGE_PREPROCESS, part_record

__all__ = [
    "ArchiveConfig",
    "ArchiveItem",
    "FaultLog",
    "Health",
    "LineMetrics",
    "LogConfig",
    "LogPipeline",
    "MetricsRegistry",
    "MetricsServer",
    "Monitor",
    "MonitorConfig",
    "MonitorStatus",
    "RejectArchive",
]

STAGE_SCORING = "scoring"


class Health(str, Enum):
    """What the monitor reports about the line (the supervisor owns RUNNING / FAULT)."""

    OK = "ok"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class MonitorStatus:
    """OK, or DEGRADED with the reasons."""

    health: Health
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonitorConfig:
    """What :meth:`Monitor.open` starts: archive (None: off), metrics endpoint (None: off), JSON logs (None: off)."""

    archive: ArchiveConfig | None = None
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_HOST
    log: LogConfig | None = None
    fault_repeat_s: float = 60.0
    degraded_after: int = 3

    def __post_init__(self) -> None:
        if self.degraded_after < 1:
            raise ConfigError(f"monitor.degraded_after: must be >= 1, got {self.degraded_after}")


def _value(reason: object) -> str:
    """An enum's value (``FaultReason.PLANE_FIT`` -> "plane_fit"), or the string itself."""
    return str(getattr(reason, "value", reason))


class Monitor:
    """Counts, archives and logs what the loop reports; see the module docstring."""

    def __init__(
        self,
        metrics: LineMetrics | None = None,
        archive: RejectArchive | None = None,
        fault_log: FaultLog | None = None,
        clock: Clock | None = None,
        degraded_after: int = 3,
    ) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.metrics = metrics if metrics is not None else LineMetrics(drop_reasons=DROP_REASONS)
        self.archive = archive
        self.fault_log = fault_log if fault_log is not None else FaultLog(clock=self.clock)
        self.degraded_after = degraded_after
        self._bad_frames = 0
        self._bad_reason = ""
        self._closers: list[Any] = []
        self.server: MetricsServer | None = None
        registry = self.metrics.registry
        registry.gauge("health", "Monitor health: 0 ok, 1 degraded.", source=lambda: {(): float(self._degraded())})
        if archive is not None:
            registry.counter(
                "archive", "Reject archive events (written, dropped_queue_full, skipped_low_space, ...).", ("event",),
                source=lambda: {(k,): v for k, v in archive.counts().items()},
            )
            registry.gauge("archive_bytes", "Bytes held by the reject archive.", source=lambda: {(): archive.store.bytes})
            registry.gauge("archive_files", "Files held by the reject archive.", source=lambda: {(): archive.store.files})
            registry.gauge("archive_queue", "Archive items waiting for the writer.", source=lambda: {(): archive.queued})

    @classmethod
    def open(cls, config: MonitorConfig, clock: Clock | None = None) -> Monitor:
        """Start what ``config`` asks for (archive worker, log writer, metrics endpoint); close() stops it all."""
        pipeline = LogPipeline(config.log).start() if config.log is not None else None
        archive = RejectArchive(config.archive).start() if config.archive is not None else None
        monitor = cls(
            archive=archive, fault_log=FaultLog(clock=clock, repeat_every_s=config.fault_repeat_s), clock=clock,
            degraded_after=config.degraded_after,
        )
        if pipeline is not None:
            monitor._closers.append(pipeline.close)
            monitor.metrics.registry.gauge(
                "log_dropped", "Log records dropped because the log queue was full.", source=lambda: {(): pipeline.dropped}
            )
        if archive is not None:
            monitor._closers.append(archive.close)
        if config.metrics_port is not None:
            try:
                server = MetricsServer(monitor.metrics.render, config.metrics_port, config.metrics_host)
            except ConfigError:
                monitor.close()
                raise
            monitor.server = server
            monitor._closers.insert(0, server.close)
        return monitor

    # --- loop calls --------------------------------------------------------------------------------

    def on_frame(self, frame: Frame, observation: Any = None) -> None:
        """One frame was observed; an unusable one counts as a fault, logged once per run of them."""
        self.metrics.frames.inc()
        if observation is None:
            return
        preprocess_ms = getattr(observation, "preprocess_ms", None)
        if preprocess_ms is not None:
            self.metrics.latency.observe(STAGE_PREPROCESS, seconds=preprocess_ms / 1e3)
        fault = getattr(observation, "fault", None)
        if fault is None:
            if self._bad_frames:
                self.fault_log.clear(f"frame.{self._bad_reason}")
            self._bad_frames = 0
            return
        reason = _value(fault)
        self.metrics.faults.inc(reason)
        if self._bad_frames and reason != self._bad_reason:
            self.fault_log.clear(f"frame.{self._bad_reason}")
        self._bad_frames += 1
        self._bad_reason = reason
        self.fault_log.fault(
            f"frame.{reason}", getattr(observation, "fault_detail", ""), frame_number=frame.frame_number
        )

    def on_decision(self, inspection: Any, part: Any) -> None:
        """A part was decided: count it, time it, and archive it when the archive wants this verdict."""
        decision: Decision = getattr(inspection, "decision", inspection)
        now = self.clock.now_ns()
        m = self.metrics
        m.parts.inc()
        m.verdicts.inc(decision.verdict.value, decision.reason)
        timings: Mapping[str, float] = getattr(inspection, "timings_ms", None) or {}
        for stage in (STAGE_INFERENCE, STAGE_SCORING):
            if stage in timings:
                m.latency.observe(stage, seconds=timings[stage] / 1e3)
        m.latency.observe(STAGE_END_TO_END, seconds=max(0, now - part.capture_ns) / 1e9)
        if decision.is_fault:
            self.fault_log.fault(f"part.{decision.reason}", decision.detail, part_id=part.part_id)
        else:
            for reason in self.fault_log.active():
                if reason.startswith("part."):
                    self.fault_log.clear(reason)
        if self.archive is not None and self.archive.wants(decision.verdict.value):
            self.archive.submit(self._archive_item(inspection, decision, part, now, timings))

    def on_drop(self, reason: str, count: int = 1) -> None:
        """``count`` frames were lost before inspection for ``reason``."""
        self.metrics.drops.inc(reason, amount=count)

    def on_fault(self, reason: str, detail: str = "", **context: Any) -> None:
        """A fault event (camera stall, stage error): counted every time, logged once (then periodically)."""
        reason = _value(reason)
        self.metrics.faults.inc(reason)
        self.fault_log.fault(reason, detail, **context)

    def on_recovered(self, reason: str) -> None:
        """The fault ``reason`` is over (logged once, with how often it happened)."""
        self.fault_log.clear(_value(reason))

    # --- state -------------------------------------------------------------------------------------

    def status(self) -> MonitorStatus:
        """OK, or DEGRADED with every reason that applies now."""
        reasons: list[str] = []
        if self.archive is not None:
            state, why = self.archive.status()
            if state != Health.OK.value:
                reasons.append(why)
        if self._bad_frames >= self.degraded_after:
            reasons.append(f"{self._bad_frames} consecutive unusable frames ({self._bad_reason})")
        return MonitorStatus(Health.DEGRADED if reasons else Health.OK, tuple(reasons))

    def _degraded(self) -> bool:
        return self.status().health is Health.DEGRADED

    def close(self) -> None:
        """Stop the metrics endpoint, flush the archive and the logs (each bounded in time)."""
        closers, self._closers = self._closers, []
        for close in closers:
            close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _archive_item(
        inspection: Any, decision: Decision, part: Any, decided_ns: int, timings: Mapping[str, float]
    ) -> ArchiveItem:
        observation = getattr(inspection, "observation", None) or getattr(part, "best", None)
        frame = getattr(observation, "frame", None)
        result = getattr(inspection, "result", None)
        record = dataclasses.asdict(part_record(part, decision, decided_ns))
        record.update(normalized=decision.normalized, detail=decision.detail, timings_ms=dict(timings))
        return ArchiveItem(
            verdict=decision.verdict.value,
            part_id=int(part.part_id),
            record=record,
            image=getattr(frame, "color", None),
            heatmap=getattr(result, "anomaly_map", None),
        )
