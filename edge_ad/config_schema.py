"""The sections of a station file as frozen dataclasses, each checking its own keys and ranges.

Loaded by :mod:`edge_ad.config` through :func:`edge_ad.typed_data.load_dataclass` (types and
unknown keys); every ``validate(path)`` here raises ConfigError ``<section>.<key>: <reason>``.
The line side (``reject``, ``outputs``) is in :mod:`edge_ad.config_line`. Rules that span
sections (reject delay vs. decision latency, model mode vs. camera depth) live in
:mod:`edge_ad.config`. Geometry and tracker reuse the runtime's own
:class:`~edge_ad.geometry.ForegroundConfig` and :class:`~edge_ad.part_tracker.TrackerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from packaging.version import InvalidVersion, Version

from edge_ad._fields import check_range
from edge_ad.errors import ConfigError
from edge_ad.geometry import ForegroundConfig
from edge_ad.typed_data import join_path

# Camera URI schemes (edge_ad.sources registers them as their modules land).
CAMERA_SCHEMES = ("realsense", "bag", "folder", "synthetic")


def positive(path: str, name: str, value: float | None) -> None:
    """ConfigError ``path.name: must be > 0`` unless ``value`` is None or positive."""
    if value is not None:
        check_range(path, name, value, low=0.0, low_open=True)


@dataclass(frozen=True)
class StationInfo:
    """``station``: which station this file configures."""

    name: str = "station"
    description: str = ""

    def validate(self, path: str) -> None:
        """A non-empty name (it labels metrics, logs and archived images)."""
        if not self.name.strip():
            raise ConfigError(f"{join_path(path, 'name')}: must not be empty")


@dataclass(frozen=True)
class PostProcessing:
    """``camera.post_processing``: RealSense depth filters applied on the device host (all off by default)."""

    decimation: int = 1
    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False

    def validate(self, path: str) -> None:
        """Decimation magnitude 1 (off) to 8."""
        check_range(path, "decimation", self.decimation, low=1, high=8)


@dataclass(frozen=True)
class CameraConfig:
    """``camera``: which camera, which colour/depth profile, and how long to wait for it.

    ``depth_width/height/fps`` default to the colour profile. ``timeout_ms``: one read's wait;
    ``stall_fault_ms``: no frame for this long is a camera fault; ``backoff_max_s``: cap of the
    reconnect backoff; ``queue_size``: frames buffered between capture and inspection.
    """

    uri: str = "realsense"
    serial: str | None = None
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = True
    depth_width: int | None = None
    depth_height: int | None = None
    depth_fps: int | None = None
    align_to_color: bool = True
    usb_type_min: str | None = "3.0"
    post_processing: PostProcessing = field(default_factory=PostProcessing)
    timeout_ms: float = 100.0
    stall_fault_ms: float = 250.0
    backoff_max_s: float = 5.0
    queue_size: int = 2

    @property
    def scheme(self) -> str:
        """The URI scheme (``realsense`` for ``realsense:123``)."""
        return self.uri.partition(":")[0].strip().lower()

    @property
    def uri_argument(self) -> str | None:
        """What follows ``scheme:`` in the URI (serial, file or folder), None when nothing does."""
        argument = self.uri.partition(":")[2]
        return argument[2:] if argument.startswith("//") else (argument or None)

    def source_uri(self) -> str:
        """The URI to open: ``serial`` folded into a bare ``realsense`` URI."""
        if self.serial is not None and self.uri_argument is None:
            return f"{self.scheme}:{self.serial}"
        return self.uri

    def profile(self) -> dict[str, int]:
        """The requested colour and depth stream profile, depth defaults resolved."""
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "depth_width": self.depth_width or self.width,
            "depth_height": self.depth_height or self.height,
            "depth_fps": self.depth_fps or self.fps,
        }

    def validate(self, path: str) -> None:
        """Known scheme, sane sizes and rates, a stall limit longer than one read timeout."""
        from difflib import get_close_matches

        if self.scheme not in CAMERA_SCHEMES:
            close = get_close_matches(self.scheme, CAMERA_SCHEMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{join_path(path, 'uri')}: unknown camera scheme {self.scheme!r}{hint}; "
                f"expected one of {', '.join(CAMERA_SCHEMES)}"
            )
        if self.serial is not None:
            if self.scheme != "realsense":
                raise ConfigError(f"{join_path(path, 'serial')}: applies to realsense cameras, not {self.uri!r}")
            if self.uri_argument not in (None, self.serial):
                raise ConfigError(
                    f"{join_path(path, 'serial')}: {self.serial!r} conflicts with the serial in uri {self.uri!r}"
                )
        for name in ("width", "height", "depth_width", "depth_height"):
            value = getattr(self, name)
            if value is not None:
                check_range(path, name, value, low=16, high=8192)
        for name in ("fps", "depth_fps"):
            value = getattr(self, name)
            if value is not None:
                check_range(path, name, value, low=1, high=1000)
        if self.usb_type_min is not None:
            try:
                Version(self.usb_type_min)
            except InvalidVersion:
                raise ConfigError(
                    f"{join_path(path, 'usb_type_min')}: expected a USB version such as '3.0' or '3.2', "
                    f"got {self.usb_type_min!r}"
                ) from None
        for name in ("timeout_ms", "stall_fault_ms", "backoff_max_s"):
            positive(path, name, getattr(self, name))
        check_range(path, "queue_size", self.queue_size, low=1, high=64)
        if self.stall_fault_ms < self.timeout_ms:
            raise ConfigError(
                f"{join_path(path, 'stall_fault_ms')}: must be >= timeout_ms ({self.timeout_ms:g}): a stall "
                f"is declared after at least one read timed out, got {self.stall_fault_ms:g}"
            )


@dataclass(frozen=True)
class GeometryConfig(ForegroundConfig):
    """``geometry``: a :class:`~edge_ad.geometry.ForegroundConfig` plus the belt's per-pixel depth noise.

    ``noise_file``: ``.npy`` of per-pixel depth std over the calibration frames (metres, NaN
    where never valid), relative to the station file; written by ``edge-ad calibrate plane``.
    """

    noise_file: str | None = None

    def validate(self, path: str) -> None:
        """A noise file name, when given, is a non-empty ``.npy`` path."""
        if self.noise_file is not None and not self.noise_file.endswith(".npy"):
            raise ConfigError(f"{join_path(path, 'noise_file')}: expected a .npy file, got {self.noise_file!r}")

    def foreground_config(self) -> ForegroundConfig:
        """The plain ForegroundConfig the runtime takes (without the station-only keys)."""
        names = [f.name for f in fields(ForegroundConfig)]
        return ForegroundConfig(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class ModelConfig:
    """``model``: which bundle and how to run it.

    ``bundle`` is relative to the station file (null: given with ``--bundle``). ``mode``: the model
    mode this station expects (null: whatever the bundle says); checked against the camera.
    ``allow_fallback: onnxruntime`` lets a failing TensorRT engine fall back (logged, DEGRADED).
    """

    bundle: str | None = None
    backend: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    precision: Literal["fp32", "fp16", "int8"] | None = None
    threads: int | None = None
    allow_fallback: Literal["onnxruntime"] | None = None
    mode: Literal["rgb", "depth", "rgbd"] | None = None

    def validate(self, path: str) -> None:
        """Threads >= 1; a fallback differs from the backend."""
        if self.bundle is not None and not self.bundle.strip():
            raise ConfigError(f"{join_path(path, 'bundle')}: must not be empty (null: give --bundle)")
        if self.threads is not None:
            check_range(path, "threads", self.threads, low=1, high=256)
        if self.allow_fallback == self.backend:
            raise ConfigError(
                f"{join_path(path, 'allow_fallback')}: falls back to the backend it replaces ({self.backend})"
            )


@dataclass(frozen=True)
class DecisionConfig:
    """``decision``: the operating point and how long a decision may take.

    ``threshold``: raw-score threshold overriding the bundle's (null: the bundle's); ``frr_target``:
    false-reject rate used by ``edge-ad calibrate threshold``; ``min_area_fraction``: share of the
    ROI a part must cover to be present; ``latency_budget_ms``: capture of a part's best frame to
    its decision (scoring, queueing) on top of the tracker's leave frames.
    """

    threshold: float | None = None
    frr_target: float = 0.005
    min_area_fraction: float = 0.005
    latency_budget_ms: float = 250.0

    def validate(self, path: str) -> None:
        """Rates in (0, 1), a positive budget."""
        check_range(path, "frr_target", self.frr_target, low=0.0, high=0.5, low_open=True)
        check_range(path, "min_area_fraction", self.min_area_fraction, low=0.0, high=1.0, low_open=True)
        positive(path, "latency_budget_ms", self.latency_budget_ms)


@dataclass(frozen=True)
class ArchiveConfig:
    """``archive``: where rejected (and sampled accepted) parts are kept, with disk caps.

    ``dir`` is relative to the station file. Oldest files go first past ``max_bytes``,
    ``max_files`` or ``max_age_days``; below ``min_free_bytes`` free on the disk archiving pauses.
    ``sample_accepts``: share of accepted parts archived too (0 = rejects only).
    """

    enabled: bool = True
    dir: str = "archive"
    max_bytes: int = 2_000_000_000
    max_files: int = 10_000
    max_age_days: float = 30.0
    min_free_bytes: int = 500_000_000
    sample_accepts: float = 0.0

    def validate(self, path: str) -> None:
        """Caps > 0, a free-space floor >= 0, a sampling share in [0, 1]."""
        if not self.dir.strip():
            raise ConfigError(f"{join_path(path, 'dir')}: must not be empty")
        for name in ("max_bytes", "max_files", "max_age_days"):
            positive(path, name, getattr(self, name))
        check_range(path, "min_free_bytes", self.min_free_bytes, low=0)
        check_range(path, "sample_accepts", self.sample_accepts, low=0.0, high=1.0)


@dataclass(frozen=True)
class MetricsConfig:
    """``metrics``: Prometheus text endpoint port (null: off) and JSON log lines."""

    port: int | None = 9100
    json_logs: bool = False

    def validate(self, path: str) -> None:
        """A TCP port."""
        if self.port is not None:
            check_range(path, "port", self.port, low=1, high=65535)


@dataclass(frozen=True)
class LoggingConfig:
    """``logging``: a rotating log file (null: console only), relative to the station file."""

    file: str | None = None
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = 10_000_000
    backup_count: int = 5

    def validate(self, path: str) -> None:
        """RotatingFileHandler never rolls over with max_bytes 0 or backup_count 0: the file would grow forever."""
        if self.max_bytes <= 0:
            raise ConfigError(
                f"{join_path(path, 'max_bytes')}: must be > 0 (0 disables rotation and the log grows without "
                f"limit), got {self.max_bytes}"
            )
        if self.backup_count < 1:
            raise ConfigError(
                f"{join_path(path, 'backup_count')}: must be >= 1 (with 0, RotatingFileHandler never rolls "
                f"over and the log grows without limit), got {self.backup_count}"
            )
