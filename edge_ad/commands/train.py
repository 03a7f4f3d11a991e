"""`edge-ad train`: learn "normal" from the good parts of a dataset folder (workstation, needs torch).

The trainer is imported inside the command body so that ``edge-ad --help`` and the device runtime
never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, handle_errors
from edge_ad.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the train command to the root app."""
    app.command("train")(train)


@handle_errors
def train(
    data: Annotated[
        Path, typer.Option("--data", help="Category folder (MVTec 3D-AD or MVTec AD layout), e.g. DATA/tire.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder to write (config.yaml, checkpoint.pt, logs).")
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="ast-edge (default, Jetson real time), ast-paper, ast-tiny, FAMILY-edge/-tiny/-paper, or a YAML path.",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="rgb, depth or rgbd (default: the preset's; rgb for data without xyz)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model family: ast (default), mkd, uninformed_students, stereotype_deepening, reb; "
            "without --preset it trains MODEL-edge.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for weights, permutations, shuffling, hold-out.")
    ] = 0,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Epochs for teacher and student (default: the preset's)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Training batch size (default: the preset's).")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="auto (CUDA when available; the default), cpu, cuda or cuda:N."),
    ] = None,
    backbone_weights: Annotated[
        Path | None,
        typer.Option(
            "--backbone-weights",
            help="Backbone weights file for backbones without packaged weights (ast-paper: efficientnet-b5-b6417697.pth; "
            "or put it in $EDGE_AD_WEIGHTS_DIR).",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            envvar="EDGE_AD_CACHE",
            help="Feature cache folder (default ~/.cache/edge-ad/features; env EDGE_AD_CACHE).",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            help="Share of train held out for validation when there is no validation split (0.1).",
        ),
    ] = None,
) -> None:
    """Train a model on good parts only and write the run folder.

    Reads DATA/train/good and DATA/validation/good (without a validation split, --val-fraction of train is held out), preprocesses every sample exactly as the line runtime does, then trains the model family: AST (default; caches the frozen backbone's features, trains the teacher then the student), or mkd, uninformed_students, stereotype_deepening, reb with --model (README: model table).

    Writes OUT/config.yaml, checkpoint.pt, train_log.json and validation_scores.json (scores of good parts, for setting the threshold).

    Exit codes: 2 invalid settings (e.g. a depth mode on data without xyz), 3 missing or unreadable data, 9 training diverged, 10 backbone weights missing or wrong.
    """
    if mode is not None and mode not in ("rgb", "depth", "rgbd"):
        raise ConfigError(f"--mode must be rgb, depth or rgbd, got {mode!r}")
    from trainer.config import choose_preset
    from trainer.train_run import train as run_training

    preset = choose_preset(model, preset)
    overrides = {
        "mode": mode,
        "seed": seed,
        "device": device,
        "val_fraction": val_fraction,
        "backbone": {"weights": str(backbone_weights) if backbone_weights is not None else None},
        "train": {"epochs": epochs, "batch_size": batch_size},
    }
    result = run_training(data, out, preset=preset, overrides=overrides, cache_dir=cache_dir, progress=True)
    # Every family logs seconds.total; features, cache and final_losses only where they apply.
    seconds = result.log["seconds"]
    details = []
    if "features" in seconds:
        cache = result.log.get("feature_cache", {})
        details.append(f"features {seconds['features']:.1f} s, cache {'hit' if cache.get('train_hit') else 'miss'}")
    losses = ", ".join(f"{name} {value:.4g}" for name, value in result.log.get("final_losses", {}).items())
    console.print(
        f"trained {result.config['family']} ({result.config['preset']}, mode {result.config['mode']}) on "
        f"{result.config['data']['train_samples']} parts in {seconds['total']:.1f} s"
        + (f" ({'; '.join(details)})" if details else "")
        + (f"; final loss {losses}" if losses else "")
    )
    scores = result.validation_scores
    if scores:
        console.print(
            f"validation good parts ({len(scores)}): score min {min(scores):.4g} / max {max(scores):.4g} "
            f"-> {out / 'validation_scores.json'}"
        )
    console.print(f"run written to {out}")
