"""Hardware trigger -> reject slots: every trigger edge is a part that gets exactly one decision.

With a trigger input (a light barrier before the camera, or an encoder-derived trigger) the line's parts
are the triggers, not what the camera happens to track. Each edge takes a reject slot at once (keyed by
trigger id, timed from the edge: its clock time, or the encoder count when it was polled), so the
scheduler fires FAULT_REJECT at the slot's deadline unless a decision arrives in time.

Parts the camera tracks are matched to pending triggers in FIFO order: a part whose first frame arrived
within ``[trigger + min_s, trigger + max_s]`` takes the oldest such trigger, and its decision goes to that
trigger's slot. A trigger whose window has passed with no part matched (the part went by inside a frame
gap, or the camera missed it) is *unseen*: FAULT_REJECT. A tracked part that matches no trigger (dirt, a
hand) is a *phantom*: logged and counted, and given no slot of its own. The window must be narrower than
the pitch between parts, or FIFO order cannot tell two parts apart.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from edge_ad.errors import ConfigError
from edge_ad.line.inputs import DigitalInput
from edge_ad.line.reject import RejectScheduler

__all__ = ["Trigger", "TriggerMatcher", "TriggerWindow"]


@dataclass(frozen=True)
class TriggerWindow:
    """When, after its trigger edge, a part's first frame may arrive (seconds; the barrier is before the camera)."""

    min_s: float = 0.0
    max_s: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_s) and math.isfinite(self.max_s) and 0 <= self.min_s < self.max_s):
            raise ConfigError(
                f"trigger window: need 0 <= min_s < max_s (finite seconds), got min_s={self.min_s}, max_s={self.max_s}"
            )


@dataclass
class Trigger:
    """One trigger edge: its id (= its reject slot), clock time, slot position and the tracked part it got."""

    trigger_id: int
    t_ns: int
    position: int
    part_id: int | None = None


class TriggerMatcher:
    """Trigger edges -> reserved slots, and tracked parts -> triggers (thread-safe); see the module docstring.

    :meth:`poll` runs on the actuator thread (slots are taken promptly), matching on the inspection thread.
    """

    def __init__(self, trigger: DigitalInput, scheduler: RejectScheduler, window: TriggerWindow) -> None:
        self.input, self.scheduler, self.window = trigger, scheduler, window
        self._lock = threading.Lock()
        self._pending: deque[Trigger] = deque()  # unmatched, oldest first
        self._by_part: dict[int, Trigger] = {}
        self._next_id = 0
        self.triggers = self.matched = self.unseen = self.phantoms = 0
        self._min_ns, self._max_ns = round(window.min_s * 1e9), round(window.max_s * 1e9)

    def poll(self) -> list[Trigger]:
        """Take the edges seen since the last call and reserve a slot for each; returns the new triggers."""
        with self._lock:
            new: list[Trigger] = []
            for t_ns in self.input.events():
                # Encoder mode keys the slot to belt travel: the count now, within one actuator tick of the edge.
                position = t_ns if self.scheduler.encoder is None else self.scheduler.position()
                trigger = Trigger(self._next_id, t_ns, position)
                self._next_id += 1
                self.scheduler.reserve(trigger.trigger_id, position)
                self._pending.append(trigger)
                new.append(trigger)
            self.triggers += len(new)
            return new

    def match(self, part_id: int, first_arrival_ns: int) -> Trigger | None:
        """The oldest pending trigger whose window holds ``first_arrival_ns``, now ``part_id``'s; None if none does.

        A part already matched gets its trigger again (matching is idempotent per part).
        """
        self.poll()  # an edge not yet taken by the actuator thread may be this part's
        with self._lock:
            if part_id in self._by_part:
                return self._by_part[part_id]
            for trigger in self._pending:
                if trigger.t_ns + self._min_ns <= first_arrival_ns <= trigger.t_ns + self._max_ns:
                    self._pending.remove(trigger)
                    trigger.part_id = part_id
                    self._by_part[part_id] = trigger
                    self.matched += 1
                    return trigger
            return None

    def forget(self, part_id: int) -> None:
        """Drop the part -> trigger link once the part is decided (a line runs for weeks)."""
        with self._lock:
            self._by_part.pop(part_id, None)

    def phantom(self) -> None:
        """Count a tracked part that matched no trigger."""
        with self._lock:
            self.phantoms += 1

    def expire(self, seen_from_ns: int | None) -> list[Trigger]:
        """Pending triggers no part can match any more: window ended before ``seen_from_ns`` (None: all of them).

        ``seen_from_ns`` is the earliest arrival a part not yet opened can still have as its first frame.
        The triggers returned are unseen (counted) and leave the pending list, oldest first.
        """
        with self._lock:
            gone: list[Trigger] = []
            while self._pending and (seen_from_ns is None or self._pending[0].t_ns + self._max_ns < seen_from_ns):
                gone.append(self._pending.popleft())
            # Windows can differ in end only by trigger time, so the pending list is ordered by window end too.
            self.unseen += len(gone)
            return gone

    def counts(self) -> dict[str, int]:
        """Triggers, matched, unseen triggers and phantom parts so far (for the run summary)."""
        with self._lock:
            return {"triggers": self.triggers, "trigger_matched": self.matched, "unseen_trigger": self.unseen,
                    "phantom_part": self.phantoms}
