"""Reject timing: the delay from capture to the reject pulse, from belt speed (or encoder) and distance.

The part travels ``distance_mm`` from the camera's view to the gate; at ``belt_speed_mps`` that
takes ``distance / speed`` seconds, and the pulse must start ``actuator_lead_ms`` earlier so the
actuator is moving when the part arrives. With an encoder the delay is counted in encoder counts
instead (``distance * counts_per_mm``, the lead converted at the belt speed), which stays right
when the belt speeds up or stops. Either way the pulse must not start before the runtime can have
decided (the latency budget, :func:`edge_ad.config.check_reject_latency`).

Test fire pulses the reject output a few times so an operator can watch (or listen to) the
actuator; the ``sim`` output records the timeline instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_ad.clock import Clock
from edge_ad.config import StationConfig, check_reject_latency
from edge_ad.config_line import RejectConfig
from edge_ad.config_schema import CameraConfig, DecisionConfig
from edge_ad.errors import ConfigError
from edge_ad.line.outputs import DigitalOutput
from edge_ad.part_tracker import TrackerConfig


@dataclass(frozen=True)
class RejectDelay:
    """The computed timing and the station keys that hold it.

    ``fire_delay_s``: capture to pulse start at the given belt speed; ``delay_counts``: the same in
    encoder counts (encoder mode); ``latency_s``: the decision latency it was checked against.
    """

    reject: RejectConfig
    fire_delay_s: float
    delay_counts: int | None
    latency_s: float

    @property
    def margin_s(self) -> float:
        """Time between the latest decision and the pulse start."""
        return self.fire_delay_s - self.latency_s

    def station_updates(self) -> dict[str, Any]:
        """``reject.*`` keys for :func:`edge_ad.config.update_station_file` (None clears a key of the other mode)."""
        r = self.reject
        return {
            "reject.mode": r.mode,
            "reject.delay_s": None,
            "reject.delay_mm": r.delay_mm,
            "reject.distance_mm": r.distance_mm,
            "reject.counts_per_mm": r.counts_per_mm,
            "reject.belt_speed_mps": r.belt_speed_mps,
            "reject.actuator_lead_ms": r.actuator_lead_ms,
            "reject.pulse_ms": r.pulse_ms,
        }


def default_latency_s() -> float:
    """Decision latency of a station with default tracker, camera and budget (when no station is given)."""
    return TrackerConfig().leave_frames / CameraConfig().fps + DecisionConfig().latency_budget_ms / 1000.0


def compute_reject_delay(
    belt_speed_mps: float,
    distance_mm: float,
    *,
    counts_per_mm: float | None = None,
    actuator_lead_ms: float = 0.0,
    pulse_ms: float | None = None,
    station: StationConfig | None = None,
) -> RejectDelay:
    """Delay for a gate ``distance_mm`` downstream at ``belt_speed_mps``, checked against the latency budget.

    With ``counts_per_mm`` the timing is in encoder counts (``belt_speed_mps`` is then the
    fastest speed, used for the lead and the check). ``station`` supplies the latency budget
    (tracker leave frames at the camera rate plus ``decision.latency_budget_ms``), and its
    polarity and tolerance are kept; without one the defaults are used. ConfigError when the
    values are out of range or the pulse would start before a decision can exist. ``pulse_ms``
    defaults to the station's (50 ms without one).
    """
    base = station.reject if station is not None else RejectConfig(delay_s=1.0)
    if counts_per_mm is None:
        fields = {"mode": "time", "delay_mm": distance_mm, "distance_mm": None, "counts_per_mm": None}
    else:
        fields = {"mode": "encoder", "delay_mm": None, "distance_mm": distance_mm, "counts_per_mm": counts_per_mm}
    reject = RejectConfig(
        **fields,
        delay_s=None,
        belt_speed_mps=belt_speed_mps,
        pulse_ms=pulse_ms if pulse_ms is not None else base.pulse_ms,
        actuator_lead_ms=actuator_lead_ms,
        late_tolerance_ms=base.late_tolerance_ms,
        polarity=base.polarity,
    )
    reject.validate("reject")
    if station is not None:
        latency = station.decision_latency_s()
        budget = "the station's tracker leave frames at its camera rate plus decision.latency_budget_ms"
    else:
        latency = default_latency_s()
        budget = "default tracker, camera rate and decision.latency_budget_ms; pass --station for yours"
    check_reject_latency(reject, latency, budget)
    fire = reject.fire_delay_s()
    if fire is None:  # unreachable: a belt speed is always given here
        raise ConfigError("reject: the delay needs a belt speed")
    counts = reject.delay_counts() if reject.mode == "encoder" else None
    return RejectDelay(reject, fire, counts, latency)


def fire_test_pulses(
    output: DigitalOutput,
    clock: Clock,
    sleep: Callable[[float], None],
    *,
    pulses: int = 3,
    pulse_s: float = 0.05,
    period_s: float = 0.5,
) -> list[tuple[int, int]]:
    """Drive ``output`` high for ``pulse_s``, ``pulses`` times, one every ``period_s``; returns (rise, fall) ns.

    Level True energises the actuator (:mod:`edge_ad.line.outputs`). The output is closed (back
    at its safe level) at the end, also when interrupted.
    """
    if pulses < 1 or not 0 < pulse_s < period_s:
        raise ConfigError(f"test fire: need pulses >= 1 and 0 < pulse ({pulse_s} s) < period ({period_s} s)")
    edges: list[tuple[int, int]] = []
    try:
        for index in range(pulses):
            rise = clock.now_ns()
            output.set(True, rise)
            sleep(pulse_s)
            fall = clock.now_ns()
            output.set(False, fall)
            edges.append((rise, fall))
            if index + 1 < pulses:
                sleep(period_s - pulse_s)
    finally:
        output.close()
    return edges
