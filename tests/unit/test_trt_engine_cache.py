"""Engine names, sidecars and refusals: an engine for another TensorRT, GPU, precision or model never loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ad.errors import BundleError, ConfigError
from edge_ad.manifest import load_manifest
from edge_ad.trt_engine_cache import (
    EngineKey,
    build_engine_command,
    check_engine,
    find_engine,
    key_for,
    other_engines,
    parse_engine_name,
    same_engine_version,
    supports_explicit_quantization,
    tensorrt_onnx,
    trtexec_command,
    uses_name_based_io,
    write_sidecar,
)
from tests.helpers.bundles import make_tiny_bundle

HASH = "ab" * 32


def _engine(directory: Path, key: EngineKey, name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or key.file_name)
    path.write_bytes(b"not a real plan")
    write_sidecar(path, key)
    return path


def test_file_name_says_what_the_engine_depends_on() -> None:
    key = EngineKey("10.3.0.30", "87", "fp16", HASH)
    assert key.file_name == f"trt10.3.0_sm87_fp16_{HASH[:16]}.engine"
    assert parse_engine_name(key.file_name) == {"version": "10.3.0", "cc": "87", "precision": "fp16", "hash": HASH[:16]}
    assert parse_engine_name("model.engine") is None
    with pytest.raises(ConfigError, match="precision"):
        EngineKey("8.5.2", "72", "int4", HASH)
    with pytest.raises(ConfigError, match="not a version"):
        EngineKey("eight", "72", "fp16", HASH)


def test_versions_compare_as_versions() -> None:
    assert same_engine_version("8.5.2.2", "8.5.2.1")  # build number does not matter
    assert not same_engine_version("8.5.2", "8.6.1")
    assert not same_engine_version("10.10.0", "10.1.0")  # a string compare would call these close
    assert uses_name_based_io("10.0.1") and uses_name_based_io("10.10.0")
    assert not uses_name_based_io("8.6.1") and not uses_name_based_io("9.99")
    assert supports_explicit_quantization("8.0.1") and not supports_explicit_quantization("7.1.3")


@pytest.mark.parametrize(
    ("built", "why"),
    [
        (EngineKey("8.5.2", "87", "fp16", HASH), "built with TensorRT 8.5.2"),
        (EngineKey("10.3.0", "72", "fp16", HASH), "built for GPU sm_72, this GPU is sm_87"),
        (EngineKey("10.3.0", "87", "int8", HASH), "precision int8, asked for fp16"),
        (EngineKey("10.3.0", "87", "fp16", "cd" * 32), "another ONNX model"),
    ],
)
def test_incompatible_engines_are_refused_before_loading(tmp_path: Path, built: EngineKey, why: str) -> None:
    wanted = EngineKey("10.3.0", "87", "fp16", HASH)
    # Same file name as the wanted engine, but the sidecar tells the truth.
    path = _engine(tmp_path, built, name=wanted.file_name)
    with pytest.raises(BundleError, match=f"engine incompatible.*{why}.*rebuild on target"):
        check_engine(path, wanted)
    check_engine(_engine(tmp_path / "ok", wanted), wanted)  # the matching one passes


def test_renamed_or_unlabelled_engines_are_refused(tmp_path: Path) -> None:
    wanted = EngineKey("10.3.0", "87", "fp16", HASH)
    good = _engine(tmp_path, wanted)
    renamed = tmp_path / EngineKey("10.3.0", "72", "fp16", HASH).file_name
    good.rename(renamed)
    (tmp_path / good.with_suffix(".json").name).rename(renamed.with_suffix(".json"))
    with pytest.raises(BundleError, match="sm_72"):
        check_engine(renamed, EngineKey("10.3.0", "72", "fp16", HASH))  # sidecar still says sm_87
    bare = tmp_path / wanted.file_name
    bare.write_bytes(b"x")
    with pytest.raises(BundleError, match="no sidecar"):
        check_engine(bare, wanted)
    with pytest.raises(BundleError, match="not an edge-ad engine name"):
        check_engine(_engine(tmp_path, wanted, name="model.engine"), wanted)


def test_finding_engines_and_naming_the_others(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    onnx_path = tensorrt_onnx(bundle, load_manifest(bundle), "int8")
    assert onnx_path.name == "model.onnx"  # no TensorRT Q/DQ model in this bundle: calibrate on device
    key = key_for(onnx_path, "10.3.0", (8, 7), "fp16")
    engines = bundle / "engines"
    assert find_engine(engines, key) is None
    old = _engine(engines, EngineKey("8.5.2", "87", "fp16", key.onnx_sha256))
    assert other_engines(engines, key) == [old.name]
    built = _engine(engines, key)
    assert find_engine(engines, key) == built


def test_commands_for_the_device() -> None:
    assert build_engine_command(Path("bundles/b"), "int8", 512) == "edge-ad build-engine bundles/b --precision int8 --workspace-mb 512"
    new = trtexec_command(Path("m.onnx"), Path("e.engine"), "fp16", "10.3.0", 2048)
    assert new == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.engine", "--memPoolSize=workspace:2048", "--fp16"]
    old = trtexec_command(Path("m.onnx"), Path("e.engine"), "int8", "8.2.1", 256, Path("c.calib"))
    assert old == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.engine", "--workspace=256", "--int8", "--calib=c.calib"]
    with pytest.raises(ConfigError):
        trtexec_command(Path("m.onnx"), Path("e.engine"), "fp16", "10.3.0", 0)


def test_trtexec_pins_the_float_nodes_to_fp32() -> None:
    pins = ["--precisionConstraints=obey", "--layerPrecisions=/tail/Sub:fp32,/tail/Sqrt:fp32",
            "--layerOutputTypes=/tail/Sub:fp32,/tail/Sqrt:fp32"]
    nodes = ("/tail/Sub", "/tail/Sqrt", "/tail/Sub")  # a repeated name is written once
    fp16 = trtexec_command(Path("m.onnx"), Path("e.engine"), "fp16", "10.3.0", 512, float_nodes=nodes)
    assert fp16 == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.engine", "--memPoolSize=workspace:512", "--fp16", *pins]
    int8 = trtexec_command(Path("q.onnx"), Path("e.engine"), "int8", "8.5.2.2", 512, None, nodes)
    assert int8[-4:] == ["--int8", *pins]
    fp32 = trtexec_command(Path("m.onnx"), Path("e.engine"), "fp32", "10.3.0", 512, float_nodes=nodes)
    assert not any(arg.startswith(("--precisionConstraints", "--layer")) for arg in fp32)  # already FP32
