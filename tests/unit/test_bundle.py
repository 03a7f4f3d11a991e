"""Bundle verification: every refusal path says what is wrong; `edge-ad check bundle` exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from edge_ad.bundle import load_bundle, verify_bundle
from edge_ad.commands import check
from edge_ad.errors import BundleError
from edge_ad.manifest import MANIFEST_NAME, describe_files
from tests.helpers.bundles import make_tiny_bundle, tiny_preprocess_config

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle", threshold=0.8)


def _edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:
    path = bundle / MANIFEST_NAME
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _rehash(bundle: Path) -> None:
    """Make the manifest's hashes describe the files as they are now (to reach checks past hashing)."""
    files = {name: entry.__dict__ for name, entry in describe_files(bundle, {"model.onnx": "model"}).items()}
    _edit_manifest(bundle, lambda d: d.update(files=files))


def _refusal(bundle: Path, **kwargs: bool) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle, **kwargs)
    return str(info.value)


def test_good_bundle_loads(bundle: Path) -> None:
    loaded = load_bundle(bundle)
    assert loaded.root == bundle
    assert loaded.model_path() == bundle / "model.onnx"
    assert loaded.preprocess_config == tiny_preprocess_config()
    assert loaded.manifest.scoring.threshold.value == 0.8
    report = verify_bundle(bundle)
    assert report.ok
    assert [c.name for c in report.checks] == [
        "bundle directory",
        "manifest",
        "preprocess",
        "file model.onnx",
        "unlisted files",
        "model model.onnx",
    ]


def test_missing_directory_and_manifest(tmp_path: Path, bundle: Path) -> None:
    assert "bundle directory not found" in _refusal(tmp_path / "nope")
    (bundle / MANIFEST_NAME).unlink()
    message = _refusal(bundle)
    assert "manifest not found" in message and str(bundle / MANIFEST_NAME) in message


def test_malformed_manifest(bundle: Path) -> None:
    (bundle / MANIFEST_NAME).write_text("schema_version: 1\nmodel: {name: [\n")
    assert "malformed manifest" in _refusal(bundle)


def test_missing_field_and_unknown_key(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["model"].pop("preset"))
    assert "model.preset: missing field" in _refusal(bundle)
    _edit_manifest(bundle, lambda d: d["model"].update(preset="tiny", colour="red"))
    assert "model.colour: unknown key" in _refusal(bundle)


def test_newer_schema_is_refused(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d.update(schema_version=7))
    assert "schema_version 7 is newer than supported (1)" in _refusal(bundle)


def test_bad_preprocess_section(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["preprocess"].update(image_size="big"))
    message = _refusal(bundle)
    assert "preprocess" in message and "image_size" in message
    _edit_manifest(bundle, lambda d: d["preprocess"].update(image_size=32, mode="rgb"))
    assert "preprocess.mode 'rgb' differs from model.mode 'rgbd'" in _refusal(bundle)


def test_listed_file_missing(bundle: Path) -> None:
    (bundle / "model.onnx").unlink()
    assert "model.onnx: listed in the manifest but missing" in _refusal(bundle)


def test_truncated_file_reports_both_sizes(bundle: Path) -> None:
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[:100])
    assert f"truncated: expected {len(data)} bytes, found 100 bytes" in _refusal(bundle)


def test_flipped_byte_reports_both_hashes(bundle: Path) -> None:
    path = bundle / "model.onnx"
    data = bytearray(path.read_bytes())
    expected = yaml.safe_load((bundle / MANIFEST_NAME).read_text())["files"]["model.onnx"]["sha256"]
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    message = _refusal(bundle)
    assert f"sha256 mismatch: expected {expected}, actual " in message


def test_hash_check_can_be_skipped_but_sizes_cannot(bundle: Path) -> None:
    (bundle / "notes.txt").write_text("trained on line 3")
    _rehash(bundle)
    (bundle / "notes.txt").write_text("trained on line 4")  # same size, different bytes
    assert "sha256 mismatch" in _refusal(bundle)
    load_bundle(bundle, check_hashes=False)
    (bundle / "notes.txt").write_text("trained on line 42")
    assert "larger than listed: expected 17 bytes, found 18 bytes" in _refusal(bundle, check_hashes=False)


def test_git_lfs_pointer(bundle: Path) -> None:
    (bundle / "model.onnx").write_text(LFS_POINTER)
    message = _refusal(bundle)
    assert f"looks like a git-lfs pointer ({len(LFS_POINTER)} bytes" in message
    assert "run `git lfs pull`" in message


def test_onnx_that_does_not_parse(bundle: Path) -> None:
    (bundle / "model.onnx").write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 8)
    _rehash(bundle)  # hashes match, so only parsing can catch it
    message = _refusal(bundle)
    assert "not a loadable ONNX model" in message and "INVALID_PROTOBUF" in message


def test_input_spec_mismatch_lists_both_sides(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["inputs"][0].update(shape=[1, 3, 64, 64]))
    message = _refusal(bundle)
    assert "inputs do not match the manifest" in message
    assert "image: shape [1, 3, 64, 64] in the manifest, [1, 3, 32, 32] in the model" in message
    assert (
        "manifest: image float32 [1, 3, 64, 64]" in message
        and "model: image float32 [1, 3, 32, 32]" in message
    )


def test_output_name_mismatch(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["outputs"][1].update(name="image_score"))
    message = _refusal(bundle)
    assert "outputs do not match the manifest" in message
    assert "model has no tensor named ['image_score']" in message
    assert "model has tensors the manifest does not list: ['score']" in message


def test_unlisted_file_is_refused(bundle: Path) -> None:
    (bundle / "model.int8.onnx").write_bytes(b"stray")
    (bundle / "engines").mkdir()
    (bundle / "engines" / "built_on_device.plan").write_bytes(b"plan")  # engines/ is verified by its backend
    message = _refusal(bundle)
    assert "files not covered by the manifest's hashes: model.int8.onnx" in message
    assert "built_on_device" not in message


def test_verify_reports_every_check(bundle: Path) -> None:
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[:-1])
    (bundle / "extra.bin").write_bytes(b"x")
    report = verify_bundle(bundle)
    assert not report.ok
    status = {c.name: c.status for c in report.checks}
    assert status == {
        "bundle directory": "ok",
        "manifest": "ok",
        "preprocess": "ok",
        "file model.onnx": "failed",
        "unlisted files": "failed",
        "model model.onnx": "skipped",
    }
    assert report.to_dict()["ok"] is False


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    check.register(app)
    return app


def test_cli_check_bundle_exit_codes(bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    app = _cli()
    ok = runner.invoke(app, ["check", "bundle", str(bundle)])
    assert ok.exit_code == 0, ok.output
    assert "bundle OK" in ok.output

    as_json = runner.invoke(app, ["check", "bundle", str(bundle), "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["ok"] is True

    (bundle / "model.onnx").write_text(LFS_POINTER)
    bad = runner.invoke(app, ["check", "bundle", str(bundle), "--json"])
    assert bad.exit_code == BundleError.exit_code == 4
    failed = [c for c in json.loads(bad.output)["checks"] if c["status"] == "failed"]
    assert [c["name"] for c in failed] == ["file model.onnx"]
    assert "git lfs pull" in failed[0]["detail"]

    missing = runner.invoke(app, ["check", "bundle", str(tmp_path / "absent")])
    assert missing.exit_code == 4
    assert "bundle refused" in missing.output
