"""Stereotype Deepening end to end: train the tiny preset, score, reload, export, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edge_ad.cli import app  # noqa: E402
from edge_ad.dataset import open_split  # noqa: E402
from edge_ad.detection_metrics import auroc  # noqa: E402
from tests.helpers.tiny_parts import make_tiny_parts  # noqa: E402
from trainer.inference import score_split  # noqa: E402
from trainer.run_io import load_detector  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def sd_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``stereotype_deepening-tiny`` trained on the tiny disc dataset."""
    from trainer.train_run import train

    out = tmp_path_factory.mktemp("sd-run") / "run"
    train(tiny_dataset, out, preset="stereotype_deepening-tiny", cache_dir=tmp_path_factory.mktemp("sd-cache"),
          progress=False)
    return out


def test_defects_score_above_good_parts_and_the_run_is_complete(sd_run: Path, tiny_dataset: Path) -> None:
    loaded = load_detector(sd_run)
    scored = score_split(loaded, open_split(tiny_dataset, "test"), progress=False)
    scores, labels = np.array([s.score for s in scored]), np.array([s.label for s in scored])
    assert {s.defect_type for s in scored} == {"good", "dent", "stain"}
    assert auroc(scores, labels) >= 0.9
    assert all(s.anomaly_map.shape == (12, 12) and s.has_mask for s in scored)  # 96 px / stride 8

    config = yaml.safe_load((sd_run / "config.yaml").read_text())
    assert config["family"] == "stereotype_deepening" and config["mode"] == "rgbd"
    assert config["aggregation"] == "max" and config["preprocess"]["depth_size"] == 96
    assert config["backbone"]["block"] == 4 and len(config["backbone"]["weights_sha256"]) == 64
    log = json.loads((sd_run / "train_log.json").read_text())
    for level in ("masters", "bachelors"):
        assert len(log[level]) == config["train"]["epochs"]
        assert log[level][-1]["l_d"] < 0.6 * log[level][0]["l_d"]  # the students learned their teachers
    assert log["seconds"]["total"] > 0 and set(log["final_losses"]) == {"masters", "bachelors"}

    # The scores written at the end of training are what the reloaded run computes, for every kind.
    val = json.loads((sd_run / "validation_scores.json").read_text())
    assert set(val["scores_by_kind"]) == {"stereotype_deepening", "sd-inference", "sd-delivery", "sd-peer"}
    for kind in ("stereotype_deepening", "sd-delivery"):
        again = score_split(loaded, open_split(tiny_dataset, "validation"), score=kind, progress=False)
        np.testing.assert_allclose([s.score for s in again], val["scores_by_kind"][kind], rtol=1e-4)


def test_export_matches_torch_in_onnx_runtime(sd_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from edge_ad.bundle import verify_bundle
    from export.pipeline import export_run, parity_inputs

    result = export_run(sd_run, tmp_path / "bundle", data=tiny_dataset, parity_samples=4)
    assert verify_bundle(result.bundle_dir).ok and result.parity.passed
    loaded = load_detector(sd_run)
    session = ort.InferenceSession(str(result.bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for inputs in parity_inputs(loaded, [open_split(tiny_dataset, "test")[::5]]):
        onnx_map, onnx_score = session.run(None, inputs)
        with torch.no_grad():
            torch_map, torch_score = loaded.detector(*(torch.from_numpy(inputs[k]) for k in ("image", "depth", "mask")))
        np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4, atol=1e-4)


def test_cli_train_model_picks_the_edge_preset(tmp_path: Path) -> None:
    data = make_tiny_parts(tmp_path / "data", n_train=4, n_validation=2, n_test_good=0, n_test_per_defect=0, size=64)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--model", "stereotype_deepening", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["preset"] == "stereotype_deepening-edge" and config["family"] == "stereotype_deepening"
    assert len(json.loads((out / "validation_scores.json").read_text())["scores"]) == 2


def test_the_line_decides_like_evaluation(sd_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    from export.pipeline import export_run
    from tests.helpers.line_check import assert_line_decides_like_evaluation, evaluation_scores

    export_run(sd_run, tmp_path / "bundle", data=tiny_dataset)
    assert_line_decides_like_evaluation(tmp_path / "bundle", tiny_dataset, evaluation_scores(sd_run, tiny_dataset))
