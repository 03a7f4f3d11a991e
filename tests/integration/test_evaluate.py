"""Evaluation: the summarize core on synthetic scored samples, the HTML report, and the whole command."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ad.detection_metrics import aupro, pixel_auroc
from edge_ad.errors import DataError
from trainer.evaluate import SCHEMA, select_overlays, summarize
from trainer.metrics_io import load_validation_scores, merge_run_metrics, write_json
from trainer.report import OverlayTile, build_report, render_overlay


@dataclass(frozen=True)
class FakeScored:
    """Same fields as trainer.inference.ScoredSample."""

    name: str
    label: int
    defect_type: str
    score: float
    anomaly_map: np.ndarray
    gt: np.ndarray | None
    has_mask: bool = True


VAL = np.arange(100) / 100.0  # 1 % of 100 -> one may be rejected: threshold halfway 0.98..0.99
SIZE = (6, 6)


def _sample(name: str, defect: str, score: float, seed: int, with_gt: bool = True) -> FakeScored:
    rng = np.random.default_rng(seed)
    gt = np.zeros(SIZE, bool)
    if defect != "good":
        gt[1 + seed % 3 : 3 + seed % 3, 2:4] = True
    amap = (rng.random(SIZE) * 0.5 + gt * score).astype(np.float32)
    return FakeScored(f"test/{defect}/{seed:03d}", int(defect != "good"), defect, score, amap,
                      gt if (with_gt or defect != "good") else None)


def _scored() -> list[FakeScored]:
    # good: 0.1, 0.5, 0.99 (one false reject); dent: 2.0, 0.9 (one missed); stain: 1.5, 3.0
    spec = [("good", 0.1), ("good", 0.5), ("good", 0.99), ("dent", 2.0), ("dent", 0.9), ("stain", 1.5), ("stain", 3.0)]
    return [_sample("", d, s, i, with_gt=i != 0) for i, (d, s) in enumerate(spec)]


def test_summarize_numbers_by_hand() -> None:
    scored = _scored()
    out = summarize(scored, VAL, 0.01)
    assert out["schema"] == SCHEMA and out["aggregation"] == "max"
    assert out["counts"] == {"test": 7, "good": 3, "defective": 4, "validation_good": 100}
    assert out["threshold"]["threshold"] == pytest.approx(0.985)
    assert out["threshold"]["achieved_frr"] == 0.01 and out["threshold"]["source"] == "validation/good"
    op = out["operating_point"]
    assert op["confusion"] == {"tp": 3, "fp": 1, "tn": 2, "fn": 1}
    assert op["frr"] == pytest.approx(1 / 3) and op["recall"] == 0.75
    # defective {2, .9, 1.5, 3} vs good {.1, .5, .99}: 3 + 2 + 3 + 3 = 11 of 12 pairs
    assert out["image"]["auroc"] == pytest.approx(11 / 12)
    # flagging the top five (down to 0.9): tp 4, fp 1, fn 0 -> F1 8/9; threshold halfway 0.5..0.9
    assert out["image"]["f1_max"] == pytest.approx(8 / 9) and out["image"]["f1_threshold"] == pytest.approx(0.7)
    # DeLong by hand: placements of the positives (1, 2/3, 1, 1) and of the negatives (1, 1, 3/4)
    # have sample variances 1/36 and 1/48; over 4 and 3 parts that is 1/144 + 1/144, SE = sqrt(2) / 12.
    assert out["image"]["auroc_std_error"] == pytest.approx(np.sqrt(2) / 12)
    low, high = out["image"]["auroc_ci95"]
    assert low == pytest.approx(11 / 12 - 1.959964 * np.sqrt(2) / 12, abs=1e-6) and high == 1.0
    # dent: placements (1, 2/3) and (1, 1, 1/2): 1/18 / 2 + 1/12 / 3 = 1/18
    assert out["by_type"]["dent"] == {
        "count": 2,
        "image_auroc": pytest.approx(5 / 6),
        "image_auroc_ci95": [pytest.approx(5 / 6 - 1.959964 / np.sqrt(18), abs=1e-6), 1.0],
        "detected": 1,
        "recall": 0.5,
    }
    assert out["by_type"]["stain"]["image_auroc"] == 1.0 and out["by_type"]["stain"]["recall"] == 1.0
    assert out["normalization"]["median"] == pytest.approx(0.495)
    assert [s["rejected"] for s in out["samples"]] == [False, False, True, True, False, True, True]
    assert out["samples"][2]["normalized"] == pytest.approx((0.99 - 0.495) / (0.985 - 0.495))


def test_summarize_pixel_metrics_fill_missing_good_masks() -> None:
    scored = _scored()
    assert scored[0].gt is None  # good part without a mask file (MVTec AD layout)
    out = summarize(scored, VAL, 0.01)
    gts = [np.zeros(SIZE, bool) if s.gt is None else s.gt for s in scored]
    maps = [s.anomaly_map for s in scored]
    assert out["pixel"]["auroc"] == pytest.approx(pixel_auroc(maps, gts))
    assert out["pixel"]["aupro"] == pytest.approx(aupro(maps, gts))
    assert out["pixel"]["n_maps"] == 7 and out["pixel"]["exact"] is True and out["pixel"]["skipped"] is None
    assert 0.5 < out["pixel"]["aupro"] <= 1.0


def test_summarize_skips_pixel_metrics_without_defect_masks() -> None:
    scored = _scored()
    scored[3] = FakeScored(scored[3].name, 1, "dent", 2.0, scored[3].anomaly_map, None)
    out = summarize(scored, VAL, 0.01)
    assert out["pixel"]["auroc"] is None and "ground-truth" in out["pixel"]["skipped"]
    assert out["image"]["auroc"] == pytest.approx(11 / 12)  # image metrics unaffected


def test_summarize_needs_good_and_defective_test_parts() -> None:
    with pytest.raises(DataError, match="0 good"):
        summarize([s for s in _scored() if s.label == 1], VAL, 0.01)


def test_summarize_warns_on_small_validation_set() -> None:
    out = summarize(_scored(), VAL[:20], 0.01)
    assert "at least 100" in out["threshold"]["warning"]


def test_select_overlays_groups() -> None:
    groups = select_overlays(_scored(), threshold=0.985, per_group=2)
    assert groups["Top-scoring defects"] == [6, 3]
    assert groups["Highest-scoring good parts"] == [2, 1]
    assert groups["Missed defects (lowest scores first)"] == [4]


class _TagChecker(HTMLParser):
    """Fails on unbalanced tags (void elements excepted); collects img sources."""

    VOID = {"meta", "img", "br", "hr", "line", "rect", "polyline", "path", "circle"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def test_report_is_valid_html_with_plots_and_overlays(tmp_path: Path) -> None:
    scored = _scored()
    summary = {"run": "run-1", "category": "widget", **summarize(scored, VAL, 0.01)}
    rgb = np.full((*SIZE, 3), 128, np.uint8)
    tile = OverlayTile(render_overlay(rgb, scored[3].anomaly_map, scored[3].gt, 0.0, 2.0), "test/dent/003 <&>")
    page = build_report(summary, {"Top-scoring defects": [tile], "Missed defects": []})
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 4  # ROC + histograms for all defects, dent, stain
    roc = ET.fromstring(svgs[0])
    assert len(roc.findall("{http://www.w3.org/2000/svg}polyline")) == 3  # all, dent, stain
    for svg in svgs[1:]:
        ET.fromstring(svg)  # well-formed XML
        assert 'stroke-dasharray="5,3"' in svg  # the threshold line
    assert "AUROC 0.917" in page and "test/dent/003 &lt;&amp;&gt;" in page
    low = summary["image"]["auroc_ci95"][0]
    assert f"{low:.3f}-1.000" in page and "95% interval (DeLong)" in page
    assert len(checker.images) == 1 and checker.images[0].startswith("data:image/png;base64,")
    png = cv2.imdecode(np.frombuffer(base64.b64decode(checker.images[0].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape == (*SIZE, 3)


def test_render_overlay_colours_hot_pixels_and_outlines_gt() -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    amap = np.zeros((40, 40), np.float32)
    amap[:, 20:] = 1.0
    gt = np.zeros((40, 40), bool)
    gt[10:30, 25:35] = True
    out = render_overlay(rgb, amap, gt, 0.0, 1.0)
    # JET: low = blue, high = red (BGR); blended 50 % over black
    assert out[5, 5, 0] > out[5, 5, 2] and out[5, 30, 2] > out[5, 30, 0]
    assert tuple(out[10, 30]) == (255, 255, 255)  # gt contour in white


def test_metrics_io_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "validation_scores.json").write_text(
        json.dumps({"names": ["a", "b"], "scores": [0.1, 0.2], "teacher_nll_scores": [-3.0, 1.0], "has_mask": True})
    )
    val = load_validation_scores(run)
    assert val.for_score("teacher-nll").tolist() == [-3.0, 1.0] and val.has_mask
    (run / "metrics.json").write_text(json.dumps({"train": {"loss": 0.5}}))
    merge_run_metrics(run, "evaluation", {"auroc": float("nan")})
    assert json.loads((run / "metrics.json").read_text()) == {"train": {"loss": 0.5}, "evaluation": {"auroc": None}}
    write_json(tmp_path / "x.json", {"v": np.float32(0.5), "a": np.arange(2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": 0.5, "a": [0, 1]}


def test_metrics_io_names_the_bad_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="validation_scores.json not found"):
        load_validation_scores(tmp_path)
    (tmp_path / "validation_scores.json").write_text(json.dumps({"names": ["a"], "scores": [0.1, 0.2]}))
    with pytest.raises(DataError, match="'scores' has 2 values"):
        load_validation_scores(tmp_path)


@pytest.mark.torch
@pytest.mark.slow
def test_evaluate_command_on_a_tiny_run(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("trainer.inference")
    from typer.testing import CliRunner

    from edge_ad.cli import app
    from edge_ad.synth import generate_dataset
    from edge_ad.synth_config import SynthConfig
    from edge_ad.thresholds import threshold_for_frr
    from trainer.train_run import train

    torch.set_num_threads(2)
    config = SynthConfig(width=96, height=96, n_train=8, n_validation=6, n_test_good=4, n_test_per_defect=2,
                         defect_types=("dent", "stain"))
    generate_dataset(tmp_path / "data", "widget", 0, config)
    data, run = tmp_path / "data" / "widget", tmp_path / "run"
    train(data, run, preset="ast-tiny", overrides={"train": {"epochs": 2}}, cache_dir=tmp_path / "cache", progress=False)

    runner = CliRunner()
    out_json = tmp_path / "out" / "eval.json"
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data), "--json", str(out_json),
                                 "--frr", "0.2"])
    assert result.exit_code == 0, result.output
    assert "image AUROC" in result.output and "dent" in result.output and "95% CI" in result.output
    summary = json.loads(out_json.read_text())
    assert summary["schema"] == SCHEMA and summary["run"] == "run" and summary["category"] == "widget"
    assert summary["counts"] == {"test": 8, "good": 4, "defective": 4, "validation_good": 6}
    val = json.loads((run / "validation_scores.json").read_text())["scores"]
    assert summary["threshold"]["threshold"] == pytest.approx(threshold_for_frr(np.array(val), 0.2).threshold)
    assert set(summary["by_type"]) == {"dent", "stain"}
    assert 0.0 <= summary["image"]["auroc"] <= 1.0 and 0.0 <= summary["pixel"]["aupro"] <= 1.0
    assert json.loads((run / "metrics.json").read_text())["evaluation"] == summary
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 4 and "data:image/png;base64," in page

    bad = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data), "--json", str(out_json),
                              "--frr", "1.0"])
    assert bad.exit_code == 2
    (run / "validation_scores.json").unlink()
    missing = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data), "--json", str(out_json)])
    assert missing.exit_code == 3 and "validation_scores.json not found" in missing.output.replace("\n", "")


def test_validation_scores_record_round_trip_for_any_family(tmp_path: Path) -> None:
    from trainer.metrics_io import validation_scores_record

    record = validation_scores_record(["a", "b"], {"mkd": [0.5, 0.7], "mkd-gradient": [1.0, 2.0]}, "mkd", False)
    write_json(tmp_path / "validation_scores.json", record)
    val = load_validation_scores(tmp_path)
    assert val.for_score(None).tolist() == [0.5, 0.7] and val.for_score("mkd-gradient").tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match="recorded: mkd, mkd-gradient"):
        val.for_score("ast")
