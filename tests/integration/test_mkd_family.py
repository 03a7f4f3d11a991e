"""The mkd family end to end: mkd-tiny trains, separates defects, reloads, exports, and trains from the CLI."""

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
def mkd_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mkd-tiny`` trained on the tiny disc dataset."""
    from trainer.train_run import train

    out = tmp_path_factory.mktemp("mkd-run") / "run"
    train(
        tiny_dataset, out, preset="mkd-tiny", cache_dir=tmp_path_factory.mktemp("mkd-cache"), progress=False
    )
    return out


def test_stains_score_above_good_parts_and_the_run_is_recorded(mkd_run: Path, tiny_dataset: Path) -> None:
    scored = score_split(load_detector(mkd_run), open_split(tiny_dataset, "test"), progress=False)
    scores = np.array([s.score for s in scored])
    labels = np.array([s.label for s in scored])
    stain = np.array([s.defect_type in ("good", "stain") for s in scored])
    # RGB only: stains are visible, dents (depth only) are not, so the bound is on stains vs good.
    assert auroc(scores[stain], labels[stain]) >= 0.95
    assert auroc(scores, labels) >= 0.7
    assert all(s.anomaly_map.shape == (16, 16) and s.has_mask for s in scored)
    config = yaml.safe_load((mkd_run / "config.yaml").read_text())
    assert config["family"] == "mkd" and config["mode"] == "rgb" and config["aggregation"] == "max"
    assert config["model"]["loss"] == "code" and config["model"]["lam"] == 0.5
    assert config["backbone"]["taps"] == [2, 4] and len(config["backbone"]["weights_sha256"]) == 64
    log = json.loads((mkd_run / "train_log.json").read_text())
    assert len(log["cloner"]) == config["train"]["epochs"]
    assert log["cloner"][-1]["loss"] < 0.7 * log["cloner"][0]["loss"]
    assert log["final_losses"]["cloner"] == log["cloner"][-1]["loss"] and log["seconds"]["total"] > 0


def test_reload_matches_the_validation_scores_of_training(mkd_run: Path, tiny_dataset: Path) -> None:
    val = json.loads((mkd_run / "validation_scores.json").read_text())
    assert set(val["scores_by_kind"]) == {"mkd", "mkd-gradient"}
    loaded = load_detector(mkd_run)
    for kind in ("mkd", "mkd-gradient"):
        again = score_split(loaded, open_split(tiny_dataset, "validation"), score=kind, progress=False)
        np.testing.assert_allclose([s.score for s in again], val["scores_by_kind"][kind], rtol=1e-4)


def test_export_matches_torch_in_onnx_runtime(mkd_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from edge_ad.bundle import verify_bundle
    from export.pipeline import export_run

    result = export_run(mkd_run, tmp_path / "bundle", data=tiny_dataset)
    assert result.parity.passed and verify_bundle(tmp_path / "bundle").ok
    detector = load_detector(mkd_run).detector
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, 64, 64, generator=generator)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 10:50, 12:52] = 1.0
    depth = torch.zeros_like(mask)
    with torch.no_grad():
        expected_map, expected_score = detector(image, depth, mask)
    session = ort.InferenceSession(
        str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got_map, got_score = session.run(
        None, {"image": image.numpy(), "depth": depth.numpy(), "mask": mask.numpy()}
    )
    np.testing.assert_allclose(got_map, expected_map.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_score, expected_score.numpy(), rtol=1e-4, atol=1e-4)


def test_cli_train_model_mkd_uses_the_edge_preset_and_refuses_rgbd(tmp_path: Path) -> None:
    data = make_tiny_parts(
        tmp_path / "data", n_train=3, n_validation=2, n_test_good=0, n_test_per_defect=0, size=64
    )
    runner = CliRunner()
    args = ["train", "--data", str(data), "--model", "mkd", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run"), "--epochs", "1", "--seed", "2"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["preset"] == "mkd-edge" and config["seed"] == 2 and config["train"]["epochs"] == 1
    assert len(json.loads((tmp_path / "run" / "validation_scores.json").read_text())["scores"]) == 2
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "rgbd"), "--mode", "rgbd"])
    assert refused.exit_code == 2 and "--mode rgb" in refused.output


def test_the_line_decides_like_evaluation(mkd_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    from export.pipeline import export_run
    from tests.helpers.line_check import assert_line_decides_like_evaluation, evaluation_scores

    export_run(mkd_run, tmp_path / "bundle", data=tiny_dataset)
    assert_line_decides_like_evaluation(tmp_path / "bundle", tiny_dataset, evaluation_scores(mkd_run, tiny_dataset))
