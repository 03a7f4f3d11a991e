"""``synthetic[:SEED]``: a live procedural conveyor line built on :func:`edge_ad.synth.render_scene`.

Parts travel along the image x axis (the belt's s axis) at ``speed_mps``, one behind the other
with a belt gap between them, so each part is seen alone for several frames and empty-belt
frames separate parts. Part ``i`` is defective with probability ``defect_rate`` (type drawn from
the synth list). The rig (camera, belt, light) is the station of the dataset ``edge-ad synth`` writes
for the same seed (or ``rig_seed``), so a model trained on it inspects its own station; each part is drawn once when
it enters; everything is a pure function of the seed and the frame number, so runs reproduce.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_ad.clock import Clock, MonotonicClock
from edge_ad.errors import ConfigError, DataError
from edge_ad.frame import Frame
from edge_ad.sources.base import SourceBase, SourceExhausted, SourceInfo, real_sleep, register_source
from edge_ad.synth_config import DEFECT_TYPES, SynthConfig

Renderer = Callable[..., Any]


@dataclass(frozen=True)
class LineConfig:
    """The moving line: belt speed, camera rate, defect share and spacing of parts.

    ``gap_m`` is the empty belt between one part leaving the view and the next entering it
    (None: a quarter of the visible belt length). ``parts`` ends the stream after that many parts have
    passed (None: endless). ``realtime`` paces frames at ``fps`` on the clock and, like a camera,
    skips frames the reader was too slow to take; otherwise frames come as fast as they are read.
    """

    speed_mps: float = 0.25
    fps: float = 30.0
    defect_rate: float = 0.3
    defect_types: tuple[str, ...] = DEFECT_TYPES
    gap_m: float | None = None
    parts: int | None = None
    realtime: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed_mps) and self.speed_mps > 0):
            raise ConfigError(f"synthetic line: speed must be > 0 m/s, got {self.speed_mps}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"synthetic line: fps must be > 0, got {self.fps}")
        if not 0.0 <= self.defect_rate <= 1.0:
            raise ConfigError(f"synthetic line: defect_rate must be in [0, 1], got {self.defect_rate}")
        unknown = [t for t in self.defect_types if t not in DEFECT_TYPES]
        if unknown or (self.defect_rate > 0 and not self.defect_types):
            raise ConfigError(
                f"synthetic line: defect_types {list(self.defect_types)} must be a non-empty subset of {list(DEFECT_TYPES)}"
            )
        if self.gap_m is not None and self.gap_m < 0:
            raise ConfigError(f"synthetic line: gap_m must be >= 0, got {self.gap_m}")
        if self.parts is not None and self.parts < 1:
            raise ConfigError(f"synthetic line: parts must be >= 1, got {self.parts}")


@dataclass(frozen=True)
class LinePart:
    """One part of the line: its index, defect (None = good), offset across the belt and render seed."""

    part_id: int
    defect: str | None
    t_m: float
    seed: int


class SyntheticLineSource(SourceBase):
    """Frames of a procedural conveyor with parts passing under the camera, ground truth attached.

    ``truth`` per frame: ``part_id`` (None while no part is visible), ``part_present``,
    ``defective``, ``defect_type`` ("good" for a good part), ``defect_visible`` (the defect shows in
    this frame) and ``part_xy_m``. ``renderer`` defaults to :func:`edge_ad.synth.render_scene`;
    tests inject a cheaper one with the same keyword interface.
    """

    def __init__(
        self,
        seed: int = 0,
        line: LineConfig = LineConfig(),
        synth: SynthConfig | None = None,
        renderer: Renderer | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
        rig_seed: int | None = None,
    ) -> None:
        self.seed = int(seed)
        self.line = line
        # Imported here so that a replay-only install (folder, bag) never loads the generator.
        from edge_ad.synth import dataset_rig, render_scene, sample_part

        self._sample_part = sample_part
        self.synth = synth if synth is not None else SynthConfig()
        self.renderer: Renderer = renderer if renderer is not None else render_scene
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._sleep = sleep if sleep is not None else real_sleep
        # The station (camera, belt, light) is that of the dataset `edge-ad synth --seed RIG_SEED` wrote
        # (default: this line's seed), so a model trained on that dataset inspects the same station.
        self.rig = dataset_rig(int(rig_seed if rig_seed is not None else self.seed), self.synth)
        # The visible belt, in belt coordinates (s along travel = image x, t across).
        s_lo, s_hi = float(self.rig.belt_s.min()), float(self.rig.belt_s.max())
        t_lo, t_hi = float(self.rig.belt_t.min()), float(self.rig.belt_t.max())
        self._s_centre, self._t_centre = (s_lo + s_hi) / 2.0, (t_lo + t_hi) / 2.0
        # Farthest a part reaches from its centre: a box's corner (aspect <= 0.9), plus a margin.
        self.part_reach_m = self.synth.part_diameter_m[1] / 2.0 * math.hypot(1.0, 0.9) + 0.005
        self.travel_in_view_m = (s_hi - s_lo) + 2.0 * self.part_reach_m
        gap = line.gap_m if line.gap_m is not None else 0.25 * (s_hi - s_lo)
        self.pitch_m = self.travel_in_view_m + gap
        self._lead_m = gap / 2.0  # the stream opens on an empty belt
        self._max_t_m = max(0.0, (t_hi - t_lo) / 2.0 - self.part_reach_m) * 0.3
        self._next = 0
        self._start_ns: int | None = None
        self._part_cache: tuple[int, Any] | None = None

    @property
    def frames_per_part(self) -> float:
        """Frames from a part starting to enter the view to having fully left it."""
        return self.travel_in_view_m / self.line.speed_mps * self.line.fps

    @property
    def frames_per_pitch(self) -> float:
        """Frames from one part entering the view to the next one entering it."""
        return self.pitch_m / self.line.speed_mps * self.line.fps

    def start(self) -> None:
        """Rewind to frame 0 (the pacing clock starts at the first read)."""
        self._next = 0
        self._start_ns = None

    def stop(self) -> None:
        """Nothing to release."""

    def info(self) -> SourceInfo:
        """Rendered resolution and the line's frame rate."""
        return SourceInfo(
            f"synthetic:{self.seed}", self.synth.width, self.synth.height, self.line.fps,
            frames_per_part=self.frames_per_part,
        )

    def part(self, index: int) -> LinePart:
        """The ``index``-th part of the line (a pure function of the seed and the index)."""
        rng = np.random.default_rng([self.seed, index])
        defective = bool(rng.random() < self.line.defect_rate)
        defect = str(rng.choice(list(self.line.defect_types))) if defective else None
        t_m = self._t_centre + float(rng.uniform(-self._max_t_m, self._max_t_m))
        return LinePart(index, defect, t_m, int(rng.integers(0, 2**31 - 1)))

    def _travel_m(self, frame_number: int) -> float:
        return frame_number * self.line.speed_mps / self.line.fps - self._lead_m

    def part_at(self, frame_number: int) -> tuple[LinePart, float] | None:
        """The part near the view at ``frame_number`` and its s on the belt, or None for an empty belt."""
        travel = self._travel_m(frame_number)
        index = math.floor(travel / self.pitch_m)
        into = travel - index * self.pitch_m
        if index < 0 or into >= self.travel_in_view_m:
            return None
        return self.part(index), self._s_centre + into - self.travel_in_view_m / 2.0

    def read(self, timeout_s: float) -> Frame | None:
        """Render the next frame; in realtime mode wait for it (None past ``timeout_s``) and skip missed ones."""
        number = self._next
        if self.line.realtime:
            now = self.clock.now_ns()
            if self._start_ns is None:
                self._start_ns = now
            period_ns = 1e9 / self.line.fps
            # A camera keeps streaming while the reader is busy: frames it did not take are gone.
            number = max(number, math.floor((now - self._start_ns) / period_ns))
            wait_s = (self._start_ns + number * period_ns - now) / 1e9
            if wait_s > timeout_s:
                self._sleep(timeout_s)
                return None
            self._sleep(wait_s)
        if self.line.parts is not None and self._travel_m(number) >= self.line.parts * self.pitch_m:
            raise SourceExhausted(f"synthetic line: all {self.line.parts} parts have passed")
        self._next = number + 1
        return self.render(number)

    def render(self, frame_number: int) -> Frame:
        """The frame with number ``frame_number`` (deterministic for a seed)."""
        located = self.part_at(frame_number)
        travel = self._travel_m(frame_number)
        noise_seed = int(np.random.default_rng([self.seed, 1 << 20, frame_number]).integers(0, 2**31 - 1))
        if located is None:
            scene = self.renderer(noise_seed, self.synth, part_xy_m=None, rig=self.rig, belt_offset_m=travel)
            truth: dict[str, Any] = {"part_id": None, "part_present": False, "defective": False, "defect_type": None}
        else:
            line_part, s_m = located
            spec = self._part_spec(line_part)
            xy = (s_m, line_part.t_m)
            kwargs = {"part_xy_m": xy, "rig": self.rig, "part": spec, "belt_offset_m": travel}
            visible = line_part.defect is not None
            try:
                # The part's own seed: the defect sits at the same place on the part in every frame.
                scene = self.renderer(line_part.seed, self.synth, defect=line_part.defect, **kwargs)
            except DataError:
                # The defect lies outside the image in this frame (part entering or leaving).
                scene = self.renderer(line_part.seed, self.synth, defect=None, **kwargs)
                visible = False
            present = bool(np.any(scene.object_mask))
            truth = {
                "part_id": line_part.part_id if present else None,
                "part_present": present,
                "defective": line_part.defect is not None,
                "defect_type": line_part.defect or "good",
                "defect_visible": visible and present,
                "part_xy_m": xy,
            }
        depth = np.ascontiguousarray(scene.xyz[..., 2], dtype=np.float32)
        device_ms = frame_number * 1000.0 / self.line.fps
        return Frame(scene.rgb, depth, scene.intrinsics, frame_number, device_ms, self.clock.now_ns(), truth)

    def _part_spec(self, line_part: LinePart) -> Any:
        # Shape, size, yaw and look are drawn once per part and reused while it crosses the view.
        if self._part_cache is None or self._part_cache[0] != line_part.part_id:
            rng = np.random.default_rng([line_part.seed, 1])
            self._part_cache = (line_part.part_id, self._sample_part(rng, self.synth, self.rig.part_colour))
        return self._part_cache[1]


