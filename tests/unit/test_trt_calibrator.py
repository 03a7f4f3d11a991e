"""The TensorRT-free half of the entropy calibrator: batches in engine input order, and the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.errors import ConfigError, ExportError
from export.tensorrt import CalibrationFeeder


def samples(n: int) -> list[dict[str, np.ndarray]]:
    return [{"image": np.full((1, 3, 2, 2), i, np.float32), "mask": np.full((1, 1, 2, 2), -i, np.float32)} for i in range(n)]


def test_batches_follow_the_engine_input_order_and_drop_the_incomplete_one(tmp_path: Path) -> None:
    feeder = CalibrationFeeder(samples(5), batch_size=2, cache_path=None)
    assert len(feeder) == 2
    mask, image = feeder.next_batch(["mask", "image"])  # type: ignore[misc]
    assert image.shape == (2, 3, 2, 2) and image.flags.c_contiguous
    assert image[:, 0, 0, 0].tolist() == [0, 1] and mask[:, 0, 0, 0].tolist() == [0, -1]
    assert feeder.next_batch(["image", "mask"])[0][:, 0, 0, 0].tolist() == [2, 3]  # type: ignore[index]
    assert feeder.next_batch(["image", "mask"]) is None  # sample 4 alone is not a full batch


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = tmp_path / "engines" / "x.calib"
    feeder = CalibrationFeeder(samples(1), 1, cache)
    assert feeder.read_cache() is None  # first build: TensorRT calibrates
    feeder.write_cache(memoryview(b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n"))
    assert CalibrationFeeder(samples(1), 1, cache).read_cache() == b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n"


def test_bad_requests_fail_early() -> None:
    with pytest.raises(ConfigError):
        CalibrationFeeder(samples(2), 0, None)
    with pytest.raises(ExportError, match="at least 3 samples"):
        CalibrationFeeder(samples(2), 3, None)
    with pytest.raises(ExportError, match="lack engine inputs"):
        CalibrationFeeder(samples(2), 1, None).next_batch(["image", "depth"])
    mixed = samples(2)
    del mixed[1]["mask"]
    with pytest.raises(ExportError, match="sample 1"):
        CalibrationFeeder(mixed, 1, None)
