"""Metrics: counters, fixed-bucket histograms, Prometheus text 0.0.4 and the /metrics endpoint on 127.0.0.1."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from edge_ad.errors import ConfigError
from edge_ad.monitor.metrics import CONTENT_TYPE, LineMetrics, MetricsRegistry
from edge_ad.monitor.metrics_http import MetricsServer


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
