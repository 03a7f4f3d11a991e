"""What the runtime loop drives besides the model: the line I/O bundle, a bounded source stop, signals.

:class:`LineIO` gathers the reject output and its polarity, the optional status outputs (ready, fault,
line stop, heartbeat), the optional belt encoder, the optional part trigger input and the systemd
notifier, so the loop takes one object and closes everything it holds. :func:`bounded_stop` stops a
source in a worker thread and gives up after a timeout: ``rs2::pipeline::stop`` can hang (librealsense
#9184), and a stop must not. :func:`stop_on_signals` turns SIGINT / SIGTERM into a clean stop request.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.line.encoder import EncoderInput, open_encoder
from edge_ad.line.heartbeat import ROLES as STATUS_ROLES
from edge_ad.line.heartbeat import StatusLines
from edge_ad.line.inputs import DigitalInput, open_input
from edge_ad.line.outputs import DigitalOutput, open_output
from edge_ad.line.pins import load_board
from edge_ad.line.reject import EncoderTiming, Polarity
from edge_ad.line.trigger_match import TriggerWindow
from edge_ad.sources.base import FrameSource
from edge_ad.systemd import SystemdNotifier

log = logging.getLogger(__name__)


@dataclass
class LineIO:
    """The reject output plus everything optional around it (all released by :meth:`close`).

    ``trigger``: a part trigger input (light barrier / encoder trigger); with it every trigger edge is a
    part that gets exactly one decision, matched to tracked parts within ``trigger_window``.
    """

    reject: DigitalOutput
    polarity: Polarity = Polarity.ENERGIZE_TO_REJECT
    status: dict[str, DigitalOutput] = field(default_factory=dict)
    encoder: EncoderInput | None = None
    encoder_timing: EncoderTiming | None = None
    notifier: SystemdNotifier | None = None
    trigger: DigitalInput | None = None
    trigger_window: TriggerWindow | None = None

    def status_lines(self, clock: Clock, heartbeat_period_s: float) -> StatusLines:
        """The status outputs as :class:`StatusLines` (made once; the loop closes them)."""
        if not hasattr(self, "_lines"):
            self._lines = StatusLines(clock, self.status, heartbeat_period_s)
        return self._lines

    def close(self) -> None:
        """Release the reject output first (it matters most), then status lines, encoder and notifier."""
        self.reject.close()
        for output in self.status.values():
            output.close()
        if self.encoder is not None:
            self.encoder.close()
        if self.trigger is not None:
            self.trigger.close()
        if self.notifier is not None:
            self.notifier.close()


def open_line_io(
    clock: Clock,
    gpio: str = "sim",
    *,
    polarity: str | None = None,
    board: str | Path | None = None,
    encoder: str | None = None,
    encoder_offset: int | None = None,
    encoder_lead: int = 0,
    notify: bool = True,
    sim_file: Path | None = None,
    pins: Mapping[str, int] | None = None,
    chip: str | None = None,
    trigger: str | None = None,
    trigger_window: TriggerWindow | None = None,
) -> LineIO:
    """Open the reject output (then status outputs, encoder, trigger, notifier) for ``edge-ad run``.

    Real GPIO (``jetson``, ``gpiod``) needs a board pin map and an explicit polarity: the wiring decides
    what a dead controller does, so it is never guessed. Every output opens de-energised.
    ``pins`` (role -> BOARD number for jetson, line offset on ``chip`` for gpiod) replaces the board
    map: a station file names its pins directly; only the roles it names are opened (no trigger there).
    ``trigger`` (sim, jetson, gpiod): the part trigger input, on the board map's ``trigger`` pin.
    """
    if trigger is not None and pins is not None:
        raise ConfigError("--trigger: a station file has no trigger pin yet; use --board with --gpio jetson / gpiod")
    if gpio == "sim":
        if board is not None:
            raise ConfigError("--board applies to --gpio jetson / gpiod, not sim")

        def options(role: str) -> dict[str, Any]:
            return {"path": sim_file, "name": role}
    else:
        if polarity is None:
            raise ConfigError(f"--gpio {gpio}: say how the reject gate is wired with --polarity "
                              "(energize_to_accept is the fail-safe wiring; see the README)")
        if pins is not None:
            return _open_station_pins(clock, gpio, Polarity(polarity), pins, chip, notify)
        if board is None:
            raise ConfigError(f"--gpio {gpio}: needs --board (a pin map name or YAML path)")
        pins = load_board(board)

        def options(role: str) -> dict[str, Any]:
            pin = pins.pin(role)
            return {"pin": pin.board, "name": role} if gpio == "jetson" else {"chip": pin.chip, "line": pin.line, "name": role}
    if sim_file is not None and gpio != "sim":
        raise ConfigError("--gpio-file applies to --gpio sim only")
    line = LineIO(open_output(gpio, clock=clock, **options("reject")),
                  Polarity(polarity or Polarity.ENERGIZE_TO_REJECT.value))
    try:
        for role in STATUS_ROLES:
            if gpio == "sim" or role in pins.defaults:
                line.status[role] = open_output(gpio, clock=clock, **options(role))
        if encoder is not None:
            if encoder_offset is None:
                raise ConfigError("--encoder needs --encoder-offset (counts from the camera to the gate)")
            line.encoder_timing = EncoderTiming(encoder_offset, encoder_lead)
            if encoder == "sim":
                line.encoder = open_encoder("sim", clock=clock, counts_per_s=1000.0)
            else:
                if board is None:
                    raise ConfigError(f"--encoder {encoder}: needs --board")
                a, b = pins.pin("encoder_a"), pins.defaults.get("encoder_b")
                if encoder == "jetson":
                    line.encoder = open_encoder("jetson", clock=clock, pin_a=a.board, pin_b=b)
                else:
                    line.encoder = open_encoder("gpiod", clock=clock, chip=a.chip, line_a=a.line,
                                                line_b=pins.pin(b).line if b is not None else None)
        if trigger is not None:
            line.trigger = _open_trigger(clock, trigger, board)
            line.trigger_window = trigger_window or TriggerWindow()
        line.notifier = SystemdNotifier() if notify else None
    except BaseException:
        line.close()  # whatever opened goes back to de-energised
        raise
    return line


def _open_trigger(clock: Clock, backend: str, board: str | Path | None) -> DigitalInput:
    """The trigger input: ``sim`` (driven by tests), or the board map's ``trigger`` pin."""
    if backend == "sim":
        return open_input("sim", clock=clock)
    if board is None:
        raise ConfigError(f"--trigger {backend}: needs --board (its pin map names the trigger pin)")
    pin = load_board(board).pin("trigger")
    if backend == "jetson":
        return open_input("jetson", clock=clock, pin=pin.board, name="trigger")
    return open_input("gpiod", clock=clock, chip=pin.chip, line=pin.line)


