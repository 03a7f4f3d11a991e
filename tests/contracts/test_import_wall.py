"""The device runtime (edge_ad, calibration) must import and run with torch unavailable."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

DEVICE_PACKAGES = ("edge_ad", "calibration")


def _device_modules() -> list[str]:
    names: list[str] = []
    for package in DEVICE_PACKAGES:
        names.append(package)
        path = REPO_ROOT / package
        for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
            names.append(info.name)
    return sorted(names)


BLOCK_TORCH = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in the device runtime: ' + name)\n"
    "        return None\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def test_walk_finds_modules() -> None:
    modules = _device_modules()
    assert "edge_ad.cli" in modules
    assert "edge_ad.geometry" in modules or "edge_ad.frame" in modules


@pytest.mark.parametrize("module", _device_modules())
def test_module_imports_without_torch(module: str) -> None:
    code = BLOCK_TORCH + f"import importlib\nimportlib.import_module({module!r})\n"
    code += "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules), 'torch leaked'\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cli_help_without_torch() -> None:
    code = BLOCK_TORCH + "import sys\nsys.argv=['edge-ad','--help']\nfrom edge_ad.cli import main\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
