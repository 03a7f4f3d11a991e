"""Line I/O backends: file-backed sim output, Jetson.GPIO and libgpiod v2 through fakes with the same calls,
sim inputs and encoders, and the lazy imports (no Jetson.GPIO or gpiod here)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from edge_ad.clock import FakeClock
from edge_ad.errors import ConfigError
from edge_ad.line.encoder import SimEncoder, open_encoder
from edge_ad.line.inputs import DigitalInput, SimInput, open_input
from edge_ad.line.outputs import SimOutput, open_output, read_line_file


def test_file_backed_sim_output_appends_open_edges_and_close(tmp_path: Path) -> None:
    clock = FakeClock(start_ns=5)
    path = tmp_path / "gpio.log"
    output = SimOutput(clock, path, "reject")
    output.set(True, 10)
    output.set(True, 11)  # not an edge
    clock.advance(20)
    output.close()
    with path.open("a") as handle:
        handle.write("edge reject 4")  # a line torn by a kill -9 is ignored
    records = read_line_file(path)
    assert [(r.kind, r.t_ns, r.level) for r in records] == [("open", 5, False), ("edge", 10, True),
                                                            ("edge", 25, False), ("close", 25, False)]
    assert {r.name for r in records} == {"reject"}


class FakeJetsonGPIO:
    """The Jetson.GPIO calls edge-ad makes, recorded."""

    BOARD, OUT, IN, HIGH, LOW, RISING = "BOARD", "OUT", "IN", 1, 0, "RISING"

    def __init__(self) -> None:
        self.mode: str | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.callbacks: dict[int, Any] = {}
        self.inputs: dict[int, int] = {}

    def getmode(self) -> str | None:
        return self.mode

    def setmode(self, mode: str) -> None:
        self.mode = mode

    def setup(self, pin: int, direction: str, initial: int | None = None) -> None:
        self.calls.append(("setup", pin, direction, initial))

    def output(self, pin: int, value: int) -> None:
        self.calls.append(("output", pin, value))

    def input(self, pin: int) -> int:
        return self.inputs.get(pin, 0)

    def add_event_detect(self, pin: int, edge: str, callback: Any = None, bouncetime: int | None = None) -> None:
        self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        self.callbacks.pop(pin)

    def cleanup(self, pins: Any = None) -> None:
        self.calls.append(("cleanup", pins))


def test_jetson_output_starts_low_drives_edges_and_cleans_up_only_its_pin() -> None:
    gpio = FakeJetsonGPIO()
    output = open_output("jetson", clock=FakeClock(), pin=29, gpio_module=gpio)
    output.set(True, 1)
    output.set(True, 2)
    output.close()
    output.set(True, 3)  # ignored once closed
    assert gpio.mode == "BOARD"
    assert gpio.calls == [("setup", 29, "OUT", 0), ("output", 29, 1), ("output", 29, 0), ("cleanup", 29)]
    with pytest.raises(ConfigError, match="BOARD number 1..40"):
        open_output("jetson", clock=FakeClock(), pin=41, gpio_module=gpio)


def test_jetson_input_and_encoder_count_edges_from_callbacks() -> None:
    from edge_ad.line.jetson import JetsonEncoder, JetsonInput

    clock, gpio = FakeClock(start_ns=100), FakeJetsonGPIO()
    trigger = JetsonInput(clock, 7, gpio_module=gpio)
    gpio.callbacks[7](7)
    clock.advance(50)
    gpio.callbacks[7](7)
    assert isinstance(trigger, DigitalInput) and trigger.events() == [100, 150] and trigger.events() == []
    encoder = JetsonEncoder(clock, 15, 12, gpio_module=gpio)
    for _ in range(5):
        gpio.callbacks[15](15)
    gpio.inputs[12] = 1  # channel B high: running backwards
    gpio.callbacks[15](15)
    assert encoder.count() == 4
    encoder.close()
    assert ("cleanup", [15, 12]) in gpio.calls


def _fake_gpiod() -> Any:
    calls: list[tuple[Any, ...]] = []

    class Request:
        def set_value(self, line: int, value: str) -> None:
            calls.append(("set", line, value))

        def release(self) -> None:
            calls.append(("release",))

    def request_lines(path: str, consumer: str, config: dict[int, Any]) -> Request:
        calls.append(("request", path, consumer, {k: v.kwargs for k, v in config.items()}))
        return Request()

    class LineSettings:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    line = types.SimpleNamespace(
        Value=types.SimpleNamespace(ACTIVE="ACTIVE", INACTIVE="INACTIVE"),
        Direction=types.SimpleNamespace(OUTPUT="OUTPUT", INPUT="INPUT"),
        Edge=types.SimpleNamespace(RISING="RISING"),
    )
    return types.SimpleNamespace(request_lines=request_lines, LineSettings=LineSettings, line=line, calls=calls)


def test_gpiod_output_requests_inactive_sets_values_and_releases() -> None:
    gpiod = _fake_gpiod()
    output = open_output("gpiod", clock=FakeClock(), chip="gpiochip0", line=105, gpiod_module=gpiod, name="reject")
    output.set(True, 1)
    output.close()
    assert gpiod.calls == [
        ("request", "/dev/gpiochip0", "edge-ad-reject", {105: {"direction": "OUTPUT", "output_value": "INACTIVE"}}),
        ("set", 105, "ACTIVE"), ("set", 105, "INACTIVE"), ("release",),
    ]


def test_real_backends_fail_with_a_config_error_naming_what_to_install() -> None:
    with pytest.raises(ConfigError, match="Jetson.GPIO"):
        open_output("jetson", clock=FakeClock(), pin=7)
    with pytest.raises(ConfigError, match="gpiod"):
        open_output("gpiod", clock=FakeClock(), chip=0, line=1)


def test_sim_input_and_encoder() -> None:
    clock = FakeClock()
    trigger = open_input("sim", clock=clock)
    assert isinstance(trigger, SimInput)
    trigger.pulse()
    clock.advance(7)
    trigger.pulse()
    assert trigger.events() == [0, 7]
    encoder = open_encoder("sim", clock=clock, counts_per_s=1000.0)
    assert isinstance(encoder, SimEncoder)
    clock.advance_ms(250)
    encoder.advance(-3)
    assert encoder.count() == 247
    with pytest.raises(ConfigError, match="known encoders: gpiod, jetson, sim"):
        open_encoder("quadrature-hat", clock=clock)


def test_cli_run_refuses_real_gpio_without_an_explicit_polarity_or_board(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge_ad.cli import app
    from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config

    bundle = make_tiny_bundle(tmp_path / "b", preprocess_config=tiny_preprocess_config())
    base = ["run", "--bundle", str(bundle), "--camera", "synthetic", "--max-parts", "1", "--gpio", "jetson"]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 2 and "--polarity" in result.output
    result = CliRunner().invoke(app, [*base, "--polarity", "energize_to_accept"])
    assert result.exit_code == 2 and "--board" in result.output
