"""The epoch loop every family trains with: shuffled mini-batches, Adam, a NaN guard, validation loss.

A phase is a module (or the parameters it trains) and a loss over index batches of a dataset
with a length; the loop logs one entry per epoch and shows the epoch progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from typing import TypeVar

import torch
from torch import nn

from edge_ad.errors import TrainingError
from trainer.config import OptimSettings
from trainer.epoch_progress import EpochProgress

D = TypeVar("D", bound=Sized)


def adam(params: list[nn.Parameter], optim: OptimSettings) -> torch.optim.Adam:
    """Adam with the preset's learning rate, betas and weight decay."""
    return torch.optim.Adam(
        params, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), weight_decay=optim.weight_decay
    )


def run_epochs(
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
    optimizer = adam([p for p in module.parameters() if p.requires_grad], optim)
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
