"""F23: the disk stalls (archive writer and log file handler blocked) while the line keeps running.

Pass: every loop call returns while both writers are stuck (the loop never waits on the disk); the
bounded queues drop archive items and log records and count them; memory stays within the queue caps;
the loop's latency figures on the FakeClock equal those of a run with a healthy disk; after the stall
the queued items are written.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from edge_ad.clock import FakeClock
from edge_ad.monitor import ArchiveConfig, Monitor, RejectArchive
from edge_ad.monitor.logs import LogConfig, LogPipeline
from tests.helpers.fault_frames import BlockingHandler, BlockingWriter, reject_events, rss_bytes

EVENTS = 2000
ARCHIVE_QUEUE = 8
LOG_QUEUE = 100
IMAGE_BYTES = 256 * 1024


def test_f23_a_stalled_disk_never_blocks_the_loop_and_memory_stays_bounded(tmp_path: Path) -> None:
    writer = BlockingWriter(max_block_s=60.0)
    stuck_log = BlockingHandler(max_block_s=60.0)
    config = ArchiveConfig(tmp_path / "archive", queue_size=ARCHIVE_QUEUE, min_free_bytes=0)
    archive = RejectArchive(config, writer=writer).start()
    logs = LogPipeline(LogConfig(queue_size=LOG_QUEUE), handlers=[stuck_log]).start()
    clock = FakeClock()
    monitor = Monitor(archive=archive, clock=clock)
    logger = logging.getLogger("edge_ad.test.f23")
    try:
        # Wedge both writers on their first item, so everything after it meets a stuck disk.
        reject_events(monitor, clock, 1, [np.zeros((8, 8, 3), np.uint8)])
        logger.warning("first record")
        assert writer.entered.wait(10.0) and stuck_log.entered.wait(10.0)
        start_rss = rss_bytes()

        def loop() -> None:
            # A fresh 256 kB image per reject: kept alive only if something queues without bound.
            images = (np.full((256, 341, 3), i % 255, np.uint8) for i in range(EVENTS))
            for i in range(EVENTS):
                reject_events(monitor, clock, 1, [next(images)])
                monitor.on_fault("camera_stall", "no frame for 120 ms", frame=i)  # logged once, counted always
                logger.warning("frame %d inspected late", i)

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        worker.join(60.0)  # a guard against a deadlock, not a timing assertion
        assert not worker.is_alive(), "the loop blocked on a stalled disk"
        assert not writer.writes  # the disk really was stuck the whole time
        grown = rss_bytes() - start_rss

        counts = archive.counts()
        assert counts["dropped_queue_full"] == EVENTS - ARCHIVE_QUEUE and archive.queued == ARCHIVE_QUEUE
        # First record in the stuck handler, 100 queued; the rest dropped: 2000 warnings plus the stall's two
        # lines (its first occurrence, and one "repeated" summary after 60 s of the 67 s of FakeClock time).
        assert logs.dropped == EVENTS + 2 - LOG_QUEUE and logs.queue.qsize() == LOG_QUEUE
        assert monitor.metrics.faults.value("camera_stall") == EVENTS
        # Unbounded queues would hold 2000 x 256 kB = 500 MB; the caps hold 8 images.
        assert grown < 64 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
    finally:
        writer.unblock()
        stuck_log.unblock()
        idle = archive.wait_idle(30.0)
        monitor.close()
        flushed = logs.close(10.0)
    assert idle and flushed
    assert archive.counts()["written"] == 1 + ARCHIVE_QUEUE
    assert len(stuck_log.lines) == 1 + LOG_QUEUE

    # Same loop with a healthy disk: identical latency histograms and counts.
    control_clock = FakeClock()
    control = Monitor(clock=control_clock)
    reject_events(control, control_clock, EVENTS + 1, [np.zeros((8, 8, 3), np.uint8)])
    stalled = monitor.metrics.latency
    for stage in ("end_to_end", "inference", "scoring"):
        assert stalled.count(stage) == control.metrics.latency.count(stage) == EVENTS + 1
        assert stalled.quantile(0.99, stage) == control.metrics.latency.quantile(0.99, stage)
