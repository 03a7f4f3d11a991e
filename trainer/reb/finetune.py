"""REB step 1: self-supervised fine-tuning of the backbone on DefectMaker's 7-class task.

Each update draws a batch of training images; each image becomes normal or one of the six
shape x fill defects (probability 1/7 each, edge_ad.defect_maker) inside its foreground (the
preprocessed mask at image resolution; the whole image without one), CutPaste fills cut from
another training image. As REB's code: a random transpose augments every image, the head is
global average pooling -> Linear 256 -> BN -> ReLU -> Linear 7, SGD with momentum and a cosine
learning-rate decay to 1e-5. The defects are made on the preprocessed image (de-normalised to
8 bits at the model's resolution), so the network sees exactly the input geometry it scores.

BatchNorm keeps ImageNet's statistics (the backbones stay in eval mode): the edge preset's batches
are far smaller than REB's 1024 and would make the statistics drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.defect_maker import CLASSES, random_defect_or_normal
from edge_ad.errors import TrainingError
from trainer.backbones.efficientnet import EfficientNet
from trainer.epoch_progress import EpochProgress

HEAD_HIDDEN = 256
MIN_LR = 1e-5


@dataclass(frozen=True)
class FinetuneSettings:
    """SGD updates, their batch and schedule, and which backbone blocks learn."""

    steps: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    from_block: int  # blocks (EfficientNet) / stages (ResNet) >= this are trained; 0: everything
    accumulate: int = 1  # micro-batches per update (REB reaches its batch of 1024 this way)


class ProxyHead(nn.Module):
    """Global average pool, MLP to the 7 DefectMaker classes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels, HEAD_HIDDEN),
            nn.BatchNorm1d(HEAD_HIDDEN),
            nn.ReLU(),
            nn.Linear(HEAD_HIDDEN, len(CLASSES)),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 7)."""
        return self.mlp(features.mean(dim=(2, 3)))


@dataclass(eq=False)
class DefectImages:
    """Training images as 8-bit (N, S, S, 3), their defect locations (or None) and the normalisation."""

    images: np.ndarray
    locations: list[np.ndarray | None]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_inputs(
        cls, image: np.ndarray, mask: np.ndarray, has_mask: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> DefectImages:
        """From model inputs: image (N, 3, S, S) normalised, mask (N, 1, D, D), has_mask (N,)."""
        mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        pixels = (image.transpose(0, 2, 3, 1) * std_a + mean_a) * 255.0
        images = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        size = image.shape[-1]
        locations: list[np.ndarray | None] = []
        for m, known in zip(mask[:, 0], has_mask, strict=True):
            location = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 0.5
            locations.append(location if known and location.any() else None)
        return cls(images, locations, mean_a, std_a)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random samples of the 7-class task: normalised images (B, 3, S, S) and labels (B,)."""
        n = len(self.images)
        images, labels = [], []
        for index in rng.integers(n, size=size):
            other = int(rng.integers(n - 1)) if n > 1 else 0
            other += int(other >= index and n > 1)  # another image, never the same one
            sample = random_defect_or_normal(
                self.images[index], rng, location=self.locations[index], source=self.images[other]
            )
            pixels = sample.image.transpose(1, 0, 2) if rng.uniform() < 0.5 else sample.image
            images.append(((pixels.astype(np.float32) / 255.0 - self.mean) / self.std).transpose(2, 0, 1))
            labels.append(sample.label)
        return torch.from_numpy(np.ascontiguousarray(np.stack(images))), torch.tensor(labels)


def trainable_parameters(trunk: nn.Module, from_block: int) -> list[nn.Parameter]:
    """Unfreeze the trunk's blocks from ``from_block`` on and return their parameters."""
    if from_block <= 0:
        modules: list[nn.Module] = [trunk]
    elif isinstance(trunk, EfficientNet):
        modules = list(trunk._blocks)[from_block:]
    else:  # ResNetFeatures: stages layer1..layer4
        modules = [getattr(trunk, f"layer{s}") for s in range(from_block, 5) if hasattr(trunk, f"layer{s}")]
    params = [p for m in modules for p in m.parameters()]
    for param in params:
        param.requires_grad_(True)
    return params


def finetune(
    trunk: nn.Module,
    data: DefectImages,
    settings: FinetuneSettings,
    rng: np.random.Generator,
    device: torch.device,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``trunk`` (in place) with a proxy head on DefectMaker batches; returns the per-update log."""
    head = ProxyHead(int(trunk.channels)).to(device)
    params = trainable_parameters(trunk, settings.from_block) + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps, eta_min=MIN_LR)
    head.train()
    log: list[dict[str, float]] = []
    with EpochProgress("fine-tune (DefectMaker)", settings.steps, enabled=progress) as bar:
        for step in range(1, settings.steps + 1):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total, correct = 0.0, 0.0
            micro = max(1, settings.batch_size // settings.accumulate)
            for _ in range(settings.accumulate):
                images, labels = data.batch(rng, micro)
                images, labels = images.to(device), labels.to(device)
                logits = head(trunk(images))
                loss = F.cross_entropy(logits, labels)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"DefectMaker fine-tuning diverged: loss is {loss.item()} at update {step}; "
                        f"lower the learning rate (now {settings.lr})"
                    )
                (loss / settings.accumulate).backward()
                total += loss.item() / settings.accumulate
                correct += float((logits.argmax(dim=1) == labels).float().mean()) / settings.accumulate
            optimizer.step()
            schedule.step()
            log.append({"step": step, "loss": total, "accuracy": correct, "seconds": time.perf_counter() - started})
            bar.update(step, total)
    for param in trunk.parameters():
        param.requires_grad_(False)
    return log
