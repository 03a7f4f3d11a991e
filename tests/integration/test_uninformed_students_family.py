"""uninformed_students end to end: uninformed_students-tiny on the tiny disc dataset, reload, export, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edge_ad.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge_ad.cli import app  # noqa: E402
from edge_ad.dataset import open_split  # noqa: E402
from edge_ad.detection_metrics import auroc  # noqa: E402
from tests.helpers.tiny_parts import make_tiny_parts  # noqa: E402
from trainer.inference import score_split  # noqa: E402
from trainer.run_io import load_detector  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def us_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``uninformed_students-tiny`` trained (rgbd) on the tiny disc dataset."""
    from trainer.train_run import train

    out = tmp_path_factory.mktemp("us-run") / "run"
    train(tiny_dataset, out, preset="uninformed_students-tiny", cache_dir=None, progress=False)
    return out


def test_defects_score_above_good_parts(us_run: Path, tiny_dataset: Path) -> None:
    loaded = load_detector(us_run)
    scored = score_split(loaded, open_split(tiny_dataset, "test"), progress=False)
    scores = np.array([s.score for s in scored])
    labels = np.array([s.label for s in scored])
    types = np.array([s.defect_type for s in scored])
    assert auroc(scores, labels) >= 0.9
    for defect in ("dent", "stain"):  # depth-only and RGB-only defects are both found in rgbd
        pick = (types == defect) | (types == "good")
        assert auroc(scores[pick], labels[pick]) >= 0.8, defect
    assert all(s.anomaly_map.shape == (16, 16) and s.has_mask for s in scored)


def test_run_folder_and_reload_match_training(us_run: Path, tiny_dataset: Path) -> None:
    config = yaml.safe_load((us_run / "config.yaml").read_text())
    assert config["family"] == "uninformed_students" and config["mode"] == "rgbd"
    assert config["aggregation"] == "max" and config["model"]["patch_sizes"] == [33]
    assert (
        config["backbone"]["name"] == "efficientnet_lite0" and len(config["backbone"]["weights_sha256"]) == 64
    )
    log = json.loads((us_run / "train_log.json").read_text())
    assert set(log["final_losses"]) == {"teacher_p33", "students_p33"}
    students = log["students_p33"]
    assert students[-1]["loss"] < 0.5 * students[0]["loss"]
    assert log["seconds"]["total"] > 0
    val = json.loads((us_run / "validation_scores.json").read_text())
    assert set(val["scores_by_kind"]) == {"uninformed_students", "regression", "variance"}
    loaded = load_detector(us_run)
    again = score_split(loaded, open_split(tiny_dataset, "validation"), progress=False)
    np.testing.assert_allclose([s.score for s in again], val["scores"], rtol=1e-4, atol=1e-5)
    # The standardised error + variance of good validation parts are about 0 on average by construction.
    stats = loaded.detector.error_stats[0]
    assert stats[1] > 0 and np.isfinite(stats.numpy()).all()


def test_export_matches_torch_in_onnx_runtime(us_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    from export.pipeline import export_run

    bundle = tmp_path / "bundle"
    export_run(us_run, bundle, data=tiny_dataset, parity_samples=4)
    loaded = load_detector(us_run)
    from edge_ad.preprocess import preprocess, to_model_inputs

    sample = open_split(tiny_dataset, "test")[7]
    inputs = to_model_inputs([preprocess(sample.rgb, sample.xyz, loaded.preprocess_config)])
    backend = OnnxRuntimeBackend(bundle / "model.onnx")
    onnx_out = backend.infer(inputs)
    backend.close()
    with torch.no_grad():
        torch_map, torch_score = loaded.detector(
            *(torch.from_numpy(inputs[k]) for k in ("image", "depth", "mask"))
        )
    np.testing.assert_allclose(onnx_out["anomaly_map"], torch_map.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(onnx_out["score"], torch_score.numpy(), rtol=1e-3, atol=1e-3)
    result = CliRunner().invoke(app, ["check", "bundle", str(bundle)])
    assert result.exit_code == 0, result.output


def test_cli_train_model_uninformed_students(tmp_path: Path) -> None:
    data = make_tiny_parts(
        tmp_path / "data", n_train=4, n_validation=2, n_test_good=0, n_test_per_defect=0, size=64
    )
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        "uninformed_students",
        "--epochs",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--preset", "uninformed_students-tiny", "--mode", "depth"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["family"] == "uninformed_students" and config["mode"] == "depth"
    assert config["train"]["epochs"] == 1 and config["backbone"]["weights_sha256"] is None
    assert config["model"]["target_channels"] == 16  # depth mode: only the depth reconstruction target
    unknown = CliRunner().invoke(app, [*args[:-2], "--preset", "ast-tiny"])
    assert unknown.exit_code == 2 and "does not match" in unknown.output


def test_the_line_decides_like_evaluation(us_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    from export.pipeline import export_run
    from tests.helpers.line_check import assert_line_decides_like_evaluation, evaluation_scores

    export_run(us_run, tmp_path / "bundle", data=tiny_dataset)
    assert_line_decides_like_evaluation(tmp_path / "bundle", tiny_dataset, evaluation_scores(us_run, tiny_dataset))
