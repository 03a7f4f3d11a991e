"""F20: the manifest's I/O spec and the model's disagree (input 1x3x64x64 vs 1x3x32x32; an output renamed).

Pass: start-up BundleError listing both specs; no inference is attempted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge_ad.backends import create_backend
from edge_ad.backends.base import TensorSpec
from edge_ad.bundle import load_bundle, verify_bundle
from edge_ad.errors import BundleError
from edge_ad.inspector import Inspector
from edge_ad.manifest import load_manifest, write_manifest
from tests.helpers.bundles import make_tiny_bundle
from tests.helpers.fault_frames import RecordingBackend


def rewrite_manifest(bundle: Path, **changes: object) -> None:
    manifest = load_manifest(bundle / "manifest.yaml")
    write_manifest(bundle, dataclasses.replace(manifest, **changes))


def test_f20_manifest_input_shape_differs_from_the_model(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    manifest = load_manifest(bundle / "manifest.yaml")
    bigger = tuple(TensorSpec(s.name, (1, 3, 64, 64), s.dtype) if s.name == "image" else s for s in manifest.inputs)
    rewrite_manifest(bundle, inputs=bigger)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    text = str(info.value)
    assert "image: shape [1, 3, 64, 64] in the manifest, [1, 3, 32, 32] in the model" in text
    assert "manifest: image float32 [1, 3, 64, 64]" in text and "model: image float32 [1, 3, 32, 32]" in text
    report = verify_bundle(bundle)
    assert not report.ok and [c.name for c in report.failures] == ["model model.onnx"]


def test_f20_an_output_name_differs(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    manifest = load_manifest(bundle / "manifest.yaml")
    renamed = tuple(TensorSpec("heatmap", s.shape, s.dtype) if s.name == "anomaly_map" else s for s in manifest.outputs)
    rewrite_manifest(bundle, outputs=renamed)
    with pytest.raises(BundleError, match=r"model has no tensor named \['heatmap'\].*anomaly_map"):
        load_bundle(bundle)


def test_f20_a_backend_whose_io_differs_is_refused_before_any_inference(tmp_path: Path) -> None:
    good = make_tiny_bundle(tmp_path / "good")
    other = make_tiny_bundle(tmp_path / "other", preprocess_config=dataclasses.replace(
        load_bundle(good).preprocess_config, image_size=64, depth_size=64))
    backend = RecordingBackend(create_backend("onnxruntime", other / "model.onnx", intra_op_num_threads=1))
    with pytest.raises(BundleError) as info:
        Inspector(load_bundle(good), backend)
    text = str(info.value)
    assert "inputs do not match the manifest" in text
    assert "manifest: image float32 [1, 3, 32, 32]" in text and "model: image float32 [1, 3, 64, 64]" in text
    assert backend.calls == []
