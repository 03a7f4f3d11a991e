"""Test-suite wiring: hardware markers are applied and skipped automatically.

Tests that import torch are marked ``torch`` by their module (``pytestmark``); tests that
need a camera library or a GPU are marked ``realsense`` / ``gpu`` and skip when it is absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
TIRE_ROOT = SHARED / "data" / "mvtec3d-tire-rgb" / "tire"
REALSENSE_BAG = SHARED / "data" / "realsense" / "single_depth_color_640x480.bag"

# Keep torch and onnxruntime from oversubscribing the small CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _importable(module: str) -> bool:
    """True when ``module`` really imports (pyrealsense2 is found but fails to load without libusb)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError):
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip marked tests whose hardware or optional dependency is missing."""
    skip_torch = pytest.mark.skip(reason="torch not installed (pip install -e '.[train]')")
    skip_rs = pytest.mark.skip(reason="pyrealsense2 not importable (pip install -e '.[realsense]' and libusb-1.0-0)")
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with TensorRT")
    have_torch = _have("torch")
    have_rs = _importable("pyrealsense2")
    have_trt = _have("tensorrt")
    for item in items:
        if "torch" in item.keywords and not have_torch:
            item.add_marker(skip_torch)
        if "realsense" in item.keywords and not have_rs:
            item.add_marker(skip_rs)
        if "gpu" in item.keywords and not have_trt:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def realsense_bag() -> Path:
    """The shared real D435 recording; skips when the checkout has no shared/ data."""
    if not REALSENSE_BAG.is_file():
        pytest.skip(f"shared RealSense recording not found at {REALSENSE_BAG}")
    return REALSENSE_BAG


@pytest.fixture(scope="session")
def tire_root() -> Path:
    """The shared MVTec 3D-AD tire subset (RGB only); skips when the checkout has no shared/ data."""
    if not TIRE_ROOT.is_dir():
        pytest.skip(f"shared tire data not found at {TIRE_ROOT}")
    return TIRE_ROOT
