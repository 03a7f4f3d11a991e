"""REB end to end: reb-tiny trains on the tiny discs, reloads, exports, and estimates synthetic recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from calibration.synthetic_recall import estimate_recall_with_defect_maker  # noqa: E402
from edge_ad.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge_ad.bundle import load_bundle  # noqa: E402
from edge_ad.cli import app  # noqa: E402
from edge_ad.dataset import open_split  # noqa: E402
from edge_ad.defect_maker import CLASSES  # noqa: E402
from edge_ad.detection_metrics import auroc  # noqa: E402
from export.pipeline import export_run  # noqa: E402
from trainer.features import preprocessed_batches  # noqa: E402
from trainer.inference import score_split  # noqa: E402
from trainer.run_io import load_detector  # noqa: E402
from trainer.train_run import train  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def reb_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reb-run") / "run"
    train(tiny_dataset, out, preset="reb-tiny", cache_dir=tmp_path_factory.mktemp("reb-cache"), progress=False)
    return out


@pytest.fixture(scope="module")
def reb_bundle(reb_run: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reb-bundle") / "bundle"
    export_run(reb_run, out, data=tiny_dataset)
    return out


def test_defects_score_above_good_parts(reb_run: Path, tiny_dataset: Path) -> None:
    loaded = load_detector(reb_run)
    for kind in ("reb", "knn"):
        scored = score_split(loaded, open_split(tiny_dataset, "test"), score=kind, progress=False)
        scores = np.array([s.score for s in scored])
        labels = np.array([s.label for s in scored])
        assert auroc(scores, labels) >= 0.9, kind  # rgbd: dents (depth only) and stains (colour only)
        assert all(s.anomaly_map.shape == (16, 16) for s in scored)


def test_run_folder_and_reload_match_training(reb_run: Path, tiny_dataset: Path) -> None:
    config = yaml.safe_load((reb_run / "config.yaml").read_text())
    assert config["family"] == "reb" and config["mode"] == "rgbd" and config["aggregation"] == "max"
    assert config["backbone"]["finetuned"] is True and len(config["backbone"]["weights_sha256"]) == 64
    memory = config["memory"]
    assert memory["coreset"] == config["model"]["bank_size"] == int(np.ceil(0.25 * memory["patches"]))
    log = json.loads((reb_run / "train_log.json").read_text())
    assert len(log["finetune"]) == config["train"]["epochs"] and np.isfinite(log["final_losses"]["finetune"])
    assert log["seconds"]["total"] > 0 and log["depth_scale"] > 0
    val = json.loads((reb_run / "validation_scores.json").read_text())
    loaded = load_detector(reb_run)
    for kind in ("reb", "knn"):
        again = score_split(loaded, open_split(tiny_dataset, "validation"), score=kind, progress=False)
        np.testing.assert_allclose([s.score for s in again], val["scores_by_kind"][kind], rtol=1e-4, atol=1e-5)
    # LDKNN never exceeds the plain nearest-neighbour distance (densities are >= 0, lambda 1).
    knn = score_split(loaded, open_split(tiny_dataset, "test"), score="knn", progress=False)
    reb = score_split(loaded, open_split(tiny_dataset, "test"), score="reb", progress=False)
    assert all(r.score <= k.score + 1e-5 for r, k in zip(reb, knn, strict=True))


def test_export_matches_torch_in_onnxruntime(reb_run: Path, reb_bundle: Path, tiny_dataset: Path) -> None:
    bundle = load_bundle(reb_bundle)
    loaded = load_detector(reb_run)
    backend = OnnxRuntimeBackend(bundle.model_path())
    batch = next(preprocessed_batches(open_split(tiny_dataset, "test"), loaded.preprocess_config, 1, "t", False))
    outputs = backend.infer(batch.inputs)
    with torch.no_grad():
        anomaly_map, score = loaded.detector(*(torch.from_numpy(batch.inputs[k]) for k in ("image", "depth", "mask")))
    np.testing.assert_allclose(outputs["anomaly_map"], anomaly_map.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(outputs["score"], score.numpy(), rtol=1e-3, atol=1e-3)
    backend.close()


def test_synthetic_recall_on_the_exported_bundle(reb_bundle: Path, tiny_dataset: Path) -> None:
    result = estimate_recall_with_defect_maker(reb_bundle, tiny_dataset, 12, splits=("validation",), progress=False)
    assert set(result.per_class) == set(CLASSES[1:]) and all(r.n == 2 for r in result.per_class.values())
    assert result.good_parts == 4 and result.skipped == 0
    assert result.recall >= 0.5  # noise and foreign patches on a uniform disc stand out
    never = estimate_recall_with_defect_maker(
        reb_bundle, tiny_dataset, 6, threshold=float("inf"), splits=("validation",), progress=False
    )
    always = estimate_recall_with_defect_maker(
        reb_bundle, tiny_dataset, 6, threshold=-1e9, splits=("validation",), progress=False
    )
    assert never.recall == 0.0 and always.recall == 1.0


def test_cli_train_model_reb(tmp_path: Path, tiny_dataset: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset), "--out", str(out), "--model", "reb", "--preset", "reb-tiny"]
    result = CliRunner().invoke(app, [*args, "--epochs", "2", "--mode", "rgb", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["family"] == "reb" and config["mode"] == "rgb" and config["model"]["mode"] == "rgb"
    assert len(json.loads((out / "train_log.json").read_text())["finetune"]) == 2


def test_the_line_decides_like_evaluation(reb_run: Path, reb_bundle: Path, tiny_dataset: Path) -> None:
    from tests.helpers.line_check import assert_line_decides_like_evaluation, evaluation_scores

    assert_line_decides_like_evaluation(reb_bundle, tiny_dataset, evaluation_scores(reb_run, tiny_dataset))
