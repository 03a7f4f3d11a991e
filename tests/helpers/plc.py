"""A PLC stand-in for fault tests: heartbeat edge watchdog, InspectWindow and what the gate did to a part.

It reads output timelines (``SimOutput.timeline`` or :class:`tests.helpers.faults.MockGpio` edges) the
way a PLC scans its inputs: a heartbeat is alive while it keeps *changing* (a static level, high or
low, is a dead sender), and a part is diverted according to the gate's wiring polarity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PlcSimulator:
    """``hb_timeout_ns``: the PLC's heartbeat timer (set slightly longer than the sender's period, e.g. 3x)."""

    hb_timeout_ns: int
    inspect_window_ns: int | None = None

    def heartbeat_fault_at(self, edges: list[tuple[int, bool]], since_ns: int, until_ns: int) -> int | None:
        """When the heartbeat watchdog trips between ``since_ns`` and ``until_ns`` (None: it never does)."""
        last = since_ns
        for t_ns, _level in edges:
            if t_ns < since_ns:
                continue
            if t_ns > until_ns:
                break
            if t_ns - last > self.hb_timeout_ns:
                return last + self.hb_timeout_ns
            last = t_ns
        return last + self.hb_timeout_ns if until_ns - last > self.hb_timeout_ns else None

    @staticmethod
    def diverted(edges: list[tuple[int, bool]], window: tuple[int, int], polarity: str) -> bool:
        """Did the gate divert a part passing during ``window``? (energize_to_accept: unless ON the whole window)."""
        start, end = window
        level = False
        levels: list[bool] = []
        for t_ns, value in edges:
            if t_ns <= start:
                level = value
            elif t_ns < end:
                levels.append(value)
        levels.insert(0, level)
        if polarity == "energize_to_accept":
            return not all(levels)
        return any(levels)

    def results_in_window(self, trigger_ns: list[int], result_ns: list[int | None]) -> list[bool]:
        """Per part: did its result arrive within the InspectWindow after its trigger? (None: never)."""
        if self.inspect_window_ns is None:
            raise ValueError("PlcSimulator.inspect_window_ns is not set")
        return [r is not None and r - t <= self.inspect_window_ns for t, r in zip(trigger_ns, result_ns, strict=True)]
