"""Write RealSense recordings without a camera: frames pushed through ``rs.software_device`` into ``rs.recorder``.

librealsense 2.58+ records ROS2 ``.db3`` files (the recorder refuses any other extension); the
``bag:`` source plays both those and ROS1 ``.bag`` files. Depth is stored as z16 with
``depth_scale`` metres per unit, colour as rgb8; both streams share the frame's intrinsics and an
identity extrinsic (the frames are already aligned), and carry the frame's number and timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.frame import Frame, Intrinsics

SERIAL = "000000000000"


def _rs_intrinsics(rs: Any, intr: Intrinsics) -> Any:
    out = rs.intrinsics()
    out.width, out.height = intr.width, intr.height
    out.fx, out.fy, out.ppx, out.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    out.model = rs.distortion.none
    out.coeffs = [0.0] * 5
    return out


def _video_stream(rs: Any, kind: Any, uid: int, intr: Intrinsics, fps: int, bpp: int, fmt: Any) -> Any:
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid = kind, 0, uid
    stream.width, stream.height, stream.fps, stream.bpp, stream.fmt = intr.width, intr.height, fps, bpp, fmt
    stream.intrinsics = _rs_intrinsics(rs, intr)
    return stream


def record_frames(path: Path, frames: Iterable[Frame], fps: int = 30, depth_scale: float = 0.001) -> int:
    """Record ``frames`` (all the same size, with depth and intrinsics) to ``path`` (.db3); returns the count."""
    import pyrealsense2 as rs

    path = Path(path)
    iterator = iter(frames)
    first = next(iterator)
    if first.depth is None or first.intrinsics is None:
        raise ValueError("record_frames: frames need depth and intrinsics")
    device = rs.software_device()
    device.register_info(rs.camera_info.name, "edge-ad software camera")
    device.register_info(rs.camera_info.serial_number, SERIAL)
    depth_sensor = device.add_sensor("Stereo Module")
    color_sensor = device.add_sensor("RGB Camera")
    depth_profile = depth_sensor.add_video_stream(
        _video_stream(rs, rs.stream.depth, 0, first.intrinsics, fps, 2, rs.format.z16), True
    )
    depth_sensor.add_read_only_option(rs.option.depth_units, depth_scale)
    color_profile = color_sensor.add_video_stream(
        _video_stream(rs, rs.stream.color, 1, first.intrinsics, fps, 3, rs.format.rgb8), True
    )
    identity = rs.extrinsics()
    identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    identity.translation = [0.0, 0.0, 0.0]
    depth_profile.register_extrinsics_to(color_profile, identity)

    recorder = rs.recorder(str(path), device)
    sensors = recorder.query_sensors()
    for sensor in sensors:
        sensor.open(sensor.get_stream_profiles()[0])
        sensor.start(lambda _frame: None)
    count = 0
    try:
        for frame in (first, *iterator):
            assert frame.depth is not None
            units = np.clip(np.round(frame.depth / depth_scale), 0, 65535).astype(np.uint16)
            pushes = (
                (depth_sensor, depth_profile, units, 2),
                (color_sensor, color_profile, np.ascontiguousarray(frame.color, np.uint8), 3),
            )
            for sensor, profile, pixels, bpp in pushes:
                soft = rs.software_video_frame()
                soft.pixels = pixels
                soft.stride = pixels.shape[1] * bpp
                soft.bpp = bpp
                soft.timestamp = frame.frame_number * 1000.0 / fps
                soft.domain = rs.timestamp_domain.hardware_clock
                soft.frame_number = frame.frame_number
                soft.profile = profile.as_video_stream_profile()
                sensor.on_video_frame(soft)
            count += 1
    finally:
        for sensor in sensors:
            sensor.stop()
            sensor.close()
        # The file is finalized when the recorder is released.
        del sensors, recorder
    return count