@register_source("synthetic")
def open_synthetic(
    argument: str | None,
    speed_mps: float = 0.25,
    fps: float = 30.0,
    defect_rate: float = 0.3,
    defect_types: tuple[str, ...] = DEFECT_TYPES,
    gap_m: float | None = None,
    parts: int | None = None,
    realtime: bool = True,
    width: int | None = None,
    height: int | None = None,
    synth: SynthConfig | None = None,
    renderer: Renderer | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
    rig_seed: int | None = None,
) -> SyntheticLineSource:
    """``synthetic`` or ``synthetic:SEED`` -> SyntheticLineSource; ``width``/``height`` override the synth image size.

    ``rig_seed``: use the camera and belt of the dataset ``edge-ad synth --seed RIG_SEED`` wrote
    (default: SEED's, so ``synthetic`` is the station of ``edge-ad synth``'s default seed 0).
    """
    try:
        seed = int(argument) if argument else 0
    except ValueError as exc:
        raise ConfigError(f"camera URI 'synthetic:{argument}': the seed must be an integer") from exc
    line = LineConfig(speed_mps, fps, defect_rate, tuple(defect_types), gap_m, parts, realtime)
    config = synth if synth is not None else SynthConfig()
    if width is not None or height is not None:
        config = dataclasses.replace(config, width=width or config.width, height=height or config.height)
    return SyntheticLineSource(seed, line, config, renderer=renderer, clock=clock, sleep=sleep, rig_seed=rig_seed)
