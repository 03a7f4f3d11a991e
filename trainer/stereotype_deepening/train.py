"""Transitive learning, one level after another: statistics of the doctor, masters, then bachelors.

Every level regresses the standardised descriptors of the level above on the foreground cells of
the good training images (background cells are never scored, so they get no capacity), with the
mixed loss of trainer.stereotype_deepening.losses. After each level its outputs are standardised
per dimension over the training set (the paper's "normalised the output provided by this layer")
and the statistics become buffers of the detector, so the exported forward uses them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_ad.dataset import DatasetSplit
from edge_ad.errors import TrainingError
from edge_ad.preprocess import PreprocessConfig
from trainer.config import OptimSettings
from trainer.epoch_progress import EpochProgress
from trainer.features import preprocessed_batches
from trainer.stereotype_deepening.losses import level_loss
from trainer.stereotype_deepening.model import TERMS, SDDetector
from trainer.stereotype_deepening.patch_net import STRIDE

STD_FLOOR = 1e-3  # a dimension that barely varies on good parts must not amplify noise


@dataclass(frozen=True)
class LevelSchedule:
    """How one level trains: its name (for logs), epochs, loss weight mu and crop side in cells (0: none)."""

    phase: str
    epochs: int
    mu: float
    crop_cells: int = 0


@dataclass(eq=False)
class SplitTensors:
    """Preprocessed inputs of a split and its foreground cells at the grid (N, h, w)."""

    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    cells: torch.Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])


def load_split(
    split: DatasetSplit, config: PreprocessConfig, batch_size: int, device: torch.device, progress: bool
) -> SplitTensors:
    """Every sample of ``split`` through THE preprocessing, stacked on ``device``."""
    parts: dict[str, list[np.ndarray]] = {"image": [], "depth": [], "mask": []}
    for batch in preprocessed_batches(split, config, batch_size, f"inputs {split.split} ({len(split)})", progress):
        for name, values in parts.items():
            values.append(batch.inputs[name].astype(np.float32))
    image, depth, mask = (torch.from_numpy(np.concatenate(parts[k])).to(device) for k in ("image", "depth", "mask"))
    return SplitTensors(image, depth, mask, SDDetector.grid_mask(mask))


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data: SplitTensors, batch: int) -> torch.Tensor:
    """``fn(image, depth)`` over the split in batches, concatenated."""
    return torch.cat([fn(data.image[i : i + batch], data.depth[i : i + batch]) for i in range(0, len(data), batch)])


def masked_mean_std(values: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over foreground cells: values (N, ..., d, h, w), cells (N, h, w)."""
    lead = values.shape[1:-2]
    flat = values.movedim(0, -3).reshape(*lead, -1)  # (..., d, N * h * w)
    keep = cells.reshape(-1) > 0
    chosen = flat[..., keep]
    return chosen.mean(dim=-1), chosen.std(dim=-1).clamp(min=STD_FLOOR)


def fit_input_stats(detector: SDDetector, data: SplitTensors, batch: int) -> None:
    """Doctor standardisation and the students' depth scale, from the training split."""
    raw = batched(detector.doctor_raw, data, batch)
    mean, std = masked_mean_std(raw, data.cells)
    detector.stats.doctor_mean.copy_(mean)
    detector.stats.doctor_std.copy_(std)
    if detector.config.uses_depth:
        depth = data.depth[data.mask > 0]
        detector.stats.depth_scale.fill_(1.0 / max(float(depth.std()) if depth.numel() > 1 else 1.0, STD_FLOOR))


def fit_master_stats(detector: SDDetector, data: SplitTensors, batch: int) -> torch.Tensor:
    """Per-master standardisation of the masters' outputs; returns the bachelors' targets (N, m, d, h, w)."""
    outputs = batched(lambda i, d: detector.masters(detector.student_input(i, d)), data, batch)
    mean, std = masked_mean_std(outputs, data.cells)
    detector.stats.master_mean.copy_(mean)
    detector.stats.master_std.copy_(std)
    return detector.master_targets(outputs)


