"""MKD training: the cloner learns to match the frozen source at every CP on good images.

The cloner sees images, so the preprocessed images of both splits are kept in memory (the datasets
are small: 60 images at 256 px are 47 MB). The source is frozen, so its CP activations are
computed once per run, not once per epoch; they are not written to the on-disk feature cache
(SplitArrays holds one feature block and no images, and the source pass costs about a second).
The epoch loop is the generic one of trainer.ast.train (Adam, shuffling, NaN guard, progress).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge_ad.dataset import DatasetSplit
from edge_ad.errors import TrainingError
from edge_ad.preprocess import PreprocessConfig
from trainer.config import OptimSettings
from trainer.epoch_loop import run_epochs
from trainer.features import preprocessed_batches
from trainer.mkd.losses import direction_loss, total_loss, value_loss
from trainer.mkd.model import MKDDetector


@dataclass(eq=False)
class CloneData:
    """Preprocessed images (N, 3, S, S) and the source's activations at every CP, on the device."""

    images: torch.Tensor
    targets: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.images)


@torch.no_grad()
def clone_data(
    detector: MKDDetector,
    split: DatasetSplit,
    preprocess: PreprocessConfig,
    device: torch.device,
    batch_size: int,
    progress: bool = True,
) -> CloneData:
    """Preprocess ``split`` (the runtime's path) and run the frozen source once over it."""
    images: list[np.ndarray] = []
    for batch in preprocessed_batches(
        split, preprocess, batch_size, f"images {split.split} ({len(split)})", progress
    ):
        images.append(batch.inputs["image"])
    stacked = torch.from_numpy(np.concatenate(images)).to(device)
    outputs = [detector.source(chunk) for chunk in stacked.split(batch_size)]
    targets = [torch.cat([out[i] for out in outputs]) for i in range(len(outputs[0]))]
    if not all(torch.isfinite(t).all() for t in targets):
        raise TrainingError("source activations contain NaN or inf (check the images and preprocessing)")
    return CloneData(stacked, targets)


@torch.no_grad()
def initial_lambda(detector: MKDDetector, data: CloneData, batch_size: int) -> float:
    """The paper's lambda: initial L_val / initial L_dir of the untrained cloner on the training set."""
    detector.cloner.eval()
    val, direction = 0.0, 0.0
    for idx in torch.arange(len(data)).split(batch_size):
        cloner = detector.cloner(data.images[idx])
        targets = [t[idx] for t in data.targets]
        val += value_loss(targets, cloner).sum().item()
        direction += direction_loss(targets, cloner).sum().item()
    if not (np.isfinite(val) and np.isfinite(direction)) or direction <= 0 or val <= 0:
        raise TrainingError(f"cannot set lambda from the initial losses (L_val {val}, L_dir {direction})")
    return val / direction


def fit_cloner(
    detector: MKDDetector,
    train: CloneData,
    val: CloneData | None,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the cloner on every CP with the run's loss combination; returns the per-epoch log."""
    weight_val, weight_dir = detector.config.weights

    def loss_fn(data: CloneData, idx: torch.Tensor) -> torch.Tensor:
        cloner = detector.cloner(data.images[idx])
        return total_loss([t[idx] for t in data.targets], cloner, weight_val, weight_dir).mean()

    return run_epochs(
        "cloner", detector.cloner, loss_fn, train, val, optim.epochs, optim, generator, progress
    )
