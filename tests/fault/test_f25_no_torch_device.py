"""F25: a device without torch. Every edge_ad module importing with torch blocked is tests/contracts; here
the commands themselves run end to end in a subprocess where importing torch raises.

Pass: ``edge-ad --help``, ``edge-ad check bundle`` and ``edge-ad run`` on a synthetic session with the
ONNX Runtime CPU backend all succeed, and torch never enters ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.contracts.test_import_wall import BLOCK_TORCH
from tests.helpers.bundles import make_tiny_bundle

pytestmark = pytest.mark.slow


def edge_ad_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    code = BLOCK_TORCH + (
        f"sys.argv = ['edge-ad', *{list(args)!r}]\n"
        "from edge_ad.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "else:\n"
        "    status = 0\n"
        "leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH_MODULES', leaked)\n"
        "sys.exit(status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
    )


def test_f25_help_check_bundle_and_run_work_without_torch(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")

    result = edge_ad_without_torch("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage" in result.stdout and "TORCH_MODULES []" in result.stdout

    result = edge_ad_without_torch("check", "bundle", str(bundle))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "bundle OK" in result.stdout and "TORCH_MODULES []" in result.stdout

    summary = tmp_path / "summary.json"
    result = edge_ad_without_torch(
        "run", "--bundle", str(bundle), "--camera", "synthetic:2", "--backend", "onnxruntime", "--max-parts", "2",
        "--size", "64", "--speed", "1.5", "--no-realtime", "--threads", "1", "--reject-delay", "0.05",
        "--json", str(summary),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "TORCH_MODULES []" in result.stdout
    data = json.loads(summary.read_text())
    assert data["parts"] == 2 == data["accepted"] + data["rejected"] + data["fault_rejected"]
    assert data["truth"]["missed_parts"] == 0
