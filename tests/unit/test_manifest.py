"""Manifest schema: round trip, strict parsing with dotted paths, normalization and file digests."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_ad.errors import BundleError
from edge_ad.manifest import (
    MANIFEST_NAME,
    Manifest,
    Normalization,
    ThresholdSpec,
    describe_files,
    load_manifest,
    write_manifest,
)
from edge_ad.thresholds import NormalizationStats, threshold_for_frr
from edge_ad.typed_data import load_dataclass
from tests.helpers.bundles import make_tiny_bundle


@pytest.fixture(scope="module")
def tiny_dict(tmp_path_factory: pytest.TempPathFactory) -> dict:
    bundle = make_tiny_bundle(tmp_path_factory.mktemp("bundle"), threshold=0.75)
    return yaml.safe_load((bundle / MANIFEST_NAME).read_text())


def _parse_error(data: dict) -> str:
    with pytest.raises(BundleError) as info:
        Manifest.from_dict(data, source="m.yaml")
    return str(info.value)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b", threshold=0.75, aggregation="mean")
    manifest = load_manifest(bundle)
    assert manifest.scoring.threshold.value == 0.75
    assert manifest.scoring.aggregation == "mean"
    assert manifest.inputs[0].name == "image" and manifest.inputs[0].shape == (1, 3, 32, 32)
    assert manifest.files["model.onnx"].role == "model"
    assert (
        manifest.files["model.onnx"].sha256
        == hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    )
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    write_manifest(tmp_path / "b", manifest)
    assert load_manifest(bundle / MANIFEST_NAME) == manifest
    text = (bundle / MANIFEST_NAME).read_text()
    assert str(tmp_path) not in text  # never an absolute path of this machine


def test_unknown_key_names_the_dotted_path(tiny_dict: dict) -> None:
    data = copy.deepcopy(tiny_dict)
    data["scoring"]["threshold"]["margin"] = 3
    message = _parse_error(data)
    assert "m.yaml" in message and "scoring.threshold.margin: unknown key" in message

    data = copy.deepcopy(tiny_dict)
    data["comment"] = "hi"
    assert "comment: unknown key" in _parse_error(data)


def test_missing_field_names_the_dotted_path(tiny_dict: dict) -> None:
    data = copy.deepcopy(tiny_dict)
    del data["scoring"]["threshold"]["value"]
    assert "scoring.threshold.value: missing field" in _parse_error(data)
    data = copy.deepcopy(tiny_dict)
    del data["versions"]
    assert "versions: missing field" in _parse_error(data)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda d: d["scoring"]["threshold"].update(value="high"),
            "scoring.threshold.value: expected a number, got str",
        ),
        (lambda d: d["inputs"][1].update(shape="1x1"), "inputs[1].shape: expected a list"),
        (lambda d: d["inputs"][0]["shape"].__setitem__(2, 0), "inputs[0].shape: dims must be >= 1"),
        (lambda d: d["inputs"][0].update(dtype="float33"), "inputs[0].dtype: not a numpy dtype name"),
        (lambda d: d["outputs"][1].update(name="anomaly_map"), "duplicate tensor name"),
        (lambda d: d.update(precision="int4"), "precision: must be one of"),
        (lambda d: d["scoring"].update(aggregation="median"), "scoring.aggregation: must be one of"),
        (lambda d: d.update(schema_version="1"), "schema_version: expected an integer"),
        (lambda d: d["model"].update(source_run="/home/me/runs/r1"), "model.source_run: must be a run name"),
        (lambda d: d["model"].update(created="yesterday"), "model.created: not an ISO 8601 time"),
        (
            lambda d: d["scoring"]["threshold"].update(target_frr=1.5),
            "scoring.threshold.target_frr: must be a fraction",
        ),
        (
            lambda d: d["files"]["model.onnx"].update(sha256="abc"),
            "files.model.onnx.sha256: expected 64 lowercase hex",
        ),
        (
            lambda d: d["files"]["model.onnx"].update(role="weights"),
            "expected exactly one file with role 'model' for precision fp32, found none",
        ),
        (lambda d: d["files"].update({"../x.bin": d["files"]["model.onnx"]}), "must be relative POSIX paths"),
        (lambda d: d.update(preprocess=[1, 2]), "preprocess: expected a mapping"),
    ],
)
def test_wrong_values_are_refused(tiny_dict: dict, edit, fragment: str) -> None:
    data = copy.deepcopy(tiny_dict)
    edit(data)
    assert fragment in _parse_error(data)


def test_newer_schema_is_refused_before_unknown_keys(tiny_dict: dict) -> None:
    data = copy.deepcopy(tiny_dict)
    data["schema_version"] = 2
    data["calibration_cache"] = "x"  # a v2 key must not mask the real problem
    message = _parse_error(data)
    assert "schema_version 2 is newer than supported (1)" in message
    assert "unknown key" not in message


def test_malformed_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest not found"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("model: [unclosed\n")
    with pytest.raises(BundleError, match="malformed manifest"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("")
    with pytest.raises(BundleError, match="expected a mapping"):
        load_manifest(tmp_path)


def test_normalization_methods() -> None:
    assert Normalization("threshold", threshold=0.5).apply(0.75) == pytest.approx(1.5)
    assert Normalization("none").apply(0.75) == 0.75
    stats = NormalizationStats.from_good_scores(np.array([1.0, 2.0, 3.0, 4.0]), threshold=3.5)
    robust = Normalization("robust", threshold=stats.threshold, median=stats.median, scale=stats.scale)
    assert robust.apply(3.5) == pytest.approx(1.0)
    assert robust.apply(2.5) == pytest.approx(stats.normalize(2.5))
    with pytest.raises(
        BundleError, match=r"normalization.median: missing field \(needed by method 'robust'\)"
    ):
        _load_normalization({"method": "robust", "threshold": 1.0, "scale": 1.0})
    with pytest.raises(BundleError, match="normalization.median: not used by method 'threshold'"):
        _load_normalization({"method": "threshold", "threshold": 1.0, "median": 0.0})
    with pytest.raises(BundleError, match="must be > 0"):
        _load_normalization({"method": "threshold", "threshold": 0.0})


def _load_normalization(data: dict) -> Normalization:
    return load_dataclass(Normalization, data, error=BundleError, path="normalization")


def test_threshold_spec_from_threshold_choice() -> None:
    choice = threshold_for_frr(np.linspace(0.0, 1.0, 200), target_frr=0.01)
    spec = ThresholdSpec.from_choice(choice, data_hash="abc")
    assert spec.value == choice.threshold and spec.n_good == 200
    assert spec.target_frr == 0.01 and spec.frr_upper_95 == pytest.approx(choice.frr_upper_95)


def test_describe_files_hashes_everything_but_manifest_and_engines(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x01")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("hello")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "x.plan").write_bytes(b"plan")
    (tmp_path / MANIFEST_NAME).write_text("{}")
    files = describe_files(tmp_path, {"model.onnx": "model"})
    assert sorted(files) == ["model.onnx", "sub/notes.txt"]
    assert files["sub/notes.txt"].bytes == 5 and files["sub/notes.txt"].role == "other"
    assert files["sub/notes.txt"].sha256 == hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(BundleError, match="do not exist: model.int8.onnx"):
        describe_files(tmp_path, {"model.int8.onnx": "model_int8"})


def test_write_manifest_refuses_what_it_could_not_read(tmp_path: Path, tiny_dict: dict) -> None:
    data = copy.deepcopy(tiny_dict)
    manifest = Manifest.from_dict(data)
    bad = Manifest(**{**manifest.__dict__, "files": {"/abs/model.onnx": manifest.files["model.onnx"]}})
    with pytest.raises(BundleError, match="relative POSIX"):
        write_manifest(tmp_path, bad)
    assert not (tmp_path / MANIFEST_NAME).exists()