def _open_station_pins(
    clock: Clock, gpio: str, polarity: Polarity, pins: Mapping[str, int], chip: str | None, notify: bool
) -> LineIO:
    """Outputs at the pins a station file names (``reject`` required, status roles optional)."""
    if "reject" not in pins:
        raise ConfigError("outputs.reject_pin: real GPIO needs the reject output's pin")

    def options(role: str) -> dict[str, Any]:
        pin = pins[role]
        return {"pin": pin, "name": role} if gpio == "jetson" else {"chip": chip, "line": pin, "name": role}

    line = LineIO(open_output(gpio, clock=clock, **options("reject")), polarity)
    try:
        for role in STATUS_ROLES:
            if role in pins:
                line.status[role] = open_output(gpio, clock=clock, **options(role))
        line.notifier = SystemdNotifier() if notify else None
    except BaseException:
        line.close()
        raise
    return line


def bounded_stop(source: FrameSource, timeout_s: float) -> bool:
    """``source.stop()`` in a worker, waited for at most ``timeout_s``; False (logged) when it hung."""
    worker = threading.Thread(target=source.stop, name="edge-ad-source-stop", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        log.error("camera stop did not return within %.1f s; leaving it behind (the process may exit)", timeout_s)
        return False
    return True


class _Stoppable(Protocol):
    def request_stop(self, reason: str = "stopped") -> None: ...


@contextlib.contextmanager
def stop_on_signals(runtime: _Stoppable) -> Iterator[None]:
    """Route SIGINT and SIGTERM to a clean ``runtime.request_stop`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        runtime.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
