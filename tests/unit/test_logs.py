"""JSON logs: one object per line, rotation that really rotates, a bounded queue that drops instead of
blocking, and faults logged once (then periodically) instead of once per frame."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge_ad.clock import FakeClock
from edge_ad.errors import ConfigError
from edge_ad.monitor.logs import FaultLog, JsonFormatter, LogConfig, LogPipeline
from tests.helpers.fault_frames import BlockingHandler


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_json_formatter_writes_one_object_with_context_and_traceback() -> None:
    logger = logging.getLogger("edge_ad.test.formatter")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "camera %s lost", ("123",), None,
                               extra={"serial": "123", "attempt": 2})
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert "\n" not in line
    assert (data["level"], data["logger"], data["msg"]) == ("ERROR", "edge_ad.test.formatter", "camera 123 lost")
    assert (data["serial"], data["attempt"]) == ("123", 2)
    assert data["ts"].endswith("Z") and data["ts"][:2] == "20"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in data["exc"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backup_count", 0, "logging.backup_count: must be >= 1.*never rotates"),
        ("max_bytes", 0, "logging.max_bytes: must be > 0"),
        ("queue_size", 0, "logging.queue_size: must be >= 1"),
        ("level", "LOUD", "logging.level: must be one of"),
    ],
)
def test_log_config_is_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LogConfig(**{field: value})  # type: ignore[arg-type]


def test_rotating_file_rotates_and_every_line_is_json(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "edge-ad.jsonl"
    pipeline = LogPipeline(LogConfig(path=path, max_bytes=2000, backup_count=2)).start()
    try:
        for i in range(100):
            logging.getLogger("edge_ad.test.rotate").info("line %d", i, extra={"i": i})
    finally:
        assert pipeline.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["edge-ad.jsonl", "edge-ad.jsonl.1", "edge-ad.jsonl.2"]  # capped at backup_count
    for file in path.parent.iterdir():
        assert file.stat().st_size <= 2000
        for line in file.read_text().splitlines():
            assert json.loads(line)["logger"] == "edge_ad.test.rotate"
    last = json.loads(path.read_text().splitlines()[-1])
    assert (last["msg"], last["i"]) == ("line 99", 99)


def test_a_stalled_handler_fills_the_queue_then_records_are_dropped_not_waited_for() -> None:
    stuck = BlockingHandler(max_block_s=10.0)
    pipeline = LogPipeline(LogConfig(queue_size=5), handlers=[stuck]).start()
    logger = logging.getLogger("edge_ad.test.stall")
    try:
        logger.warning("first")
        assert stuck.entered.wait(5.0)  # the writer thread is stuck on the first record
        for i in range(50):
            logger.warning("record %d", i)  # returns at once: put_nowait or drop
        assert pipeline.dropped == 45 and pipeline.queue.qsize() == 5
        assert not pipeline.close(timeout_s=0.2)  # shutdown is bounded even with the disk stuck
    finally:
        stuck.unblock()
    deadline = time.monotonic() + 5.0
    while len(stuck.lines) < 6 and time.monotonic() < deadline:  # the writer catches up once released
        time.sleep(0.01)
    assert [json.loads(line)["msg"] for line in stuck.lines] == ["first"] + [f"record {i}" for i in range(5)]
    assert logger.handlers == []


def test_fault_log_logs_once_then_a_count_per_interval_then_the_clearing() -> None:
    clock = FakeClock()
    handler = ListHandler()
    logger = logging.getLogger("edge_ad.test.faultlog")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    faults = FaultLog(logger, clock, repeat_every_s=10.0)
    try:
        logged = []
        for _ in range(400):  # 13 s of a fault on every 30 fps frame
            logged.append(faults.fault("invalid_depth", "only 3% valid", frame_number=5, message="ctx"))
            clock.advance_ms(33.4)
        assert logged[0] and sum(logged) == 2  # the first, then one summary after 10 s
        first, repeat = handler.records
        assert first.levelno == logging.ERROR and first.getMessage() == "fault invalid_depth: only 3% valid"
        assert (first.fault, first.frame_number, first.ctx_message) == ("invalid_depth", 5, "ctx")  # type: ignore[attr-defined]
        assert repeat.levelno == logging.WARNING and repeat.repeated == 300  # type: ignore[attr-defined]
        assert faults.active() == {"invalid_depth": 400}
        assert faults.clear("invalid_depth") and not faults.clear("invalid_depth")
        assert handler.records[-1].getMessage() == "fault invalid_depth cleared after 400 occurrences"
        assert faults.fault("invalid_depth", "again")  # a new episode logs again
    finally:
        logger.removeHandler(handler)
