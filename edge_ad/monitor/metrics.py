"""Counters, gauges and fixed-bucket latency histograms, rendered as Prometheus text (format 0.0.4).

A :class:`MetricsRegistry` holds metric families; every family has a short name (``drops``) used in
:meth:`MetricsRegistry.snapshot` keys (``drops.duplicate``) and a Prometheus name
(``edge_ad_drops_total{reason="duplicate"}``). Updates are a dict increment under one lock, cheap
enough for the inspection loop; rendering copies under the lock, so a scrape never sees half an update.
:class:`LineMetrics` is the set the runtime reports through :class:`edge_ad.monitor.Monitor`.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Mapping, Sequence

from edge_ad.errors import ConfigError

PREFIX = "edge_ad_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. Dense around one 30 fps frame (33 ms), where the line's budget decisions are made.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

LabelValues = tuple[str, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape_label(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family:
    """Shared naming and label checks of one metric family."""

    kind = "untyped"
    suffix = ""

    def __init__(self, short: str, help_text: str, labels: Sequence[str], lock: threading.Lock) -> None:
        self.short = short
        self.name = PREFIX + short + self.suffix
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = lock

    def _key(self, values: Sequence[str]) -> LabelValues:
        if len(values) != len(self.label_names):
            raise ConfigError(
                f"metric {self.name}: expected label values for {list(self.label_names)}, got {list(values)}"
            )
        return tuple(str(v) for v in values)

    def header(self) -> list[str]:
        """The ``# HELP`` and ``# TYPE`` lines."""
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]


class CounterFamily(_Family):
    """Monotonic counts per label combination; ``source`` makes it read another object's counts instead."""

    kind = "counter"
    suffix = "_total"

    def __init__(
        self,
        short: str,
        help_text: str,
        labels: Sequence[str],
        lock: threading.Lock,
        source: Callable[[], Mapping[LabelValues, float]] | None = None,
        preset: Sequence[LabelValues] = (),
    ) -> None:
        super().__init__(short, help_text, labels, lock)
        self._source = source
        # Preset label values show as 0 before they first happen (so dashboards see the series).
        self._values: dict[LabelValues, float] = {self._key(v): 0 for v in (preset or [()] * (not labels))}

    def inc(self, *values: str, amount: float = 1) -> None:
        """Add ``amount`` (>= 0) to the series with these label values."""
        if amount < 0:
            raise ConfigError(f"metric {self.name}: a counter cannot decrease (amount {amount})")
        key = self._key(values)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def values(self) -> dict[LabelValues, float]:
        """Current value of every series."""
        if self._source is not None:
            return {self._key(k): v for k, v in self._source().items()}
        with self._lock:
            return dict(self._values)

    def value(self, *values: str) -> float:
        """Current value of one series (0 when it never happened)."""
        return self.values().get(self._key(values), 0)

    def lines(self) -> list[str]:
        """Exposition lines of every series."""
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in sorted(self.values().items())]


class GaugeFamily(CounterFamily):
    """A value that goes up and down (or is read from ``source`` at scrape time)."""

    kind = "gauge"
    suffix = ""

    def set(self, *values: str, value: float) -> None:
        """Set the series with these label values."""
        key = self._key(values)
        with self._lock:
            self._values[key] = value


