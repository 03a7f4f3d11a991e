"""AST training loops on cached features: the teacher (NLL), then the student (distance to the frozen teacher).

Both phases work on the teacher inputs x assembled once per split (features + unshuffled depth)
and, for the student, on the teacher's latents z computed once: the teacher is frozen by then, so
recomputing z every epoch would only burn time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edge_ad.errors import TrainingError
from trainer.ast.losses import student_loss, teacher_loss
from trainer.ast.model import ASTDetector
from trainer.config import OptimSettings
from trainer.epoch_loop import run_epochs
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

    return run_epochs(
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
    return run_epochs(
        "student", detector.student, loss_fn, student_train, student_val, epochs, optim, generator, progress
    )
