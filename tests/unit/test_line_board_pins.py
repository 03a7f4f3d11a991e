"""Board pin maps: the shipped YAMLs load and agree with themselves; mistakes name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ad.errors import ConfigError
from edge_ad.line.pins import ROLES, known_boards, load_board


@pytest.mark.parametrize("name", ["jetson-orin-nano-devkit", "jetson-agx-orin-devkit"])
def test_shipped_board_maps_load_with_a_pin_for_every_role(name: str) -> None:
    board = load_board(name)
    assert name in known_boards() and board.board == name
    assert set(board.defaults) == set(ROLES)
    pins = [board.pin(role) for role in ROLES]
    assert len({p.board for p in pins}) == len(ROLES)  # no pin has two roles
    assert all(p.chip.startswith("tegra234-gpio") and p.line >= 0 for p in pins)
    assert "jetson-io" in board.caveat


def test_orin_nano_reject_pin_matches_the_jetson_gpio_table() -> None:
    pin = load_board("jetson-orin-nano-devkit").pin(29)
    assert (pin.soc, pin.chip, pin.line) == ("PQ.05", "tegra234-gpio", 105)


def test_mistakes_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "board: x\ndescription: d\ncaveat: c\n"
        "pins:\n  - {board: 7, soc: A, chip: c, line: 1}\n  - {board: 11, soc: B, chip: c, line: 2}\n"
        "defaults: {reject: 12}\n"
    )
    with pytest.raises(ConfigError, match=r"defaults.reject: pin 12 is not a GPIO-capable pin"):
        load_board(bad)
    bad.write_text(bad.read_text().replace("reject: 12", "rejekt: 7"))
    with pytest.raises(ConfigError, match="unknown role"):
        load_board(bad)
    with pytest.raises(ConfigError, match="known boards: jetson-agx-orin-devkit"):
        load_board("raspberry-pi-5")
    with pytest.raises(ConfigError, match="no GPIO pin 1;"):  # header pin 1 is 3.3 V, not a GPIO
        load_board("jetson-orin-nano-devkit").pin(1)
