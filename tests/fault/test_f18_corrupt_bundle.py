"""F18: corrupt or wrong model files (truncated ONNX, git-lfs pointer, SHA-256 mismatch, missing manifest).

Pass: BundleError with a specific message; ``edge-ad check bundle`` exits 4 and names the problem;
``edge-ad run`` refuses with 4 before opening the camera or the reject output (safe state kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_ad.bundle import load_bundle
from edge_ad.cli import app
from edge_ad.errors import BundleError
from edge_ad.hashing import sha256_file
from tests.helpers.bundles import make_tiny_bundle


def truncate(bundle: Path) -> str:
    model = bundle / "model.onnx"
    size = model.stat().st_size
    model.write_bytes(model.read_bytes()[: size // 2])
    return f"truncated: expected {size} bytes, found {size // 2} bytes"


def lfs_pointer(bundle: Path) -> str:
    model = bundle / "model.onnx"
    oid = sha256_file(model)
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {model.stat().st_size}\n"
    model.write_text(text)
    return f"looks like a git-lfs pointer ({len(text)} bytes"


def flip_a_byte(bundle: Path) -> str:
    model = bundle / "model.onnx"
    expected = sha256_file(model)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    return f"sha256 mismatch: expected {expected}, actual {sha256_file(model)}"


def drop_manifest(bundle: Path) -> str:
    (bundle / "manifest.yaml").unlink()
    return "manifest.yaml"


CORRUPTIONS: dict[str, Callable[[Path], str]] = {
    "truncated": truncate, "lfs-pointer": lfs_pointer, "sha-mismatch": flip_a_byte, "no-manifest": drop_manifest,
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_f18_a_corrupt_bundle_is_refused_with_a_specific_message(tmp_path: Path, kind: str) -> None:
    bundle = make_tiny_bundle(tmp_path / "bundle")
    expected = CORRUPTIONS[kind](bundle)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    assert expected in str(info.value)
    result = CliRunner().invoke(app, ["check", "bundle", str(bundle)], env={"COLUMNS": "400"})
    assert result.exit_code == 4, result.output
    assert "bundle refused" in result.output


def test_f18_run_refuses_a_corrupt_bundle_before_camera_and_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_ad.runtime_setup
    import edge_ad.sources

    bundle = make_tiny_bundle(tmp_path / "bundle")
    lfs_pointer(bundle)
    opened: list[str] = []
    monkeypatch.setattr(edge_ad.sources, "open_source", lambda *a, **k: opened.append("camera"))
    monkeypatch.setattr(edge_ad.runtime_setup, "open_line_io", lambda *a, **k: opened.append("gpio"))
    result = CliRunner().invoke(app, ["run", "--bundle", str(bundle), "--camera", "synthetic", "--max-parts", "1"])
    assert result.exit_code == 4, result.output
    assert "git-lfs pointer" in result.output and opened == []
