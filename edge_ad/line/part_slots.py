"""Reject slots for tracked parts: reserved when a part enters the view, decided when it leaves.

The tracker numbers parts 0, 1, 2 ... in the order they open; this keeps the same numbering to take
each part's slot at its *trigger* (the frame on which it was seen entering, or that frame's encoder
count), long before its decision. With ``enforce`` off (replay as fast as possible: no real belt,
no deadline) a slot is made together with its decision, timed from the part's capture as before.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_ad.decision import Decision
from edge_ad.frame import Frame
from edge_ad.line.reject import RejectScheduler
from edge_ad.part_tracker import TrackedPart


class PartSlots:
    """Bookkeeping between :class:`~edge_ad.part_tracker.PartTracker` and :class:`RejectScheduler`."""

    def __init__(
        self, scheduler: RejectScheduler, enforce: bool, count_at: Callable[[int], int | None] | None = None
    ) -> None:
        self.scheduler = scheduler
        self.enforce = enforce
        self.count_at = count_at
        self._open: int | None = None
        self._next = 0

    def _trigger(self, frame_number: int, arrival_ns: int) -> int:
        if self.scheduler.encoder is None:
            return arrival_ns
        count = self.count_at(frame_number) if self.count_at is not None else None
        return count if count is not None else self.scheduler.position()

    def after_update(self, in_part: bool, frame: Frame | None, closed: list[TrackedPart]) -> None:
        """Reserve slots for parts that opened with this frame (call after every tracker update/flush)."""
        if not self.enforce:
            return
        for part in closed:
            self.scheduler.reserve(part.part_id, self._trigger(part.first_frame, part.first_arrival_ns))
            if self._open == part.part_id:
                self._open = None
            self._next = max(self._next, part.part_id + 1)
        if in_part and self._open is None and frame is not None:
            self._open, self._next = self._next, self._next + 1
            self.scheduler.reserve(self._open, self._trigger(frame.frame_number, frame.arrival_ns))

    def already_faulted(self, part: TrackedPart) -> Decision | None:
        """The FAULT_REJECT a part's slot got at its deadline, if it did (no point scoring it then)."""
        if not self.enforce:
            return None
        decision = self.scheduler.slot_decision(part.part_id)
        return decision if decision is not None and decision.is_fault else None

    def decide(self, part: TrackedPart, decision: Decision) -> Decision:
        """Apply ``decision`` to the part's own slot; returns what the gate will do (a late one: FAULT_REJECT)."""
        if not self.enforce:
            self.scheduler.schedule(part.part_id, part.capture_ns, decision)
            return decision
        self.scheduler.reserve(part.part_id, self._trigger(part.first_frame, part.first_arrival_ns))
        if self.scheduler.decide(part.part_id, decision):
            return decision
        faulted = self.already_faulted(part)
        return faulted if faulted is not None else decision
