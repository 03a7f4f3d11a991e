"""AST losses and per-position maps, all restricted to foreground positions.

Background positions are excluded with ``torch.where`` rather than multiplied by 0, so that any
value there (even inf or NaN from an empty depth patch) cannot reach the loss or its gradient.
"""

from __future__ import annotations

import torch


def teacher_nll_map(z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood under N(0, I), up to a constant: 0.5 * sum_c z^2 - logdet.

    z (N, C, H, W), logdet (N, H, W) -> (N, H, W).
    """
    return 0.5 * (z**2).sum(dim=1) - logdet


def student_distance_map(student_out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-position squared distance, averaged over channels (N, C, H, W) -> (N, H, W).

    The paper writes the squared L2 norm (a sum over channels); the official code averages over
    channels. We average, as the code does: it differs by the constant factor C only, and keeps
    the loss scale independent of the feature width across presets.
    """
    return ((student_out - z) ** 2).mean(dim=1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N, H, W) over positions where ``mask`` (N, H, W) > 0; 0 when none are."""
    fg = mask > 0
    total = torch.where(fg, values, torch.zeros_like(values)).sum()
    return total / fg.sum().clamp(min=1)


def teacher_loss(z: torch.Tensor, logdet: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AST teacher loss: the NLL averaged over foreground positions."""
    return masked_mean(teacher_nll_map(z, logdet), mask)


def student_loss(student_out: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AST student loss: the student-teacher distance averaged over foreground positions."""
    return masked_mean(student_distance_map(student_out, z), mask)
