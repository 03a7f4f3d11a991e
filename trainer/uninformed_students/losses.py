"""Losses and per-position scores of Uninformed Students (Bergmann et al., CVPR 2020).

Teacher: ``L = w_k * L_k + w_c * L_c`` (the supplement's best setting, Tables 2/3: L_k + L_c).
The metric-learning loss L_m is left out: it needs triplets of patches from an external dataset
(ImageNet in the paper), which is not available offline, and the supplement shows it does not help
(CIFAR-10 0.8196 without vs 0.8035 with).

* L_k, knowledge distillation: squared error between the decoded descriptor and the pretrained
  network's descriptor of the same patch. Targets are standardised per channel, so we average over
  channels (the paper sums over the 512 ResNet channels; a constant factor).
* L_c, compactness: the correlation matrix of the descriptors in a batch, off-diagonal entries
  pushed to zero. The paper sums the entries c_ij themselves, which rewards negative correlation
  without bound below zero; we take the mean of their squares (decorrelation, minimum 0).

Students: mean squared error to the teacher's normalised descriptor. Scores per position (main
paper): the ensemble's regression error ``||mean_i S_i - T_norm||^2`` and predictive variance
``mean_i ||S_i||^2 - ||mean_i S_i||^2`` (computed as the mean squared deviation from the mean,
the same value without cancellation).
"""

from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over channels of the squared error (N, C, h, w), averaged over positions where ``mask`` (N, h, w) > 0."""
    per_position = (prediction - target).square().mean(dim=1)
    weight = (mask > 0).to(per_position.dtype)
    return (per_position * weight).sum() / weight.sum().clamp(min=1.0)


def compactness_loss(descriptors: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared off-diagonal correlation of descriptors (n, d) (rows are samples)."""
    n, d = descriptors.shape
    if n < 2 or d < 2:
        return descriptors.sum() * 0.0
    centred = descriptors - descriptors.mean(dim=0, keepdim=True)
    scaled = centred / (centred.square().mean(dim=0, keepdim=True) + eps).sqrt()
    correlation = scaled.T @ scaled / n
    off_diagonal = correlation - torch.diag(torch.diagonal(correlation))
    return off_diagonal.square().sum() / (d * (d - 1))


def foreground_vectors(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Descriptor vectors (n, d) of the positions of ``maps`` (N, d, h, w) where ``mask`` (N, h, w) > 0."""
    vectors = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
    return vectors[mask.reshape(-1) > 0]


def regression_error(students: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||mean_i S_i - T||^2`` per position: students (M, N, d, h, w), target (N, d, h, w) -> (N, h, w)."""
    return (students.mean(dim=0) - target).square().sum(dim=1)


def predictive_variance(students: torch.Tensor) -> torch.Tensor:
    """``mean_i ||S_i - mean_j S_j||^2`` per position: students (M, N, d, h, w) -> (N, h, w)."""
    return (students - students.mean(dim=0, keepdim=True)).square().sum(dim=2).mean(dim=0)
