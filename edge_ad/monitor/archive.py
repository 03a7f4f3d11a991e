"""Reject archive: image, heatmap and JSON of every reject (accepts sampled), off the loop, within disk caps.

The loop calls :meth:`RejectArchive.submit`, which never blocks: the item goes into a bounded queue
or, when that is full (the disk is slow), is dropped and counted. One worker thread encodes and
writes. Before each write it checks, in order: the entry fits ``max_bytes`` on its own; the disk
keeps ``min_free_bytes`` free after it (else archiving pauses, ``skipped_low_space`` is counted and
the status is DEGRADED until space returns); then it evicts the oldest entries (and any older than
``max_age_s``) so that bytes and files stay within the caps even while writing. Write failures,
ENOSPC included, are counted and never reach the loop. Inspection never waits for the archive.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from edge_ad._fields import check_range
from edge_ad.errors import ConfigError, EdgeAdError
from edge_ad.monitor.archive_store import ArchiveStore, WriteFile, write_file
from edge_ad.preprocess import resize_map

# Counter names (``archive.<name>`` in metrics).
ARCHIVE_EVENTS = (
    "submitted", "written", "dropped_queue_full", "skipped_low_space", "too_large", "write_errors",
    "encode_errors", "evicted", "evicted_age", "sampled_out",
)
# How often an idle worker wakes to apply the age cap.
_IDLE_WAKE_S = 1.0


class DiskUsage(NamedTuple):
    """What :func:`shutil.disk_usage` returns (tests inject a fake with the same fields)."""

    total: int
    used: int
    free: int


@dataclass(frozen=True)
class ArchiveConfig:
    """Where and how much to archive.

    ``accept_every``: archive one accept in N (0: none); rejects and fault-rejects are always
    archived. ``max_age_s`` None keeps entries until a size cap evicts them.
    """

    directory: Path
    max_bytes: int = 512 * 1024 * 1024
    max_files: int = 30_000
    max_age_s: float | None = 7 * 24 * 3600.0
    min_free_bytes: int = 1024 * 1024 * 1024
    queue_size: int = 8
    accept_every: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        check_range("archive", "max_bytes", self.max_bytes, low=0, low_open=True)
        check_range("archive", "max_files", self.max_files, low=3)  # one entry is up to 3 files
        check_range("archive", "min_free_bytes", self.min_free_bytes, low=0)
        check_range("archive", "queue_size", self.queue_size, low=1)
        check_range("archive", "accept_every", self.accept_every, low=0)
        if self.max_age_s is not None and not (math.isfinite(self.max_age_s) and self.max_age_s > 0):
            raise ConfigError(f"archive.max_age_s: must be > 0 (or null for no age cap), got {self.max_age_s!r}")


@dataclass(frozen=True, eq=False)
class ArchiveItem:
    """One event to archive: verdict, a JSON-safe record, the RGB image and the anomaly map (either may be None)."""

    verdict: str
    part_id: int
    record: Mapping[str, Any]
    image: np.ndarray | None = None
    heatmap: np.ndarray | None = None


def encode_item(item: ArchiveItem) -> dict[str, bytes]:
    """Files of an entry (suffix -> bytes): ``.png`` image, ``.heatmap.png`` (JET, min-max scaled) and ``.json``."""
    files: dict[str, bytes] = {}
    record = dict(item.record)
    if item.image is not None:
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(item.image), cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode image of shape {item.image.shape} as PNG")
        files[".png"] = png.tobytes()
    if item.heatmap is not None:
        heat = np.asarray(item.heatmap, dtype=np.float32)
        # The range of the model's own map (resizing smooths it) scales the colours and goes in the JSON.
        low, high = float(heat.min()), float(heat.max())
        if item.image is not None:
            heat = resize_map(heat, item.image.shape[:2])
        span = high - low if high > low else 1.0
        scaled = (np.clip((heat - low) / span, 0.0, 1.0) * 255).astype(np.uint8)
        ok, png = cv2.imencode(".png", cv2.applyColorMap(scaled, cv2.COLORMAP_JET))
        if not ok:
            raise ValueError(f"cannot encode heatmap of shape {heat.shape} as PNG")
        files[".heatmap.png"] = png.tobytes()
        record["heatmap_range"] = [low, high]
    files[".json"] = (json.dumps(record, default=str, sort_keys=True) + "\n").encode("utf-8")
    return files


class RejectArchive:
    """Bounded, asynchronous reject archive; see the module docstring.

    ``disk_usage`` (default :func:`shutil.disk_usage`), ``writer`` (writes one file) and ``now_s``
    (wall-clock seconds for the age cap; entries outlive the process, so a monotonic clock would
    not do) are injectable for tests.
    """

    def __init__(
        self,
        config: ArchiveConfig,
        *,
        disk_usage: Callable[[Path], Any] = shutil.disk_usage,
        writer: WriteFile = write_file,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._disk_usage = disk_usage
        self._now_s = now_s
        self.store = ArchiveStore(config.directory, writer)
        self._queue: queue.Queue[ArchiveItem | None] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({name: 0 for name in ARCHIVE_EVENTS})
        self._accepts_seen = 0
        self._low_space: str | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    # --- loop side (never blocks) ------------------------------------------------------------------

    def start(self) -> RejectArchive:
        """Index what is already archived and start the worker (ConfigError if the folder is unusable)."""
        if self._thread is None:
            self.store.open()
            self._thread = threading.Thread(target=self._work, name="edge-ad-archive", daemon=True)
            self._thread.start()
        return self

    def wants(self, verdict: str) -> bool:
        """Whether a part with ``verdict`` is archived (rejects always, accepts one in ``accept_every``)."""
        if verdict != "accept":
            return True
        with self._lock:
            self._accepts_seen += 1
            every = self.config.accept_every
            take = every > 0 and self._accepts_seen % every == 1 % every
            if not take:
                self._counts["sampled_out"] += 1
            return take

    def submit(self, item: ArchiveItem) -> bool:
        """Queue ``item`` for writing; False (counted ``dropped_queue_full``) when the queue is full. Never blocks."""
        self._count("submitted")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count("dropped_queue_full")
            return False
        return True

    def counts(self) -> dict[str, int]:
        """Event counters (see ARCHIVE_EVENTS)."""
        with self._lock:
            return dict(self._counts)

    def status(self) -> tuple[str, str]:
        """("ok", "") or ("degraded", why): archiving is paused for lack of free space."""
        with self._lock:
            return ("degraded", self._low_space) if self._low_space else ("ok", "")

    @property
    def queued(self) -> int:
        """Items waiting for the worker."""
        return self._queue.qsize()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is empty and the worker idle (for tests and shutdown); True if it got there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._busy and self._queue.empty()
            if idle:
                return True
            time.sleep(0.005)
        return False

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write what is queued (up to ``timeout_s``), then stop the worker; False if it did not finish in time."""
        thread = self._thread
        if thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return False
        thread.join(timeout_s)
        return not thread.is_alive()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    # --- worker side -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_WAKE_S)
            except queue.Empty:
                self._evict_aged()
                continue
            if item is None:
                return
            with self._lock:
                self._busy = True
            try:
                self._archive(item)
            finally:
                with self._lock:
                    self._busy = False

    def _archive(self, item: ArchiveItem) -> None:
        try:
            files = encode_item(item)
        except (cv2.error, ValueError, TypeError, EdgeAdError):
            self._count("encode_errors")
            return
        size = sum(len(data) for data in files.values())
        if size > self.config.max_bytes or len(files) > self.config.max_files:
            self._count("too_large")
            return
        if not self._enough_space(size):
            self._count("skipped_low_space")
            return
        self._evict_aged()
        store = self.store
        while store.bytes + size > self.config.max_bytes or store.files + len(files) > self.config.max_files:
            store.evict_oldest()
            self._count("evicted")
        try:
            store.add(f"{item.verdict}-part{item.part_id}", files, self._now_s())
        except OSError:
            self._count("write_errors")  # ENOSPC, EIO, permissions: counted, the loop never sees it
            return
        self._count("written")

    def _enough_space(self, size: int) -> bool:
        try:
            free = int(self._disk_usage(self.config.directory).free)
        except OSError as exc:
            reason = f"archive {self.config.directory}: cannot read free space: {exc}"
        else:
            if free - size >= self.config.min_free_bytes:
                with self._lock:
                    self._low_space = None
                return True
            reason = (
                f"archive paused: {free} bytes free on {self.config.directory}, "
                f"need {self.config.min_free_bytes} + {size} for the next entry"
            )
        with self._lock:
            self._low_space = reason
        return False

    def _evict_aged(self) -> None:
        if self.config.max_age_s is None:
            return
        cutoff = self._now_s() - self.config.max_age_s
        while (oldest := self.store.oldest()) is not None and oldest.created_s < cutoff:
            self.store.evict_oldest()
            self._count("evicted_age")
