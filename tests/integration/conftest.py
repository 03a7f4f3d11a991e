"""Session fixtures shared by the integration tests: one tiny dataset, one trained run, one bundle."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small RGB-D dataset of discs with depth and colour defects (tests/helpers/tiny_parts.py)."""
    from tests.helpers.tiny_parts import make_tiny_parts

    return make_tiny_parts(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ast-tiny`` trained on :func:`tiny_dataset` (torch)."""
    pytest.importorskip("torch")
    from trainer.train_run import train

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    cache = tmp_path_factory.mktemp("feature-cache")
    train(tiny_dataset, out, preset="ast-tiny", cache_dir=cache, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 bundle exported from :func:`tiny_run`."""
    from export.pipeline import export_run

    out = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_run(tiny_run, out, data=tiny_dataset)
    return out
