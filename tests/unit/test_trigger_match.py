"""Trigger matching on a FakeClock: slots at trigger edges, FIFO within the window, phantoms, unseen triggers,
encoder counts, the line I/O and CLI wiring."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_ad.clock import FakeClock
from edge_ad.decision import Decision, Verdict
from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.line.inputs import SimInput
from edge_ad.line.outputs import SimOutput
from edge_ad.line.part_slots import PartSlots
from edge_ad.line.reject import EncoderTiming, RejectScheduler, RejectTiming
from edge_ad.line.trigger_match import TriggerMatcher, TriggerWindow
from edge_ad.part_tracker import TrackedPart
from edge_ad.runtime_setup import open_line_io
from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config
from tests.helpers.faults import MS, FakeEncoder, build_triggered_line, small_frame

REJECT = Decision(Verdict.REJECT, "above_threshold", 2.0, 2.0)
ACCEPT = Decision(Verdict.ACCEPT, "at_or_below_threshold", 0.1, 0.1)
WINDOW = TriggerWindow(0.02, 0.1)  # a part's first frame 20-100 ms after its trigger


def _rig(window: TriggerWindow = WINDOW, delay_s: float = 0.5) -> tuple[FakeClock, SimInput, RejectScheduler, SimOutput]:
    clock = FakeClock(start_ns=1_000 * MS)
    output = SimOutput(clock)
    return clock, SimInput(clock), RejectScheduler(output, clock, RejectTiming(delay_s, 0.02)), output


def _frame(clock: FakeClock, number: int) -> Frame:
    return small_frame(number, clock.now_ns(), {})


def test_each_edge_reserves_a_slot_at_trigger_plus_delay() -> None:
    clock, trigger, scheduler, _ = _rig()
    matcher = TriggerMatcher(trigger, scheduler, WINDOW)
    trigger.pulse(clock.now_ns() - 3 * MS)  # the edge's own time counts, not when it was polled
    trigger.pulse()
    new = matcher.poll()
    assert [(t.trigger_id, t.t_ns) for t in new] == [(0, 997 * MS), (1, 1_000 * MS)]
    assert scheduler.reserved == 2 and matcher.poll() == []
    clock.advance_ms(497)
    scheduler.poll()
    assert scheduler.take_missed() == [0]  # undecided at its deadline: FAULT_REJECT, not let through
    assert scheduler.slot_decision(0).verdict is Verdict.FAULT_REJECT and scheduler.slot_decision(1) is None


def test_parts_take_triggers_in_fifo_order_within_the_window() -> None:
    clock, trigger, scheduler, _ = _rig()
    matcher = TriggerMatcher(trigger, scheduler, WINDOW)
    trigger.pulse(1_000 * MS)
    trigger.pulse(1_030 * MS)  # two parts in flight whose windows overlap (1030-1100 ms)
    assert matcher.match(7, 1_040 * MS).trigger_id == 0  # the oldest trigger whose window holds it
    assert matcher.match(8, 1_060 * MS).trigger_id == 1
    assert matcher.match(7, 1_040 * MS).trigger_id == 0  # idempotent per part
    assert matcher.counts() == {"triggers": 2, "trigger_matched": 2, "unseen_trigger": 0, "phantom_part": 0}


def test_a_part_outside_every_window_matches_nothing() -> None:
    _, trigger, scheduler, _ = _rig()
    matcher = TriggerMatcher(trigger, scheduler, WINDOW)
    trigger.pulse(1_000 * MS)
    assert matcher.match(0, 1_010 * MS) is None  # too early: the barrier is 20 ms before the view
    assert matcher.match(1, 1_101 * MS) is None  # too late
    assert matcher.match(2, 1_100 * MS).trigger_id == 0  # the window's ends are inside it


def test_unseen_triggers_expire_oldest_first_once_their_window_has_passed() -> None:
    _, trigger, scheduler, _ = _rig()
    matcher = TriggerMatcher(trigger, scheduler, WINDOW)
    for t_ms in (1_000, 1_050, 1_200):
        trigger.pulse(t_ms * MS)
    matcher.poll()
    assert matcher.expire(1_100 * MS) == []  # trigger 0's window ends at 1100 ms: a part may still start then
    assert [t.trigger_id for t in matcher.expire(1_151 * MS)] == [0, 1]
    assert [t.trigger_id for t in matcher.expire(None)] == [2]  # end of run: all that is left
    assert matcher.unseen == 3


def test_encoder_mode_keys_the_slot_to_the_count_when_polled() -> None:
    clock = FakeClock(start_ns=0)
    encoder = FakeEncoder(clock, [(60.0, 1000.0)])
    scheduler = RejectScheduler(SimOutput(clock), clock, RejectTiming(0.0, 0.01), encoder=encoder,
                                encoder_timing=EncoderTiming(400, 20))
    trigger = SimInput(clock)
    matcher = TriggerMatcher(trigger, scheduler, WINDOW)
    clock.advance_ms(250)
    trigger.pulse()
    (new,) = matcher.poll()
    assert (new.position, new.t_ns) == (250, 250 * MS)
    scheduler.decide(new.trigger_id, REJECT)
    while scheduler.fired == 0:
        clock.advance(100_000)
        scheduler.poll()
    assert encoder.count_at(scheduler.history[0].raised_ns) - (250 + 400 - 20) in (0, 1)


def test_window_must_be_ordered_and_finite() -> None:
    for bad in ((-0.1, 0.2), (0.2, 0.2), (0.0, float("inf"))):
        with pytest.raises(ConfigError, match="trigger window"):
            TriggerWindow(*bad)


# --- PartSlots in trigger mode ----------------------------------------------------------------------


def test_part_slots_route_a_decision_to_its_trigger_and_fault_the_unseen() -> None:
    clock, trigger, scheduler, output = _rig()
    slots = PartSlots(scheduler, True, trigger=trigger, window=WINDOW, enter_frames=2)
    trigger.pulse()  # part A; part B's trigger comes 0.2 s later but the camera never sees B
    clock.advance_ms(25)
    assert slots.after_update(False, _frame(clock, 0), []) == []  # first frame of A (tracker debouncing)
    clock.advance_ms(33)
    assert slots.after_update(True, _frame(clock, 1), []) == []  # A opens: matched by its *first* frame (25 ms)
    part = TrackedPart(0, 0, 1_025 * MS, last_frame=1, frames=2)
    trigger.pulse(1_200 * MS)
    clock.advance_ms(300)
    assert slots.after_update(False, _frame(clock, 2), [part]) == []  # a part may still start at frame 1 (1058 ms)
    clock.advance_ms(33)
    unseen = slots.after_update(False, _frame(clock, 3), [])  # nothing can start before 1358 ms now
    assert [(p.part_id, p.exit_reason, d.reason) for p, d in unseen] == [(1, "unseen_trigger", "no_frame")]
    assert slots.claim_slot(part) == 0
    assert slots.decide(0, part, ACCEPT) is ACCEPT
    while clock.now_ns() < 1_800 * MS:
        clock.advance_ms(1)
        scheduler.poll()
    # Only B's slot fired, at its trigger + 0.5 s; A was accepted in time.
    (rise, fall), = output.pulses()
    assert rise == 1_700 * MS and fall == 1_720 * MS
    assert slots.trigger_counts() == {"triggers": 2, "trigger_matched": 1, "unseen_trigger": 1, "phantom_part": 0}


def test_a_phantom_part_gets_no_slot_and_a_late_trigger_is_fault_rejected_at_its_deadline() -> None:
    clock, trigger, scheduler, _ = _rig()
    slots = PartSlots(scheduler, True, trigger=trigger, window=WINDOW)
    clock.advance_ms(10)
    slots.after_update(True, _frame(clock, 0), [])  # dirt: no trigger before it
    phantom = TrackedPart(0, 0, 1_010 * MS, last_frame=0, frames=1)
    assert slots.claim_slot(phantom) is None and scheduler.reserved == 0
    trigger.pulse()
    slots.poll_triggers()
    clock.advance_ms(600)  # no frame at all (camera stalled): the deadline is the backstop
    scheduler.poll()
    (part, decision), = slots.end()
    assert decision.reason == "deadline_miss" and part.part_id == 0
    assert slots.trigger_counts()["phantom_part"] == 1


def test_trigger_mode_needs_a_supervised_run() -> None:
    _, trigger, scheduler, _ = _rig()
    with pytest.raises(ConfigError, match="realtime"):
        PartSlots(scheduler, False, trigger=trigger)


# --- the loop and its wiring ------------------------------------------------------------------------


def test_a_part_the_barrier_missed_is_a_counted_phantom_and_the_others_are_decided() -> None:
    line, barrier = build_triggered_line(frames=60, skip=(4,))  # no trigger for part 4
    summary = line.run()
    assert summary.pulses["triggers"] == len(barrier.pulsed) == summary.parts == 9
    assert summary.pulses["phantom_part"] == 1 and summary.pulses["unseen_trigger"] == 0
    assert [r.truth_part_id for r in summary.part_records] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [r.part_id for r in summary.part_records] == list(range(9))  # records keyed by trigger
    assert summary.truth is not None and summary.truth.missed_parts == 1  # seen, but no trigger: no decision


def test_open_line_io_opens_the_trigger_and_closes_it() -> None:
    clock = FakeClock()
    line = open_line_io(clock, "sim", trigger="sim", notify=False)
    assert isinstance(line.trigger, SimInput) and line.trigger_window == TriggerWindow()
    line.close()
    assert line.trigger.closed
    assert open_line_io(clock, "sim", notify=False).trigger is None
    with pytest.raises(ConfigError, match="--board"):
        open_line_io(clock, "sim", trigger="jetson", notify=False)
    with pytest.raises(ConfigError, match="station"):
        open_line_io(clock, "jetson", polarity="energize_to_accept", pins={"reject": 12}, trigger="jetson")


def test_cli_trigger_options_are_checked_before_the_camera_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_ad.sources
    from edge_ad.cli import app

    bundle = make_tiny_bundle(tmp_path / "b", preprocess_config=tiny_preprocess_config())
    opened: list[str] = []
    monkeypatch.setattr(edge_ad.sources, "open_source", lambda *a, **k: opened.append("camera"))
    base = ["run", "--bundle", str(bundle), "--no-notify"]
    result = CliRunner().invoke(app, [*base, "--trigger", "sim", "--trigger-min", "0.3", "--trigger-max", "0.2"])
    assert result.exit_code == 2 and "min_s < max_s" in result.output
    result = CliRunner().invoke(app, [*base, "--trigger-max", "0.2"])
    assert result.exit_code == 2 and "--trigger" in result.output
    result = CliRunner().invoke(app, [*base, "--trigger", "gpiod"])
    assert result.exit_code == 2 and "needs --board" in result.output
    assert opened == []
