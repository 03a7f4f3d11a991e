"""Metrics: counters, fixed-bucket histograms, Prometheus text 0.0.4, the /metrics endpoint on 127.0.0.1,
and the Monitor facade that the loop reports to."""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.decision import Decision, FaultReason, Verdict, fault
from edge_ad.errors import ConfigError
from edge_ad.monitor import ArchiveConfig, LogConfig, Monitor, MonitorConfig, RejectArchive
from edge_ad.monitor.metrics import CONTENT_TYPE, LineMetrics, MetricsRegistry
from edge_ad.monitor.metrics_http import MetricsServer
from tests.helpers.bundles import make_box_frame
from tests.helpers.fault_frames import TruthObservation, reject_events


def parse_samples(text: str) -> dict[str, float]:
    """Sample lines -> {'name{labels}': value} (comments skipped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def test_counters_render_with_help_type_and_escaped_labels() -> None:
    registry = MetricsRegistry()
    drops = registry.counter("drops", "Frames lost\nbefore inspection.", ("reason",), preset=[("gap",)])
    drops.inc("duplicate")
    drops.inc("duplicate", amount=2)
    drops.inc('odd"name\\x')
    text = registry.render()
    lines = text.splitlines()
    assert lines[0] == "# HELP edge_ad_drops_total Frames lost\\nbefore inspection."
    assert lines[1] == "# TYPE edge_ad_drops_total counter"
    samples = parse_samples(text)
    assert samples['edge_ad_drops_total{reason="duplicate"}'] == 3
    assert samples['edge_ad_drops_total{reason="gap"}'] == 0  # preset series show before they happen
    assert samples['edge_ad_drops_total{reason="odd\\"name\\\\x"}'] == 1
    assert text.endswith("\n")
    assert registry.snapshot() == {"drops.duplicate": 3, "drops.gap": 0, 'drops.odd"name\\x': 1}


def test_counter_refuses_to_decrease_and_wrong_labels() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("x", "x", ("a",))
    with pytest.raises(ConfigError, match="cannot decrease"):
        counter.inc("v", amount=-1)
    with pytest.raises(ConfigError, match=r"expected label values for \['a'\]"):
        counter.inc("v", "w")
    with pytest.raises(ConfigError, match="registered twice"):
        registry.counter("x", "again")


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = MetricsRegistry()
    hist = registry.histogram("stage_latency", "Latency.", ("stage",), buckets=(0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 0.5, 3.0):
        hist.observe("inference", seconds=seconds)
    samples = parse_samples(registry.render())
    bucket = 'edge_ad_stage_latency_seconds_bucket{stage="inference",le="%s"}'
    assert [samples[bucket % le] for le in ("0.01", "0.1", "1", "+Inf")] == [2, 3, 4, 5]
    assert samples['edge_ad_stage_latency_seconds_count{stage="inference"}'] == 5
    assert samples['edge_ad_stage_latency_seconds_sum{stage="inference"}'] == pytest.approx(3.565)
    assert hist.count("inference") == 5
    assert hist.quantile(0.5, "inference") == 0.1  # third of five samples lies in (0.01, 0.1]
    assert hist.quantile(0.99, "inference") == float("inf")
    assert hist.quantile(0.5, "other") is None
    with pytest.raises(ConfigError, match="strictly increasing"):
        registry.histogram("bad", "b", buckets=(0.1, 0.01))


def test_line_metrics_families_and_unlabelled_counters_start_at_zero() -> None:
    metrics = LineMetrics(drop_reasons=("queue_full", "timeout"))
    metrics.verdicts.inc("fault_reject", "invalid_depth")
    samples = parse_samples(metrics.render())
    assert samples["edge_ad_frames_total"] == 0 and samples["edge_ad_parts_total"] == 0
    assert samples['edge_ad_drops_total{reason="queue_full"}'] == 0
    assert samples['edge_ad_verdicts_total{verdict="fault_reject",reason="invalid_depth"}'] == 1


def test_gauge_and_counter_can_read_a_source_at_scrape_time() -> None:
    registry = MetricsRegistry()
    state = {"written": 1}
    registry.counter("archive", "Archive events.", ("event",), source=lambda: {(k,): v for k, v in state.items()})
    registry.gauge("archive_bytes", "Bytes.", source=lambda: {(): 1.5})
    state["written"] = 7
    samples = parse_samples(registry.render())
    assert samples['edge_ad_archive_total{event="written"}'] == 7
    assert samples["edge_ad_archive_bytes"] == 1.5
    assert "# TYPE edge_ad_archive_bytes gauge" in registry.render()


def test_endpoint_serves_metrics_on_localhost_and_404_elsewhere() -> None:
    metrics = LineMetrics()
    metrics.parts.inc(amount=4)
    server = MetricsServer(metrics.render, port=0)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            body = response.read().decode()
        assert parse_samples(body)["edge_ad_parts_total"] == 4
        metrics.parts.inc()
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert parse_samples(response.read().decode())["edge_ad_parts_total"] == 5
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert info.value.code == 404
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_busy_port_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}"):
            MetricsServer(lambda: "", port=port)
    with pytest.raises(ConfigError, match="65535"):
        MetricsServer(lambda: "", port=70000)


# --- the Monitor facade ---------------------------------------------------------------------------


def test_monitor_counts_what_the_loop_reports_and_logs_each_fault_once(caplog: pytest.LogCaptureFixture) -> None:

    clock = FakeClock()
    monitor = Monitor(clock=clock)
    frame = make_box_frame()
    monitor.on_frame(frame, TruthObservation(frame, None, preprocess_ms=4.0))
    for _ in range(50):
        monitor.on_frame(frame, TruthObservation(frame, None, "invalid_depth", "only 3% valid", 1.0))
    monitor.on_drop("queue_full", 3)
    with caplog.at_level("INFO", logger="edge_ad"):
        for _ in range(10):
            monitor.on_fault("camera_stall", "no frame for 120 ms", serial="123")
        monitor.on_recovered("camera_stall")
    snapshot = monitor.metrics.registry.snapshot()
    assert snapshot["frames"] == 51 and snapshot["drops.queue_full"] == 3
    assert snapshot["faults.invalid_depth"] == 50 and snapshot["faults.camera_stall"] == 10
    assert snapshot["stage_latency.geometry_preprocess.count"] == 51
    messages = [r.getMessage() for r in caplog.records if "camera_stall" in r.getMessage()]
    assert messages == ["fault camera_stall: no frame for 120 ms", "fault camera_stall cleared after 10 occurrences"]
    assert monitor.status().health.value == "degraded"  # 50 unusable frames in a row


def test_monitor_archives_rejects_with_image_and_heatmap_not_accepts(tmp_path: Path) -> None:

    archive = RejectArchive(ArchiveConfig(tmp_path / "a", min_free_bytes=0)).start()
    clock = FakeClock()
    monitor = Monitor(archive=archive, clock=clock)
    reject_events(monitor, clock, 2, [np.zeros((16, 16, 3), np.uint8)])
    part = SimpleNamespace(part_id=9, first_frame=5, last_frame=8, best=None, frames=4, fault_frames=4,
                           exit_reason="left", capture_ns=0, truth=None)
    monitor.on_decision(fault(FaultReason.INVALID_DEPTH, "no usable frame"), part)  # a bare Decision: no inspection
    monitor.on_decision(Decision(Verdict.ACCEPT, "at_or_below_threshold", 0.1, 0.1), part)
    assert archive.wait_idle() and archive.close()
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names[:3] == ["00000000-reject-part0.heatmap.png", "00000000-reject-part0.json", "00000000-reject-part0.png"]
    assert names[-1] == "00000002-fault_reject-part9.json" and len(names) == 7  # the fault part has no image
    record = json.loads((tmp_path / "a" / names[-1]).read_text())
    assert (record["verdict"], record["reason"], record["detail"]) == ("fault_reject", "invalid_depth", "no usable frame")
    assert archive.counts()["sampled_out"] == 1
    assert monitor.metrics.verdicts.value("accept", "at_or_below_threshold") == 1


def test_monitor_open_serves_metrics_writes_json_logs_and_closes(tmp_path: Path) -> None:
    config = MonitorConfig(
        archive=ArchiveConfig(tmp_path / "archive", min_free_bytes=0), metrics_port=0,
        log=LogConfig(path=tmp_path / "logs" / "edge-ad.jsonl"),
    )
    monitor = Monitor.open(config)
    try:
        assert monitor.server is not None and monitor.server.host == "127.0.0.1"
        monitor.on_fault("camera_stall", "no frame", serial="123")
        with urllib.request.urlopen(monitor.server.url, timeout=5) as response:
            samples = parse_samples(response.read().decode())
        assert samples['edge_ad_faults_total{reason="camera_stall"}'] == 1
        assert samples['edge_ad_archive_total{event="written"}'] == 0 and samples["edge_ad_health"] == 0
        assert samples["edge_ad_log_dropped"] == 0
    finally:
        monitor.close()
    line = json.loads((tmp_path / "logs" / "edge-ad.jsonl").read_text().splitlines()[0])
    assert (line["fault"], line["serial"], line["level"]) == ("camera_stall", "123", "ERROR")
    assert logging.getLogger("edge_ad").handlers == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(monitor.server.url, timeout=2)
