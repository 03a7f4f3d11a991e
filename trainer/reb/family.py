"""The "reb" model family: REB (DefectMaker fine-tuning + LDKNN memory bank), trained and loaded.

Training: (1) preprocess the good training parts through the runtime's preprocessing; (2) unless
``model.finetune`` is false, fine-tune the backbone on DefectMaker's 7-class task
(trainer.reb.finetune); (3) extract patch features with the neck (trainer.reb.model) and keep
the foreground positions (all positions without a foreground mask) as the memory bank; (4) pick a
greedy coreset (``coreset_fraction``, at most ``coreset_max`` points) and compute every kept
point's local density against the FULL bank (K nearest, itself excluded; REB's code); (5) the
coreset and densities become constant buffers of the detector, which exports like any other.

Modes: ``rgb`` and ``rgbd``. In rgbd the depth input, pixel-unshuffled to the grid, is appended
to every patch feature, so the kNN runs on the concatenation; its scale is set from the training
features so that depth holds ``depth_weight`` of the RGB variance (the units of the two have
nothing in common). ``depth`` alone is not offered: REB's fine-tuning and features are image ones.

Where the paper is silent or impossible here (see docs/models/reb.md): the saliency model (EDN)
is replaced by the part's foreground from depth (whole image without depth); BatchNorm keeps
ImageNet statistics while fine-tuning; the edge preset fine-tunes EfficientNet-Lite0 (packaged
weights) with small batches for few updates instead of ResNet-18 at batch 1024; the image score
is the plain max of the patch map (paper Eq. 5; the code max-pools a 3x3-averaged map); the
3x3 neighbourhood is an average (PatchCore's unfold-then-pool averages the same values).

The checkpoint holds the (fine-tuned) backbone weights, so a run never depends on the packaged
file again; ``config.yaml: backbone.weights_sha256`` records the base weights it started from.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from edge_ad.dataset import DatasetSplit
from edge_ad.errors import TrainingError
from edge_ad.preprocess import PreprocessConfig
from trainer.family_run import load_state, run_config, write_run, write_train_log
from trainer.family_setup import resolve_aggregation
from trainer.features import preprocessed_batches
from trainer.reb.finetune import DefectImages, finetune
from trainer.reb.memory import greedy_coreset, local_density
from trainer.reb.model import REBDetector, REBModelConfig
from trainer.reb.setup import (
    REBParts,
    bare_backbone,
    build_parts,
    copy_trunk_weights,
    finetune_settings,
    finetune_trunk,
)
from trainer.registry import TrainJob, TrainResult, register_family
from trainer.torch_setup import resolve_device, seed_everything


@register_family("reb")
class REBFamily:
    """REB (DefectMaker + LDKNN) on RGB or RGB + depth descriptors."""

    @staticmethod
    def train(job: TrainJob) -> TrainResult:
        """Fine-tune on synthetic defects, build the memory bank, write the run, score validation."""
        return _train(job, job.threads)

    @staticmethod
    def load(config: dict[str, Any], checkpoint: dict[str, Any], device: torch.device) -> REBDetector:
        """Rebuild a saved run's detector: architecture from config.yaml, every weight from the checkpoint."""
        detector = REBDetector(REBModelConfig.from_dict(config["model"]), bare_backbone(config["backbone"]))
        load_state(detector, checkpoint["state"])
        return detector.to(device).eval()


def load_inputs(
    split: DatasetSplit, config: PreprocessConfig, batch_size: int, progress: bool
) -> dict[str, np.ndarray]:
    """Every sample's model inputs (image, depth, mask) and has_mask, through the runtime's preprocessing."""
    parts: dict[str, list[np.ndarray]] = {"image": [], "depth": [], "mask": [], "has_mask": []}
    for batch in preprocessed_batches(split, config, batch_size, f"inputs {split.split} ({len(split)})", progress):
        for name in ("image", "depth", "mask"):
            parts[name].append(batch.inputs[name])
        parts["has_mask"].append(batch.has_mask)
    return {name: np.concatenate(values) for name, values in parts.items()}


