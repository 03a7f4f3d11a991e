"""Check that an exported bundle of any family decides parts on the line path as evaluation scored them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ad.bundle import load_bundle
from edge_ad.decision import Verdict
from edge_ad.inspector import Inspector
from edge_ad.sources import SourceExhausted, open_source


def assert_line_decides_like_evaluation(bundle_dir: Path, data_dir: Path, expected_scores: dict[str, float]) -> None:
    """Every test frame of ``data_dir`` through :class:`Inspector` (geometry, preprocess, ONNX Runtime,
    scoring, decision): no fault, the score evaluation gave it (by sample name), REJECT exactly above
    the manifest's threshold."""
    threshold = load_bundle(bundle_dir).manifest.scoring.threshold.value
    seen = 0
    with Inspector.from_bundle(bundle_dir) as inspector, open_source(f"folder:{data_dir}", split="test") as source:
        while True:
            try:
                frame = source.read(1.0)
            except SourceExhausted:
                break
            if frame is None:
                continue
            inspection = inspector.inspect(frame)
            decision = inspection.decision
            assert decision.verdict is not Verdict.FAULT_REJECT, decision.detail
            name = str(frame.truth["name"])
            np.testing.assert_allclose(decision.score, expected_scores[name], rtol=1e-3, atol=1e-5)
            assert (decision.verdict is Verdict.REJECT) == (decision.score > threshold), name
            seen += 1
    assert seen == len(expected_scores)


def evaluation_scores(run_dir: Path, data_dir: Path) -> dict[str, float]:
    """The run's default score of every test sample, by name, as ``edge-ad evaluate`` computes it."""
    from edge_ad.dataset import open_split
    from trainer.inference import score_split
    from trainer.run_io import load_detector

    scored = score_split(load_detector(run_dir), open_split(data_dir, "test"), progress=False)
    return {item.name: item.score for item in scored}
