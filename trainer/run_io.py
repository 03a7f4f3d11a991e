"""Run directory files: write config.yaml / checkpoint.pt / JSON logs, and load a trained detector.

``config.yaml`` holds everything needed to rebuild the model (family, backbone, all sizes, the
preprocessing dict, mode, aggregation, seed, versions); ``checkpoint.pt`` holds the trained state
dicts plus a copy of that config. :func:`load_detector` is what evaluation and export use.
"""

from __future__ import annotations

import pickle
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

import edge_ad
from edge_ad.errors import ConfigError, WeightsError
from edge_ad.preprocess import PreprocessConfig
from trainer.metrics_io import VALIDATION_SCORES, write_json  # noqa: F401 (re-exported for the families)

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_LOG_FILE = "train_log.json"
VALIDATION_SCORES_FILE = VALIDATION_SCORES
CHECKPOINT_FORMAT = 1


def versions() -> dict[str, str]:
    """Library versions recorded in every run."""
    return {
        "edge_ad": edge_ad.__version__,
        "torch": str(torch.__version__),  # TorchVersion, a str subclass YAML cannot represent
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """``RUN/config.yaml``."""
    path = run_dir / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_checkpoint(
    run_dir: Path, config: dict[str, Any], state: dict[str, dict[str, torch.Tensor]]
) -> Path:
    """``RUN/checkpoint.pt`` with the state dicts (tensors moved to the CPU) and the config."""
    cpu_state = {name: {k: v.detach().cpu() for k, v in sd.items()} for name, sd in state.items()}
    path = run_dir / CHECKPOINT_FILE
    torch.save({"format": CHECKPOINT_FORMAT, "config": config, "state": cpu_state}, path)
    return path


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as a dict; ConfigError when the folder is not a training run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a training run: {path} is missing (train one with edge-ad train --out)"
        )
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(config, dict) or "family" not in config:
        raise ConfigError(f"{path}: expected a mapping with a 'family' key")
    return config


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The run's checkpoint.pt (tensors on the CPU); WeightsError when missing or unreadable."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise WeightsError(f"checkpoint missing: {path} (the training run did not finish?)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "state" not in data:
        raise WeightsError(f"checkpoint {path}: not an edge-ad checkpoint of format {CHECKPOINT_FORMAT}")
    return data


@dataclass(eq=False)
class LoadedRun:
    """A trained run ready for scoring: its config, the detector (eval mode) and its preprocessing."""

    config: dict[str, Any]
    detector: nn.Module
    preprocess_config: PreprocessConfig
    aggregation: str
    run_dir: Path | None = None


def load_detector(run_dir: Path, device: str = "cpu") -> LoadedRun:
    """Rebuild the trained detector of ``run_dir`` on ``device`` (eval mode, no gradients)."""
    from trainer.registry import get_family  # the registry imports every family (and torch models)
    from trainer.torch_setup import resolve_device

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    checkpoint = read_checkpoint(run_dir)
    torch_device = resolve_device(device)
    detector = get_family(str(config["family"])).load(config, checkpoint, torch_device)
    for param in detector.parameters():
        param.requires_grad_(False)
    return LoadedRun(
        config=config,
        detector=detector.eval(),
        preprocess_config=PreprocessConfig.from_dict(
            config["preprocess"], path=f"{run_dir / CONFIG_FILE}: preprocess"
        ),
        aggregation=str(config["aggregation"]),
        run_dir=run_dir,
    )
