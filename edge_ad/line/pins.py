"""Board pin maps (``firmware_configs/boards/*.yaml``): which 40-pin header pins are GPIO, and the defaults.

A map lists every header pin usable as GPIO with its BOARD number (what Jetson.GPIO takes), SoC pin
name, and gpiochip label + line offset (what libgpiod takes), plus the default pin of each role
(reject, ready, fault, heartbeat, trigger, encoder_a, encoder_b). JetPack 6 caveat: a pin is a GPIO only
if the boot-time pinmux configures it so (``sudo /opt/nvidia/jetson-io/jetson-io.py``), and it reverts
to that default state whenever the process exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_ad.errors import ConfigError
from edge_ad.typed_data import load_dataclass

# Data lives next to the package in a checkout (firmware_configs/ is data, not code).
BOARDS_DIR = Path(__file__).resolve().parents[2] / "firmware_configs" / "boards"
ROLES = ("reject", "ready", "fault", "heartbeat", "trigger", "encoder_a", "encoder_b")


@dataclass(frozen=True)
class PinInfo:
    """One header pin usable as GPIO."""

    board: int
    soc: str
    chip: str
    line: int
    function: str = ""
    note: str = ""


@dataclass(frozen=True)
class BoardPins:
    """A board's GPIO-capable header pins and the default pin per role."""

    board: str
    description: str
    caveat: str
    pins: tuple[PinInfo, ...]
    defaults: dict[str, int]

    def validate(self, path: str) -> None:
        """Pins unique and on the 40-pin header; every default a listed pin, roles known, no pin used twice."""
        numbers = [p.board for p in self.pins]
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{path}.pins: a BOARD pin is listed twice: {sorted(numbers)}")
        bad = [n for n in numbers if not 1 <= n <= 40]
        if bad:
            raise ConfigError(f"{path}.pins: BOARD pins must be 1..40, got {bad}")
        for role, pin in self.defaults.items():
            if role not in ROLES:
                raise ConfigError(f"{path}.defaults.{role}: unknown role; known roles: {', '.join(ROLES)}")
            if pin not in numbers:
                raise ConfigError(f"{path}.defaults.{role}: pin {pin} is not a GPIO-capable pin of {self.board}")
        used = list(self.defaults.values())
        if len(set(used)) != len(used):
            raise ConfigError(f"{path}.defaults: one pin is given two roles: {self.defaults}")

    def pin(self, role_or_number: str | int) -> PinInfo:
        """A pin by role (its default) or BOARD number; ConfigError when the board has no such GPIO."""
        number = self.defaults.get(role_or_number) if isinstance(role_or_number, str) else role_or_number
        for info in self.pins:
            if info.board == number:
                return info
        raise ConfigError(
            f"board {self.board}: no GPIO pin {role_or_number!r}; roles: {sorted(self.defaults)}, "
            f"pins: {[p.board for p in self.pins]}"
        )


def known_boards() -> list[str]:
    """Names of the maps shipped in ``firmware_configs/boards``."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml")) if BOARDS_DIR.is_dir() else []


def load_board(name_or_path: str | Path) -> BoardPins:
    """Load a pin map by name (``jetson-orin-nano-devkit``) or path; ConfigError with the file and field."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BOARDS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"board pin map {name_or_path!r} not found ({path}); known boards: {', '.join(known_boards())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    board = load_dataclass(BoardPins, data, error=ConfigError, path=path.name)
    return board
