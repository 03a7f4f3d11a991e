"""Settings of the reject gate: wiring polarity, time-mode timing and encoder-mode timing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from edge_ad.errors import ConfigError


class Polarity(str, Enum):
    """What the energised output means (see the module docstring; ``energize_to_accept`` is fail-safe)."""

    ENERGIZE_TO_REJECT = "energize_to_reject"
    ENERGIZE_TO_ACCEPT = "energize_to_accept"


@dataclass(frozen=True)
class RejectTiming:
    """``delay_s``: trigger -> part at the actuator; ``pulse_s``: window width; ``actuator_lead_s``: how
    much earlier than the part's arrival the actuator must be driven (its response time).

    A window opened more than ``late_tolerance_s`` after it was due counts as late. The delay must exceed
    the decision latency (a part is decided once it has left the view): the 1.5 s default covers the
    synthetic line's default speed.
    """

    delay_s: float = 1.5
    pulse_s: float = 0.05
    late_tolerance_s: float = 0.005
    actuator_lead_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ConfigError(f"reject.delay_s: must be a finite number >= 0, got {self.delay_s}")
        if not (math.isfinite(self.pulse_s) and self.pulse_s > 0):
            raise ConfigError(f"reject.pulse_s: must be > 0, got {self.pulse_s}")
        if not (math.isfinite(self.late_tolerance_s) and self.late_tolerance_s >= 0):
            raise ConfigError(f"reject.late_tolerance_s: must be a finite number >= 0, got {self.late_tolerance_s}")
        if not (math.isfinite(self.actuator_lead_s) and 0 <= self.actuator_lead_s <= self.delay_s):
            raise ConfigError(
                f"reject.actuator_lead_s: must be within [0, delay_s={self.delay_s}], got {self.actuator_lead_s}"
            )


@dataclass(frozen=True)
class EncoderTiming:
    """Encoder mode: slot due at trigger count + ``offset_counts`` - ``actuator_lead_counts``.

    A belt stopped for more than ``max_hold_s`` with slots waiting applies ``stop_policy``: ``fault``
    (undecided slots become FAULT_REJECT and :attr:`RejectScheduler.belt_stop_exceeded` is raised for the
    supervisor) or ``hold`` (keep waiting; counted).
    """

    offset_counts: int
    actuator_lead_counts: int = 0
    late_tolerance_counts: int = 1
    max_hold_s: float = 10.0
    stop_policy: str = "fault"

    def __post_init__(self) -> None:
        if self.offset_counts < 0 or not 0 <= self.actuator_lead_counts <= self.offset_counts:
            raise ConfigError(
                f"encoder: need offset_counts >= actuator_lead_counts >= 0, got {self.offset_counts} / "
                f"{self.actuator_lead_counts}"
            )
        if self.stop_policy not in ("fault", "hold"):
            raise ConfigError(f"encoder.stop_policy: must be 'fault' or 'hold', got {self.stop_policy!r}")
        if not self.max_hold_s > 0:
            raise ConfigError(f"encoder.max_hold_s: must be > 0, got {self.max_hold_s}")
