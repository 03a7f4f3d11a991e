from __future__ import annotations

import numpy as np
import pytest

from edge_ad.frame import Intrinsics


def test_deproject_centre_and_missing() -> None:
    k = Intrinsics(width=4, height=3, fx=2.0, fy=2.0, cx=1.5, cy=1.0)
    depth = np.full((3, 4), 0.5, dtype=np.float32)
    depth[0, 0] = 0.0
    depth[2, 3] = np.nan
    xyz = k.deproject(depth)
    assert xyz.shape == (3, 4, 3)
    assert np.allclose(xyz[1, 1], [(1 - 1.5) / 2 * 0.5, 0.0, 0.5])
    assert np.all(xyz[0, 0] == 0) and np.all(xyz[2, 3] == 0)


def test_deproject_rejects_wrong_shape() -> None:
    k = Intrinsics(width=4, height=3, fx=2.0, fy=2.0, cx=1.5, cy=1.0)
    with pytest.raises(ValueError, match="does not match"):
        k.deproject(np.zeros((4, 3), dtype=np.float32))


def test_scaled_intrinsics() -> None:
    k = Intrinsics(width=640, height=480, fx=600.0, fy=600.0, cx=320.0, cy=240.0).scaled(320, 240)
    assert (k.fx, k.cx, k.cy) == (300.0, 160.0, 120.0)
