"""The line side of a station file: ``reject`` (when and how long the actuator fires) and ``outputs``.

Part of the station schema (:mod:`edge_ad.config_schema` has the other sections); every
``validate(path)`` raises ConfigError ``<section>.<key>: <reason>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_ad._fields import check_range
from edge_ad.config_schema import positive
from edge_ad.errors import ConfigError
from edge_ad.line.reject import RejectTiming
from edge_ad.typed_data import join_path

# Jetson.GPIO BOARD numbering: the 40-pin header.
JETSON_BOARD_PINS = (1, 40)


@dataclass(frozen=True)
class RejectConfig:
    """``reject``: when and how long the reject actuator fires.

    mode ``time``: ``delay_s``, or ``delay_mm`` (camera view to gate) with ``belt_speed_mps``.
    mode ``encoder``: ``distance_mm`` with ``counts_per_mm`` (``belt_speed_mps``, the fastest
    belt speed, is then optional: it converts ``actuator_lead_ms`` and checks the latency budget).
    ``actuator_lead_ms``: the actuator's response time; the pulse starts that much earlier.
    ``polarity``: ``energize_to_accept`` is positive release (a dead controller rejects everything).
    """

    mode: Literal["time", "encoder"] = "time"
    delay_s: float | None = None
    delay_mm: float | None = None
    belt_speed_mps: float | None = None
    counts_per_mm: float | None = None
    distance_mm: float | None = None
    pulse_ms: float = 50.0
    actuator_lead_ms: float = 0.0
    late_tolerance_ms: float = 5.0
    polarity: Literal["energize_to_reject", "energize_to_accept"] = "energize_to_reject"

    def validate(self, path: str) -> None:
        """Positive lengths and times; exactly the keys the mode uses; the lead fits inside the delay."""
        for name in ("delay_s", "delay_mm", "belt_speed_mps", "counts_per_mm", "distance_mm", "pulse_ms"):
            positive(path, name, getattr(self, name))
        check_range(path, "actuator_lead_ms", self.actuator_lead_ms, low=0.0)
        check_range(path, "late_tolerance_ms", self.late_tolerance_ms, low=0.0)
        if self.mode == "time":
            self._forbid(path, ("counts_per_mm", "distance_mm"))
            if (self.delay_s is None) == (self.delay_mm is None):
                problem = "both are set" if self.delay_s is not None else "neither is set"
                raise ConfigError(
                    f"{join_path(path, 'delay_s')}: mode 'time' needs delay_s, or delay_mm with belt_speed_mps "
                    f"({problem}; `edge-ad calibrate reject-timing` computes them)"
                )
            if self.delay_mm is not None and self.belt_speed_mps is None:
                raise ConfigError(f"{join_path(path, 'belt_speed_mps')}: delay_mm needs the belt speed")
        else:
            self._forbid(path, ("delay_s", "delay_mm"))
            for name in ("counts_per_mm", "distance_mm"):
                if getattr(self, name) is None:
                    raise ConfigError(f"{join_path(path, name)}: mode 'encoder' needs counts_per_mm and distance_mm")
            if self.actuator_lead_ms > 0 and self.belt_speed_mps is None:
                raise ConfigError(
                    f"{join_path(path, 'belt_speed_mps')}: needed in mode 'encoder' to turn actuator_lead_ms into counts"
                )
        delay = self.fire_delay_s()
        if delay is not None and delay <= 0:
            raise ConfigError(
                f"{join_path(path, 'actuator_lead_ms')}: the actuator lead ({self.actuator_lead_ms:g} ms) "
                f"must be shorter than the travel time to the gate ({self.travel_s() * 1000:.1f} ms)"  # type: ignore[operator]
            )
        if delay is not None and self.pulse_ms / 1000.0 >= delay:
            raise ConfigError(
                f"{join_path(path, 'pulse_ms')}: the pulse ({self.pulse_ms:g} ms) must be shorter than the "
                f"delay to the gate ({delay * 1000:.1f} ms)"
            )

    def _forbid(self, path: str, names: tuple[str, ...]) -> None:
        for name in names:
            if getattr(self, name) is not None:
                raise ConfigError(f"{join_path(path, name)}: not used in mode {self.mode!r}; remove it or set null")

    def travel_s(self) -> float | None:
        """Seconds from the camera's view to the gate (None in encoder mode without a belt speed)."""
        if self.delay_s is not None:
            return self.delay_s
        distance = self.delay_mm if self.delay_mm is not None else self.distance_mm
        if distance is None or self.belt_speed_mps is None:
            return None
        return distance / 1000.0 / self.belt_speed_mps

    def fire_delay_s(self) -> float | None:
        """Capture to pulse start: the travel time less the actuator lead (None when unknown)."""
        travel = self.travel_s()
        return None if travel is None else travel - self.actuator_lead_ms / 1000.0

    def delay_counts(self) -> int:
        """Encoder counts from capture to pulse start (mode ``encoder`` only)."""
        if self.mode != "encoder" or self.counts_per_mm is None or self.distance_mm is None:
            raise ConfigError("reject.mode: delay_counts needs mode 'encoder' with counts_per_mm and distance_mm")
        lead_mm = 0.0
        if self.actuator_lead_ms > 0 and self.belt_speed_mps is not None:
            lead_mm = self.actuator_lead_ms / 1000.0 * self.belt_speed_mps * 1000.0
        return round((self.distance_mm - lead_mm) * self.counts_per_mm)

    def timing(self) -> RejectTiming:
        """The runtime's time-based :class:`RejectTiming` (mode ``time`` only, for now)."""
        delay = self.fire_delay_s()
        if self.mode != "time" or delay is None:
            raise ConfigError(
                "reject.mode: the runtime schedules pulses by time; encoder scheduling needs the encoder "
                "input (not available yet): use mode 'time'"
            )
        return RejectTiming(delay_s=delay, pulse_s=self.pulse_ms / 1000.0, late_tolerance_s=self.late_tolerance_ms / 1000.0)