class HistogramFamily(_Family):
    """Cumulative fixed-bucket histograms per label combination, in seconds."""

    kind = "histogram"
    suffix = "_seconds"

    def __init__(
        self, short: str, help_text: str, labels: Sequence[str], lock: threading.Lock, buckets: Sequence[float]
    ) -> None:
        super().__init__(short, help_text, labels, lock)
        bounds = [float(b) for b in buckets]
        if not bounds or bounds != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ConfigError(f"metric {self.name}: buckets must be finite and strictly increasing, got {list(buckets)}")
        self.buckets = tuple(bounds)
        # Per series: [count per bucket (last = above every bound)], sum, count.
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, *values: str, seconds: float) -> None:
        """Add one duration (seconds) to the series with these label values."""
        key = self._key(values)
        index = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
            series[0][index] += 1
            series[1][0] += seconds

    def count(self, *values: str) -> int:
        """Samples in one series."""
        with self._lock:
            series = self._series.get(self._key(values))
            return sum(series[0]) if series else 0

    def quantile(self, q: float, *values: str) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None without samples; inf past the last bound)."""
        with self._lock:
            series = self._series.get(self._key(values))
            counts = list(series[0]) if series else []
        total = sum(counts)
        if total == 0:
            return None
        rank, seen = q * total, 0
        for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
            seen += n
            if seen >= rank:
                return bound
        return math.inf

    def lines(self) -> list[str]:
        """Exposition lines: cumulative ``_bucket`` series with ``le``, then ``_sum`` and ``_count``."""
        with self._lock:
            series = {k: (list(c), s[0]) for k, (c, s) in self._series.items()}
        out: list[str] = []
        for key, (counts, total) in sorted(series.items()):
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += n
                le = 'le="' + _number(bound) + '"' if math.isfinite(bound) else 'le="+Inf"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {cumulative}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return out


class MetricsRegistry:
    """Named metric families, rendered in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> _Family:
        if family.short in self._families:
            raise ConfigError(f"metric {family.name}: registered twice")
        self._families[family.short] = family
        return family

    def counter(
        self,
        short: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        source: Callable[[], Mapping[LabelValues, float]] | None = None,
        preset: Sequence[LabelValues] = (),
    ) -> CounterFamily:
        """A counter family ``edge_ad_<short>_total``."""
        return self._add(CounterFamily(short, help_text, labels, self._lock, source, preset))  # type: ignore[return-value]

    def gauge(
        self,
        short: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        source: Callable[[], Mapping[LabelValues, float]] | None = None,
    ) -> GaugeFamily:
        """A gauge family ``edge_ad_<short>``."""
        return self._add(GaugeFamily(short, help_text, labels, self._lock, source))  # type: ignore[return-value]

    def histogram(
        self, short: str, help_text: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_S
    ) -> HistogramFamily:
        """A histogram family ``edge_ad_<short>_seconds``."""
        return self._add(HistogramFamily(short, help_text, labels, self._lock, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        """Every family in Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        for family in self._families.values():
            lines += family.header()
            lines += family.lines()  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"

    def snapshot(self) -> dict[str, float]:
        """Flat ``short.label1.label2`` -> value for counters and gauges (histograms: ``.count``)."""
        out: dict[str, float] = {}
        for family in self._families.values():
            if isinstance(family, HistogramFamily):
                with self._lock:
                    keys = list(family._series)
                for key in keys:
                    out[".".join((family.short, *key, "count"))] = family.count(*key)
            else:
                for key, value in family.values().items():  # type: ignore[attr-defined]
                    out[".".join((family.short, *key))] = value
        return out


class LineMetrics:
    """The runtime's metrics: frames, parts, verdicts, drops, faults and per-stage latency."""

    def __init__(self, registry: MetricsRegistry | None = None, drop_reasons: Sequence[str] = ()) -> None:
        self.registry = registry if registry is not None else MetricsRegistry()
        r = self.registry
        self.frames = r.counter("frames", "Frames inspected (geometry and preprocessing ran).")
        self.parts = r.counter("parts", "Parts decided (one decision per part).")
        self.verdicts = r.counter(
            "verdicts", "Part decisions by verdict (accept, reject, fault_reject) and reason.", ("verdict", "reason")
        )
        self.drops = r.counter(
            "drops", "Frames lost before inspection, by reason.", ("reason",), preset=[(d,) for d in drop_reasons]
        )
        self.faults = r.counter("faults", "Fault events (unusable frames, camera and stage errors), by reason.", ("reason",))
        self.latency = r.histogram("stage_latency", "Latency per pipeline stage.", ("stage",))

    def render(self) -> str:
        """Prometheus text of the whole registry."""
        return self.registry.render()
