"""F22: the disk is nearly full (a 20 MB disk emulated through the archive's injectable ``disk_usage``;
archive cap 15 MB, free-space floor 4 MB, 10 000 reject events).

Pass: the archive stays within its cap, oldest evicted first; while free space is under the floor
archiving pauses (``archive.skipped_low_space``) and the status is DEGRADED, then recovers; a write
that hits ENOSPC anyway is counted, never raised into the loop; the loop's latency figures on the
FakeClock are identical to a run without archive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.clock import FakeClock
from edge_ad.monitor import ArchiveConfig, Health, Monitor, RejectArchive
from edge_ad.monitor.archive import DiskUsage
from tests.helpers.fault_frames import FakeDisk, directory_bytes, reject_events

MB = 1_000_000
EVENTS = 10_000

pytestmark = pytest.mark.slow


def test_f22_archive_on_a_nearly_full_disk(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8) for _ in range(16)]  # ~12 kB PNG each
    disk = FakeDisk(total=20 * MB, other=int(0.5 * MB))
    racing = [False]  # another process fills the disk between the free-space check and the write

    def usage(path: Path) -> DiskUsage:
        return DiskUsage(disk.total, 0, disk.total) if racing[0] else disk.usage(path)

    config = ArchiveConfig(tmp_path / "archive", max_bytes=15 * MB, min_free_bytes=4 * MB, queue_size=64, max_age_s=None)
    archive = RejectArchive(config, disk_usage=usage, writer=disk.write).start()
    disk.archived = lambda: archive.store.bytes
    clock = FakeClock()
    monitor = Monitor(archive=archive, clock=clock)
    peak = [0]
    seen: dict[str, object] = {}

    def before(i: int) -> None:
        if archive.queued >= 48:  # let the writer keep up, so events are archived rather than dropped
            assert archive.wait_idle(30.0)
        if i % 500 == 0:
            assert archive.wait_idle(30.0)
            on_disk, _files = directory_bytes(config.directory)
            peak[0] = max(peak[0], on_disk)
            assert on_disk <= config.max_bytes
        if i == 2500:  # someone else fills 3 MB: free space drops under the floor
            assert archive.wait_idle(30.0)
            disk.other += 3 * MB
        if i == 8000:
            assert archive.wait_idle(30.0)
            seen["low"] = monitor.status()
            seen["counts_low"] = archive.counts()
            disk.other -= 3 * MB
        if i == 8010:
            assert archive.wait_idle(30.0)
            seen["recovered"] = monitor.status()
            disk.other = disk.total  # the disk fills up completely ...
            racing[0] = True  # ... but the free-space reading is stale
        if i == 8100:
            assert archive.wait_idle(30.0)
            disk.other, racing[0] = int(0.5 * MB), False

    reject_events(monitor, clock, EVENTS, images, before)
    assert archive.wait_idle(30.0)
    monitor.close()
    counts = archive.counts()
    on_disk, files = directory_bytes(config.directory)

    # Caps: never above 15 MB; oldest evicted first (what is left is one contiguous run of the newest).
    assert peak[0] <= config.max_bytes and on_disk <= config.max_bytes
    assert on_disk == archive.store.bytes and files == archive.store.files
    assert peak[0] > 14 * MB  # the cap, not the floor, limited the archive in the first phase
    seqs = sorted({int(p.name[:8]) for p in config.directory.iterdir()})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[-1] == counts["written"] + counts["write_errors"] - 1
    assert counts["evicted"] > 0

    # Low space: paused, counted, DEGRADED; then back to OK once space returned.
    low = seen["low"]
    assert low.health is Health.DEGRADED and "archive paused" in low.reasons[0]  # type: ignore[attr-defined]
    assert seen["counts_low"]["skipped_low_space"] == 8000 - 2500  # type: ignore[index]
    assert seen["recovered"].health is Health.OK  # type: ignore[attr-defined]

    # ENOSPC on write (stale free-space reading): counted, never raised into the loop.
    assert counts["write_errors"] >= 90 and disk.enospc == counts["write_errors"]
    assert counts["submitted"] == EVENTS
    assert counts["written"] + counts["skipped_low_space"] + counts["write_errors"] + counts["dropped_queue_full"] == EVENTS
    assert not list(config.directory.glob("*.tmp"))

    # The loop's own figures do not depend on the archive: same end-to-end histogram as without one.
    control_clock = FakeClock()
    control = Monitor(clock=control_clock)
    reject_events(control, control_clock, EVENTS, images)
    assert monitor.metrics.render().split("# HELP edge_ad_health")[0] == control.metrics.render().split("# HELP edge_ad_health")[0]
    assert monitor.metrics.parts.value() == EVENTS
