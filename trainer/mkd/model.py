"""MKDDetector: frozen multi-tap source S + bias-free cloner C, one inference module.

Inputs are edge_ad.preprocess's model inputs: ``image`` (N, 3, S, S) normalised RGB, ``depth`` and
``mask`` (N, 1, D, D) with D = S (depth is not used: see trainer.mkd.family). The mask is
average-pooled to the map grid and binarised (> 0), as AST does.

Score kinds: ``mkd`` (default, what ``forward`` and the exported bundle compute, so what the line
runs): the per-position discrepancy map of trainer.mkd.losses. ``mkd-gradient`` (evaluation only):
the paper's localisation, |dL_total/dx| summed over colour channels, Gaussian sigma, 3x3 elliptic
opening, then area-averaged to the map grid (every kind shares one grid and one mask here); its
image score is that map aggregated like the others.

``forward`` is plain tensor ops over a fixed list of CPs, so it exports to ONNX (opset 17) as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.ast.model import aggregate_masked
from trainer.mkd.cloner import Cloner
from trainer.mkd.config import MKDModelConfig
from trainer.mkd.gradient_map import postprocess_gradient
from trainer.mkd.losses import discrepancy_map, total_loss


class MKDDetector(nn.Module):
    """``forward(image, depth, mask) -> (anomaly_map (N, 1, grid, grid), score (N,))``."""

    # Score name -> map of score_maps; the first is what forward (and the exported model) computes.
    SCORE_KINDS = {"mkd": "discrepancy", "mkd-gradient": "gradient"}

    def __init__(self, config: MKDModelConfig, source: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.source = source
        self.cloner = Cloner(
            3, config.cloner_stages, config.source_strides, config.source_channels, config.cp_activation
        )

    def activations(self, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Source and cloner activations at every CP."""
        return self.source(image), self.cloner(image)

    def scoring(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        """The activations of the scoring CPs only."""
        return [values[i] for i in self.config.score_points]

    def grid_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Foreground mask (N, 1, D, D) -> binary (N, 1, grid, grid): any foreground pixel counts."""
        pool = self.config.mask_pool
        pooled = F.avg_pool2d(mask, kernel_size=pool, stride=pool) if pool > 1 else mask
        return (pooled > 0).to(mask.dtype)

    def discrepancy(self, source: list[torch.Tensor], cloner: list[torch.Tensor]) -> torch.Tensor:
        """The ``mkd`` map (N, 1, grid, grid), not masked."""
        weight_val, weight_dir = self.config.weights
        return discrepancy_map(
            self.scoring(source), self.scoring(cloner), weight_val, weight_dir, self.config.grid
        )

    def gradient_map(self, image: torch.Tensor) -> torch.Tensor:
        """The ``mkd-gradient`` map (N, 1, grid, grid): the paper's localisation (one backward pass)."""
        weight_val, weight_dir = self.config.weights
        with torch.enable_grad():
            x = image.detach().requires_grad_(True)
            source, cloner = self.activations(x)
            # Gradients flow through S and C alike (official code: S's outputs are not detached).
            loss = total_loss(self.scoring(source), self.scoring(cloner), weight_val, weight_dir).sum()
            (gradient,) = torch.autograd.grad(loss, x)
        full = postprocess_gradient(gradient, self.config.gradient_sigma)
        factor = self.config.image_size // self.config.grid
        return F.avg_pool2d(full, kernel_size=factor, stride=factor) if factor > 1 else full

    def score_maps(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``discrepancy`` and ``gradient`` maps (N, 1, grid, grid), foreground-masked, and the grid ``mask``."""
        del depth  # rgb only
        grid_mask = self.grid_mask(mask)
        source, cloner = self.activations(image)
        return {
            "discrepancy": self.discrepancy(source, cloner) * grid_mask,
            "gradient": self.gradient_map(image) * grid_mask,
            "mask": grid_mask,
        }

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked ``mkd`` map and its image score (max or mean over the foreground)."""
        del depth
        grid_mask = self.grid_mask(mask)
        anomaly_map = self.discrepancy(*self.activations(image)) * grid_mask
        return anomaly_map, aggregate_masked(anomaly_map[:, 0], grid_mask[:, 0], self.config.aggregation)