@dataclass(frozen=True)
class OutputsConfig:
    """``outputs``: the digital output backend and its pins (null pin: that output is not wired).

    ``jetson`` pins are BOARD numbers (1-40); ``gpiod`` pins are line offsets on ``chip``.
    ``heartbeat_period_ms``: the heartbeat output toggles at this period while the loop is healthy.
    """

    backend: Literal["sim", "jetson", "gpiod"] = "sim"
    chip: str | None = None
    reject_pin: int | None = None
    ready_pin: int | None = None
    fault_pin: int | None = None
    heartbeat_pin: int | None = None
    heartbeat_period_ms: float = 50.0

    def pins(self) -> dict[str, int]:
        """Wired outputs: name -> pin."""
        names = ("reject_pin", "ready_pin", "fault_pin", "heartbeat_pin")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def validate(self, path: str) -> None:
        """A chip for gpiod only; a reject pin on real hardware; pins in range and unique."""
        positive(path, "heartbeat_period_ms", self.heartbeat_period_ms)
        if self.backend == "gpiod" and not self.chip:
            raise ConfigError(f"{join_path(path, 'chip')}: backend 'gpiod' needs a chip (e.g. gpiochip0)")
        if self.backend != "gpiod" and self.chip is not None:
            raise ConfigError(f"{join_path(path, 'chip')}: used by backend 'gpiod' only, not {self.backend!r}")
        if self.backend != "sim" and self.reject_pin is None:
            raise ConfigError(f"{join_path(path, 'reject_pin')}: backend {self.backend!r} needs the reject pin")
        low, high = JETSON_BOARD_PINS if self.backend == "jetson" else (0, 1023)
        seen: dict[int, str] = {}
        for name, pin in self.pins().items():
            check_range(path, name, pin, low=low, high=high)
            if pin in seen:
                raise ConfigError(f"{join_path(path, name)}: pin {pin} is already used by {seen[pin]}")
            seen[pin] = name
