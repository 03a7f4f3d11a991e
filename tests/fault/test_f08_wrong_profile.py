"""F8: the camera starts in the wrong mode (640x480@15 instead of the configured one) or on USB 2.

Pass: start-up refuses with CameraError naming requested vs actual; exit code 5; the reject gate never
leaves its safe state and no frame is inspected. The RealSense source is driven through the fake
pyrealsense2 module of tests/unit/test_rs_common.py (no camera needed).
"""

from __future__ import annotations

import pytest
import typer

from edge_ad.clock import FakeClock
from edge_ad.commands._common import handle_errors
from edge_ad.errors import CameraError
from edge_ad.line.outputs import SimOutput
from edge_ad.runtime import run_inspection
from tests.helpers.faults import BackendInspector
from tests.unit.test_rs_common import FakeWorld, Profile, source

WANT = [Profile("depth", 640, 480, 30, "z16"), Profile("color", 640, 480, 30, "rgb8")]


@pytest.mark.parametrize(
    ("world", "message"),
    [
        (FakeWorld(script=[0, 1], active=[Profile("depth", 640, 480, 15, "z16"), WANT[1]]),
         "requested depth 640x480 z16 @ 30 fps, camera delivers depth 640x480 z16 @ 15 fps"),
        (FakeWorld(script=[0, 1], active=[WANT[0], Profile("color", 320, 240, 30, "rgb8")]),
         "requested color 640x480 rgb8 @ 30 fps, camera delivers color 320x240 rgb8 @ 30 fps"),
        (FakeWorld(script=[0, 1], usb="2.1", active=list(WANT)), "camera is on USB 2.1, required USB >= 3"),
    ],
    ids=["depth-15fps", "color-320x240", "usb2"],
)
def test_f08_startup_refuses_and_the_gate_never_leaves_its_safe_state(world: FakeWorld, message: str) -> None:
    clock = FakeClock()
    camera = source(world, clock)
    output = SimOutput(clock)
    inspector = BackendInspector()
    with pytest.raises(CameraError, match=message) as info:
        run_inspection(camera, inspector, output, clock=clock)
    assert "realsense:123" in str(info.value)
    assert output.timeline == [] and output.level is False  # never energised, not even briefly
    assert inspector.observed == []  # nothing inspected, nothing decided
    assert all(p.stopped for p in world.pipelines)  # the refused camera was released


def test_f08_the_refusal_exits_with_code_5() -> None:
    world = FakeWorld(script=[], usb="2.1", active=list(WANT))

    @handle_errors
    def start_camera() -> None:
        source(world, FakeClock()).start()

    with pytest.raises(typer.Exit) as info:
        start_camera()
    assert info.value.exit_code == CameraError.exit_code == 5
