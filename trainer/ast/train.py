"""AST training loops on cached features: the teacher (NLL), then the student (distance to the frozen teacher).

Both phases work on the teacher inputs x assembled once per split (features + unshuffled depth)
and, for the student, on the teacher's latents z computed once: the teacher is frozen by then, so
recomputing z every epoch would only burn time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from edge_ad.errors import TrainingError
from trainer.ast.losses import student_loss, teacher_loss
from trainer.ast.model import ASTDetector
from trainer.config import OptimSettings
from trainer.epoch_progress import EpochProgress
from trainer.feature_cache import SplitArrays


@dataclass(eq=False)
class TeacherInputs:
    """x (N, C, h, w) and grid mask (N, h, w) of one split, on the training device."""

    x: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(eq=False)
class StudentInputs(TeacherInputs):
    """Teacher inputs plus the frozen teacher's latents z, the student's targets."""

    z: torch.Tensor


D = TypeVar("D", bound=Sized)


@torch.no_grad()
def assemble_split(detector: ASTDetector, arrays: SplitArrays, device: torch.device) -> TeacherInputs:
    """Teacher inputs of every sample of ``arrays`` (features were computed by the frozen backbone)."""
    features = None if arrays.features is None else torch.from_numpy(arrays.features).to(device)
    x, mask = detector.assemble(
        features, torch.from_numpy(arrays.depth).to(device), torch.from_numpy(arrays.mask).to(device)
    )
    if not torch.isfinite(x).all():
        raise TrainingError("teacher inputs contain NaN or inf (check the depth data and preprocessing)")
    return TeacherInputs(x, mask)


def _adam(params: list[nn.Parameter], optim: OptimSettings) -> torch.optim.Adam:
    return torch.optim.Adam(
        params, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), weight_decay=optim.weight_decay
    )


def _run_phase(
    phase: str,
    module: nn.Module,
    loss_fn: Callable[[D, torch.Tensor], torch.Tensor],
    train: D,
    val: D | None,
    epochs: int,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool,
) -> list[dict[str, float]]:
    """Generic epoch loop: shuffled mini-batches, Adam, NaN guard, validation loss, progress, log."""
    optimizer = _adam([p for p in module.parameters() if p.requires_grad], optim)
    log: list[dict[str, float]] = []
    with EpochProgress(phase, epochs, enabled=progress) as bar:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            module.train()
            total, count = 0.0, 0
            for batch in torch.randperm(len(train), generator=generator).split(optim.batch_size):
                loss = loss_fn(train, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{phase} training diverged: loss is {loss.item()} at epoch {epoch}; "
                        f"lower the learning rate (now {optim.lr}) or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                count += len(batch)
            entry = {"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - started}
            if val is not None and len(val):
                module.eval()
                with torch.no_grad():
                    losses = [
                        loss_fn(val, b).item() * len(b)
                        for b in torch.arange(len(val)).split(optim.batch_size)
                    ]
                entry["val_loss"] = sum(losses) / len(val)
            log.append(entry)
            bar.update(epoch, entry["loss"], entry.get("val_loss"))
    module.eval()
    return log


def fit_teacher(
    detector: ASTDetector,
    train: TeacherInputs,
    val: TeacherInputs | None,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the flow on the foreground NLL; returns the per-epoch log."""

    def loss_fn(data: TeacherInputs, idx: torch.Tensor) -> torch.Tensor:
        z, logdet = detector.teacher_forward(data.x[idx])
        return teacher_loss(z, logdet, data.mask[idx])

    return _run_phase(
        "teacher", detector.teacher, loss_fn, train, val, optim.epochs, optim, generator, progress
    )


@torch.no_grad()
def teacher_latents(detector: ASTDetector, inputs: TeacherInputs, batch_size: int) -> torch.Tensor:
    """The frozen teacher's z for every sample (the student's regression targets)."""
    detector.teacher.eval()
    return torch.cat([detector.teacher_forward(x)[0] for x in inputs.x.split(batch_size)])


def fit_student(
    detector: ASTDetector,
    train: TeacherInputs,
    val: TeacherInputs | None,
    optim: OptimSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the student to regress the frozen teacher's z on foreground positions."""
    for param in detector.teacher.parameters():
        param.requires_grad_(False)
    student_train = StudentInputs(train.x, train.mask, teacher_latents(detector, train, optim.batch_size))
    student_val = None
    if val is not None:
        student_val = StudentInputs(val.x, val.mask, teacher_latents(detector, val, optim.batch_size))

    def loss_fn(data: StudentInputs, idx: torch.Tensor) -> torch.Tensor:
        return student_loss(detector.student_forward(data.x[idx]), data.z[idx], data.mask[idx])

    epochs = optim.student_epochs or optim.epochs
    return _run_phase(
        "student", detector.student, loss_fn, student_train, student_val, epochs, optim, generator, progress
    )
