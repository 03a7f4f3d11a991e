"""Training of one patch size: the teacher (L_k + L_c), its descriptor statistics, then the student ensemble.

Every phase runs on :class:`ScaleData` (whole preprocessed images in memory) through crops of
``crop_size`` pixels centred on random foreground cells: the cells outside the foreground are not
scored, so training on them would only burn CPU time. The students' targets, the frozen
teacher's normalised descriptors of the whole images, are computed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from edge_ad.errors import TrainingError
from trainer.config import OptimSettings
from trainer.epoch_progress import EpochProgress
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


def _run_phase(
    phase: str,
    params: list[nn.Parameter],
    modules: list[nn.Module],
    loss_fn: LossFn,
    train: ScaleData,
    train_targets: torch.Tensor,
    val: tuple[ScaleData, torch.Tensor] | None,
    epochs: int,
    cells: int,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool,
) -> list[dict[str, float]]:
    """Epoch loop: shuffled crops, Adam, NaN guard, loss on fixed validation crops, progress, log."""
    optimizer = torch.optim.Adam(
        params, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), weight_decay=optim.weight_decay
    )
    log: list[dict[str, float]] = []
    with EpochProgress(phase, epochs, enabled=progress) as bar:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            for module in modules:
                module.train()
            total = 0.0
            for index in torch.randperm(len(train), generator=generator).split(optim.batch_size):
                loss = loss_fn(*crop_batch(train, train_targets, index, cells, generator))
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{phase} training diverged: loss is {loss.item()} at epoch {epoch}; "
                        f"lower the learning rate (now {optim.lr}) or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            entry = {"epoch": epoch, "loss": total / len(train), "seconds": time.perf_counter() - started}
            if val is not None and len(val[0]):
                for module in modules:
                    module.eval()
                with torch.no_grad():
                    data, targets = val
                    losses = [
                        loss_fn(*crop_batch(data, targets, b, cells, None)).item() * len(b)
                        for b in torch.arange(len(data)).split(optim.batch_size)
                    ]
                entry["val_loss"] = sum(losses) / len(data)
            log.append(entry)
            bar.update(epoch, entry["loss"], entry.get("val_loss"))
    for module in modules:
        module.eval()
    return log


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

    phase = f"teacher p{detector.config.patch_sizes[scale]}"
    val_pair = None if val is None else (val, val.targets)
    return _run_phase(
        phase, list(teacher.parameters()), [teacher], loss_fn, train, train.targets, val_pair,
        optim.epochs, _cells(train, sizes.crop_size), optim, generator, progress,
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
    val_pair = None
    if val is not None:
        val_pair = (val, (teacher_descriptors(detector, scale, val, optim.batch_size) - mean) / std)
    students = list(detector.students[scale])

    def loss_fn(inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Summed so that each student gets exactly its own gradient; logged as the mean per student.
        return torch.stack([masked_mse(student(inputs), targets, mask) for student in students]).sum()

    params = [p for student in students for p in student.parameters()]
    log = _run_phase(
        f"students p{detector.config.patch_sizes[scale]}", params, students, loss_fn, train, train_targets,
        val_pair, optim.student_epochs or optim.epochs, _cells(train, sizes.crop_size), optim, generator,
        progress,
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
