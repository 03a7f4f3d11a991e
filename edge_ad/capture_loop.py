"""The capture side of the runtime loop: read the source, account every lost frame, report to the supervisor.

One :meth:`CaptureLoop.step` reads once: a frame goes to the bounded queue (its encoder count noted
for the reject slots), a timeout is counted and reported, a disconnect is reported and backed off
(capped, through the supervisor's backoff), and the first frame after a reconnect must come with
the profile the run started with (re-verified; a different one is a fatal CameraError). The runtime's
capture thread calls ``step`` in a loop; a test on a FakeClock calls it directly.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from edge_ad.errors import CameraDisconnected, CameraError
from edge_ad.frame_queue import FrameQueue
from edge_ad.line.encoder import EncoderInput
from edge_ad.run_summary import RunRecorder
from edge_ad.sources.base import FrameSource, SourceExhausted, SourceInfo
from edge_ad.supervisor import Supervisor

# Frame number -> encoder count at arrival, kept for the frames a part can still be opened on.
_COUNTS_KEPT = 512


# Frame counters wrap at 2**32 (the reliability plan's rollover case).
COUNTER_MODULUS = 2**32
# A frame this many numbers behind the last one is a late repeat; further back, the counter restarted.
STALE_WINDOW = 1024


def frame_step(last: int, number: int) -> int:
    """Frames advanced from ``last`` to ``number``: 1 next, >1 after a gap, 0 a repeat, <0 a late older frame.

    The counter wraps at 2**32 (a wrap is not a gap). A jump back by more than STALE_WINDOW is a
    counter restart (camera reset or reconnect) and counts as the next frame, not as a gap.
    """
    delta = (number - last) % COUNTER_MODULUS
    if delta <= COUNTER_MODULUS // 2:
        return delta
    back = COUNTER_MODULUS - delta
    return -back if back <= STALE_WINDOW else 1


class CaptureLoop:
    """Reads ``source`` into ``queue``; ``wait(seconds)`` backs off (interruptible, or a FakeClock advance)."""

    def __init__(
        self,
        source: FrameSource,
        queue: FrameQueue,
        recorder: RunRecorder,
        supervisor: Supervisor,
        read_timeout_s: float,
        wait: Callable[[float], object],
        encoder: EncoderInput | None = None,
    ) -> None:
        self.source, self.queue, self.recorder = source, queue, recorder
        self.supervisor, self.read_timeout_s, self.wait = supervisor, read_timeout_s, wait
        self.encoder = encoder
        self.error: CameraError | None = None
        self.finished = False
        self.profile: SourceInfo = source.info()
        self._last_number: int | None = None
        self._reconnecting = False
        self._counts: collections.OrderedDict[int, int] = collections.OrderedDict()

    def count_at(self, frame_number: int) -> int | None:
        """The encoder count noted when ``frame_number`` arrived (None without an encoder or when forgotten)."""
        return self._counts.get(frame_number)

    def step(self) -> bool:
        """Read once; False once the source is exhausted or failed for good (``error`` set)."""
        if self.finished:
            return False
        try:
            frame = self.source.read(self.read_timeout_s)
        except SourceExhausted:
            self.finished = True
            return False
        except CameraDisconnected as exc:
            # The camera may come back: count it, go safe (supervisor), back off (capped) and retry.
            self.recorder.drop("camera_error")
            self._reconnecting = True
            self.wait(self.supervisor.camera_lost(str(exc)))
            return True
        except CameraError as exc:
            self.error, self.finished = exc, True
            return False
        if frame is None:
            self.recorder.drop("timeout")
            self.supervisor.capture_timeout()
            return True
        if self._reconnecting and not self._profile_still_matches():
            return False
        if self.encoder is not None:
            self._counts[frame.frame_number] = self.encoder.count()
            while len(self._counts) > _COUNTS_KEPT:
                self._counts.popitem(last=False)
        self.supervisor.frame_arrived()
        if self._last_number is not None:
            step = frame_step(self._last_number, frame.frame_number)
            if step <= 0:  # the same frame again, or an older one delivered late: never inspected twice
                self.recorder.drop("duplicate")
                return True
            if step > 1:
                self.recorder.drop("gap", step - 1)
        self._last_number = frame.frame_number
        self.recorder.captured()
        if self.queue.put(frame) is not None:
            self.recorder.drop("queue_full")
        return True

    def _profile_still_matches(self) -> bool:
        self._reconnecting = False
        now = self.source.info()
        before = self.profile
        if (now.width, now.height, now.fps) != (before.width, before.height, before.fps):
            self.error = CameraError(
                f"{before.name}: after reconnect the camera streams {now.width}x{now.height}@{now.fps:g}, "
                f"the run started with {before.width}x{before.height}@{before.fps:g}"
            )
            self.finished = True
            return False
        self.supervisor.mark_verified("camera")
        return True
