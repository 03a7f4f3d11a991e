"""The bounded frame queue between capture and inspection: drop-oldest, or lossless (blocking)."""

from __future__ import annotations

import collections
import threading

from edge_ad.errors import ConfigError
from edge_ad.frame import Frame


class FrameQueue:
    """Bounded FIFO between capture and inspection: drop-oldest when full, or block when ``lossless``.

    :meth:`close` wakes both sides; the reader then drains what is left and gets :data:`END`.
    """

    END = object()

    def __init__(self, maxsize: int, lossless: bool = False) -> None:
        if maxsize < 1:
            raise ConfigError(f"frame queue: maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.lossless = lossless
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, frame: Frame, timeout_s: float | None = None) -> Frame | None:
        """Enqueue ``frame``; returns the frame dropped to make room (None if none was).

        In lossless mode the call waits for room (up to ``timeout_s``, None = until :meth:`close`;
        past it the oldest is dropped after all).
        """
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: len(self._items) < self.maxsize or self._closed, timeout_s)
            dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
            self._items.append(frame)
            self._cond.notify_all()
            return dropped

    def get(self, timeout_s: float) -> Frame | object | None:
        """The oldest frame, :data:`END` once closed and empty, or None after ``timeout_s`` with nothing queued."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout_s)
            if self._items:
                frame = self._items.popleft()
                self._cond.notify_all()
                return frame
            return FrameQueue.END if self._closed else None

    def close(self) -> None:
        """No more frames will come."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard what is queued; returns how many frames that was."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return count

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