@torch.no_grad()
def patch_features(
    detector: REBDetector, inputs: dict[str, np.ndarray], batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch features (N, D, grid, grid) and grid masks (N, grid, grid) on the CPU."""
    features, masks = [], []
    for start in range(0, len(inputs["image"]), batch_size):
        part = {k: torch.from_numpy(inputs[k][start : start + batch_size]).to(device) for k in ("image", "depth", "mask")}
        features.append(detector.features(part["image"], part["depth"]).cpu())
        masks.append(detector.grid_mask(part["mask"]).cpu())
    out = torch.cat(features)
    if not torch.isfinite(out).all():
        raise TrainingError("patch features contain NaN or inf (check the images, depth and preprocessing)")
    return out, torch.cat(masks)


def depth_scale(bank: torch.Tensor, feature_dim: int, weight: float) -> float:
    """Scale giving the depth channels ``weight`` times the RGB channels' total variance (1 if depth is flat)."""
    rgb_var = float(bank[:, :feature_dim].var(dim=0).sum())
    depth_var = float(bank[:, feature_dim:].var(dim=0).sum())
    return math.sqrt(weight * rgb_var / depth_var) if depth_var > 1e-12 else 1.0


def model_config(parts: REBParts, mode: str, aggregation: str, scale: float, bank_size: int) -> REBModelConfig:
    """The detector's config from the run's parts."""
    sizes = parts.sizes
    return REBModelConfig(
        mode=mode,
        image_size=parts.preprocess.image_size,
        grid=parts.grid,
        taps=parts.taps,
        tap_channels=parts.tap_channels,
        tap_dim=sizes.tap_dim,
        feature_dim=sizes.feature_dim,
        depth_unshuffle=sizes.depth_unshuffle,
        depth_scale=scale,
        bank_size=bank_size,
        k=sizes.k,
        ld_lambda=sizes.ld_lambda,
        aggregation=aggregation,
    )


def _train(job: TrainJob, threads: int) -> TrainResult:
    """The training run proper (inside the thread-count context)."""
    started = time.perf_counter()
    settings = job.settings
    device = resolve_device(settings.device)
    generator = seed_everything(settings.seed)
    rng = np.random.default_rng(settings.seed)
    parts = build_parts(settings, job.train_split.has_xyz)
    sizes = parts.sizes
    aggregation = resolve_aggregation(settings.aggregation, parts.preprocess)
    batch = settings.train.batch_size
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    inputs = load_inputs(job.train_split, parts.preprocess, batch, job.progress)
    seconds["preprocess"] = time.perf_counter() - t0

    finetune_log: list[dict[str, float]] = []
    t0 = time.perf_counter()
    if sizes.finetune:
        trunk = finetune_trunk(settings, sizes).to(device)
        images = DefectImages.from_inputs(
            inputs["image"], inputs["mask"], inputs["has_mask"], parts.preprocess.mean, parts.preprocess.std
        )
        finetune_log = finetune(trunk, images, finetune_settings(settings, sizes), rng, device, job.progress)
        copy_trunk_weights(trunk, parts.backbone)
    seconds["finetune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probe = REBDetector(model_config(parts, settings.mode, aggregation, 1.0, 1), parts.backbone).to(device).eval()
    features, masks = patch_features(probe, inputs, batch, device)
    bank = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])[masks.reshape(-1) > 0]
    if len(bank) <= sizes.k:
        raise TrainingError(f"only {len(bank)} foreground patches in the training parts; need more than k={sizes.k}")
    scale = 1.0
    if settings.mode == "rgbd":
        scale = depth_scale(bank, sizes.feature_dim, sizes.depth_weight)
        bank[:, sizes.feature_dim :] *= scale
    seconds["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    size = max(sizes.k + 1, math.ceil(sizes.coreset_fraction * len(bank)))
    size = min(size, sizes.coreset_max or size, len(bank))
    chosen = greedy_coreset(bank.to(device), size, generator).cpu()
    seconds["coreset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    density = local_density(bank.to(device), chosen, sizes.k)
    seconds["density"] = time.perf_counter() - t0

    detector = REBDetector(model_config(parts, settings.mode, aggregation, scale, size), parts.backbone)
    detector.set_memory(bank[chosen], density)
    detector = detector.to(device).eval()

    config = run_config(
        job,
        family="reb",
        aggregation=aggregation,
        backbone=parts.backbone_info,
        model=detector.config.to_dict(),
        preprocess=parts.preprocess,
        device=device,
        memory={"patches": len(bank), "coreset": size, "k": sizes.k, "ld_lambda": sizes.ld_lambda},
    )
    validation_scores, scoring_seconds = write_run(
        job, config, {"detector": detector.state_dict()}, detector, parts.preprocess
    )
    seconds["validation_scoring"] = scoring_seconds
    seconds["total"] = time.perf_counter() - started
    tail = finetune_log[-10:]
    log = {
        "final_losses": {"finetune": float(np.mean([e["loss"] for e in tail]))} if tail else {},
        "finetune": finetune_log,
        "finetune_final_accuracy": float(np.mean([e["accuracy"] for e in tail])) if tail else None,
        "memory": config["memory"],
        "depth_scale": scale,
        "seconds": seconds,
        "device": str(device),
        "threads": threads,
    }
    return write_train_log(job, config, log, validation_scores)