def fit_term_means(detector: SDDetector, data: SplitTensors, batch: int) -> dict[str, float]:
    """Each bias's mean over the training foreground cells (the divisor that puts the terms on one scale)."""

    def stacked(image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        raw = detector.raw_terms(image, depth)
        return torch.stack([raw[name] for name in TERMS], dim=1)

    values = batched(stacked, data, batch)  # (N, 3, h, w)
    fg = data.cells > 0
    means = {
        name: float(values[:, i][fg].mean()) if bool(fg.any()) else 1.0 for i, name in enumerate(TERMS)
    }
    detector.stats.term_mean.copy_(torch.tensor([max(means[n], 1e-12) for n in TERMS]))
    return means


def crop_corners(cells: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """Top-left cell (y, x) of a ``crop`` x ``crop``-cell window per image, (N, 2) int.

    Centred on the image's foreground centroid (the image centre without foreground), shifted by up
    to a quarter window at random, and kept inside the grid.
    """
    n, h, w = cells.shape
    ys = torch.arange(h, dtype=torch.float32)[None, :, None]
    xs = torch.arange(w, dtype=torch.float32)[None, None, :]
    weight = cells.float().cpu()
    count = weight.sum(dim=(1, 2))
    has_fg = count > 0
    cy = torch.where(has_fg, (weight * ys).sum(dim=(1, 2)) / count.clamp(min=1), torch.full((n,), (h - 1) / 2))
    cx = torch.where(has_fg, (weight * xs).sum(dim=(1, 2)) / count.clamp(min=1), torch.full((n,), (w - 1) / 2))
    jitter = (torch.rand(n, 2, generator=generator) - 0.5) * (crop / 2)
    corner = torch.stack([cy, cx], dim=1) - (crop - 1) / 2 + jitter
    limit = torch.tensor([h - crop, w - crop], dtype=torch.float32)
    return torch.minimum(corner.round().clamp(min=0), limit).long()


def crop_batch(
    inputs: torch.Tensor, targets: torch.Tensor, cells: torch.Tensor, corners: torch.Tensor, crop: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The windows at ``corners`` (cells) of a batch: inputs in pixels, targets and cells in cells."""
    px = STRIDE * crop
    x, t, c = [], [], []
    for i, (y0, x0) in enumerate(corners.tolist()):
        x.append(inputs[i, :, STRIDE * y0 : STRIDE * y0 + px, STRIDE * x0 : STRIDE * x0 + px])
        t.append(targets[i, ..., y0 : y0 + crop, x0 : x0 + crop])
        c.append(cells[i, y0 : y0 + crop, x0 : x0 + crop])
    return torch.stack(x), torch.stack(t), torch.stack(c)


def fit_level(
    net: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cells: torch.Tensor,
    optim: OptimSettings,
    schedule: LevelSchedule,
    generator: torch.Generator,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the k networks of ``net`` on ``inputs``; network j regresses ``targets[:, j // repeat]``.

    ``targets`` (N, t, d, h, w) with k = t * repeat (masters: t = 1, the doctor; bachelors: t = m).
    With ``schedule.crop_cells`` smaller than the grid every step sees one random window per image
    (the paper trains on random patches; windows around the part skip the belt, which is never
    scored). Returns per-epoch mean losses; TrainingError on a non-finite loss.
    """
    repeat = net.networks // targets.shape[1]
    grid = min(cells.shape[1:])
    crop = schedule.crop_cells if 0 < schedule.crop_cells < grid else 0
    opt = torch.optim.Adam(net.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    log: list[dict[str, float]] = []
    phase = schedule.phase
    net.train()
    with EpochProgress(phase, schedule.epochs, progress) as bar:
        for epoch in range(1, schedule.epochs + 1):
            sums: dict[str, float] = {}
            order = torch.randperm(inputs.shape[0], generator=generator).tolist()
            batches = [order[i : i + optim.batch_size] for i in range(0, len(order), optim.batch_size)]
            for idx in batches:
                x, t, c = inputs[idx], targets[idx], cells[idx]
                if crop:
                    x, t, c = crop_batch(x, t, c, crop_corners(c, crop, generator), crop)
                loss, parts = level_loss(net(x), t.repeat_interleave(repeat, dim=1), c, schedule.mu)
                if not torch.isfinite(loss):
                    raise TrainingError(f"{phase}: loss became {float(loss.detach())} in epoch {epoch}; try a lower train.lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value / len(batches)
            log.append({"epoch": epoch, **sums})
            bar.update(epoch, sums["loss"])
    net.eval()
    return log
