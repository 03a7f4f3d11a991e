"""Typed exceptions raised by the library; only the CLI turns them into exit codes.

Exit codes (documented in README.md):

====  =================  ==============================================================
code  exception          meaning
====  =================  ==============================================================
0     -                  success
1     EdgeAdError        unexpected failure inside edge-ad
2     ConfigError        a configuration file or command-line value is invalid
3     DataError          a dataset, image or recording cannot be read or is inconsistent
4     BundleError        a model bundle is missing, corrupt or does not match the runtime
5     CameraError        the camera is missing, stalled or delivers the wrong profile
6     GeometryError      depth is unusable (too few valid points, no background plane)
7     InferenceError     the inference backend failed or returned invalid values
8     ExportError        export failed a structural or parity gate
9     TrainingError      training could not run (no samples, diverged)
10    WeightsError       backbone weights are missing or do not match the architecture
====  =================  ==============================================================
"""

from __future__ import annotations


class EdgeAdError(Exception):
    """Base class of every error edge-ad raises on purpose."""

    exit_code: int = 1


class ConfigError(EdgeAdError):
    """A configuration value is malformed, unknown or out of range."""

    exit_code = 2


class DataError(EdgeAdError):
    """A dataset file is unreadable or inconsistent with its siblings."""

    exit_code = 3


class BundleError(EdgeAdError):
    """A model bundle failed verification."""

    exit_code = 4


class CameraError(EdgeAdError):
    """The camera cannot deliver frames as configured."""

    exit_code = 5


class CameraDisconnected(CameraError):
    """The camera went away while streaming (it may come back)."""


class GeometryError(EdgeAdError):
    """Depth data is unusable for foreground extraction."""

    exit_code = 6


class PlaneFitError(GeometryError):
    """No background plane could be fitted (too few points or degenerate geometry)."""


class InferenceError(EdgeAdError):
    """An inference backend failed or produced invalid output."""

    exit_code = 7


class ExportError(EdgeAdError):
    """Model export failed a structural or numeric check."""

    exit_code = 8


class TrainingError(EdgeAdError):
    """Training could not proceed."""

    exit_code = 9


class WeightsError(EdgeAdError):
    """Backbone weights are missing or do not fit the architecture."""

    exit_code = 10
