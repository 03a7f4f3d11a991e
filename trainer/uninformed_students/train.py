"""Training of one patch size: the teacher (L_k + L_c), its descriptor statistics, then the student ensemble.

Every phase runs on :class:`ScaleData` (whole preprocessed images in memory) through crops of
``crop_size`` pixels centred on random foreground cells: the cells outside the foreground are not
scored, so training on them would only burn CPU time. The students' targets, the frozen
teacher's normalised descriptors of the whole images, are computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edge_ad.errors import TrainingError
from trainer.config import OptimSettings
from trainer.epoch_loop import run_epochs
from trainer.uninformed_students.losses import (
    compactness_loss,
    foreground_vectors,
    masked_mse,
    predictive_variance,
    regression_error,
)
from trainer.uninformed_students.model import UninformedStudentsDetector
from trainer.uninformed_students.setup import USSizes
from trainer.uninformed_students.targets import ScaleData, crop_batch, standardise

# (inputs, targets, mask) of a batch -> loss
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _cells(data: ScaleData, crop_size: int) -> int:
    side = data.mask.shape[-1]
    return side if crop_size == 0 else min(side, crop_size // data.stride)


@dataclass(eq=False)
class Crops:
    """Index batches of ``data`` -> (inputs, targets, mask) crops: random for training (a generator),
    fixed for validation (None), so the validation loss is comparable from epoch to epoch."""

    data: ScaleData
    targets: torch.Tensor
    cells: int
    generator: torch.Generator | None

    def __len__(self) -> int:
        return len(self.data)


def _run_phase(
    phase: str,
    module: nn.Module,
    loss_fn: LossFn,
    train: Crops,
    val: Crops | None,
    epochs: int,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool,
) -> list[dict[str, float]]:
    """The shared epoch loop (trainer.epoch_loop) over crops of the images."""

    def crop_loss(crops: Crops, index: torch.Tensor) -> torch.Tensor:
        return loss_fn(*crop_batch(crops.data, crops.targets, index, crops.cells, crops.generator))

    return run_epochs(phase, module, crop_loss, train, val, epochs, optim, generator, progress)


def fit_teacher(
    detector: UninformedStudentsDetector,
    scale: int,
    train: ScaleData,
    val: ScaleData | None,
    sizes: USSizes,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the p-teacher: decoded descriptors regress the standardised targets (L_k), decorrelated (L_c)."""
    teacher = detector.teachers[scale]

    def loss_fn(inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        descriptor, decoded = teacher(inputs)
        loss = sizes.distill_weight * masked_mse(decoded, targets, mask)
        if sizes.compact_weight:
            loss = loss + sizes.compact_weight * compactness_loss(foreground_vectors(descriptor, mask))
        return loss

    cells = _cells(train, sizes.crop_size)
    val_crops = None if val is None else Crops(val, val.targets, cells, None)
    return _run_phase(
        f"teacher p{detector.config.patch_sizes[scale]}", teacher, loss_fn,
        Crops(train, train.targets, cells, generator), val_crops, optim.epochs, optim, generator, progress,
    )  # fmt: skip


@torch.no_grad()
def teacher_descriptors(
    detector: UninformedStudentsDetector, scale: int, data: ScaleData, batch: int
) -> torch.Tensor:
    """The frozen teacher's descriptor maps (N, d, h, w) of every whole image of ``data``."""
    net = detector.teachers[scale].net.eval()
    return torch.cat([net(x) for x in data.padded.split(batch)])


@torch.no_grad()
def set_descriptor_statistics(
    detector: UninformedStudentsDetector, scale: int, descriptors: torch.Tensor, mask: torch.Tensor
) -> None:
    """Per-dimension mean/std of the teacher's descriptors over the training foreground (the students' scale)."""
    mean, std = standardise(descriptors, mask)
    detector.descriptor_mean[scale] = mean
    detector.descriptor_std[scale] = std


def fit_students(
    detector: UninformedStudentsDetector,
    scale: int,
    train: ScaleData,
    val: ScaleData | None,
    sizes: USSizes,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the M students of one patch size together (independent losses summed) on T_norm."""
    for param in detector.teachers[scale].parameters():
        param.requires_grad_(False)
    mean = detector.descriptor_mean[scale].view(1, -1, 1, 1)
    std = detector.descriptor_std[scale].view(1, -1, 1, 1)
    train_targets = (teacher_descriptors(detector, scale, train, optim.batch_size) - mean) / std
    cells = _cells(train, sizes.crop_size)
    val_crops = None
    if val is not None:
        val_targets = (teacher_descriptors(detector, scale, val, optim.batch_size) - mean) / std
        val_crops = Crops(val, val_targets, cells, None)
    students = list(detector.students[scale])

    def loss_fn(inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Summed so that each student gets exactly its own gradient; logged as the mean per student.
        return torch.stack([masked_mse(student(inputs), targets, mask) for student in students]).sum()

    log = _run_phase(
        f"students p{detector.config.patch_sizes[scale]}", nn.ModuleList(students), loss_fn,
        Crops(train, train_targets, cells, generator), val_crops, optim.student_epochs or optim.epochs, optim,
        generator, progress,
    )  # fmt: skip
    for entry in log:
        entry["loss"] /= len(students)
        if "val_loss" in entry:
            entry["val_loss"] /= len(students)
    return log


@torch.no_grad()
def set_score_statistics(
    detector: UninformedStudentsDetector, scale: int, data: ScaleData, batch: int
) -> dict[str, float]:
    """Mean/std of the regression error and of the variance over the foreground of good parts ``data``."""
    mean = detector.descriptor_mean[scale].view(1, -1, 1, 1)
    std = detector.descriptor_std[scale].view(1, -1, 1, 1)
    errors, variances = [], []
    teacher = detector.teachers[scale].net.eval()
    for x in data.padded.split(batch):
        students = torch.stack([student.eval()(x) for student in detector.students[scale]])
        errors.append(regression_error(students, (teacher(x) - mean) / std))
        variances.append(predictive_variance(students))
    fg = data.mask > 0
    error, variance = torch.cat(errors)[fg], torch.cat(variances)[fg]
    if len(error) < 2:
        raise TrainingError("no foreground positions in the validation parts to normalise the scores with")
    detector.error_stats[scale] = torch.stack([error.mean(), error.std()])
    detector.variance_stats[scale] = torch.stack([variance.mean(), variance.std()])
    return {
        "error_mean": float(error.mean()),
        "error_std": float(error.std()),
        "variance_mean": float(variance.mean()),
        "variance_std": float(variance.std()),
    }
