"""Parameters and multiply-adds of a model, per top-level part (e.g. backbone / teacher / student).

``python -m trainer.complexity ast-edge RUN_DIR ...``: AST presets by name, any family's trained run
by its folder (the other families' sizes depend on what training found, e.g. REB's memory bank).

MACs are counted with forward hooks on convolutions and linear layers (the layers that dominate
these networks; elementwise ops, pooling and normalisation are not counted), for the batch given,
divided by its size: the numbers are per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class PartComplexity:
    """One part: parameter count and multiply-adds per image."""

    name: str
    params: int
    macs: int


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        return int(output.numel() // output.shape[0]) * per_output
    if isinstance(module, nn.Linear):
        return int(output.numel() // output.shape[0]) * module.in_features
    return 0


@torch.no_grad()
def count(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[PartComplexity]:
    """Per top-level child of ``model`` (those with parameters) plus a final "total" row.

    Runs ``model(*inputs)`` once in eval mode; the model's training flag is restored afterwards.
    """
    macs: dict[str, int] = {}
    handles = []
    for part_name, part in model.named_children():
        macs[part_name] = 0
        for layer in part.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):

                def hook(mod: nn.Module, _inp: object, out: torch.Tensor, key: str = part_name) -> None:
                    macs[key] += _layer_macs(mod, out)

                handles.append(layer.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    parts = [
        PartComplexity(name, sum(p.numel() for p in child.parameters()), macs[name])
        for name, child in model.named_children()
        if any(True for _ in child.parameters())
    ]
    total = PartComplexity("total", sum(p.params for p in parts), sum(p.macs for p in parts))
    return [*parts, total]


def format_table(rows: list[PartComplexity]) -> str:
    """Plain-text table: part, parameters (M), GMACs per image."""
    lines = [f"{'part':<10} {'params':>10} {'GMACs':>8}"]
    lines += [f"{r.name:<10} {r.params / 1e6:>9.3f}M {r.macs / 1e9:>8.3f}" for r in rows]
    return "\n".join(lines)


def preset_complexity(preset: str, mode: str | None = None) -> list[PartComplexity]:
    """Complexity of the AST detector a preset builds (random weights: counts do not need real ones)."""
    from trainer.ast.model import ASTDetector
    from trainer.ast.setup import build_parts
    from trainer.config import resolve_settings

    settings = resolve_settings(preset, has_xyz=True, overrides={"mode": mode})
    parts = build_parts(settings, has_xyz=True, load_weights=False)
    detector = ASTDetector(parts.model, parts.backbone)
    s, d = parts.preprocess.image_size, parts.preprocess.depth_size
    inputs = (torch.zeros(1, 3, s, s), torch.zeros(1, 1, d, d), torch.ones(1, 1, d, d))
    return count(detector, inputs)


def run_complexity(run_dir: str) -> list[PartComplexity]:
    """Complexity of a trained run's detector (any family) on its bundle's input shapes."""
    from export.onnx_graph import example_inputs
    from trainer.run_io import load_detector

    loaded = load_detector(Path(run_dir))
    return count(loaded.detector, example_inputs(loaded.preprocess_config))


if __name__ == "__main__":
    import sys

    # AST presets by name (no training needed); any family's trained run by its folder.
    for name in sys.argv[1:] or ["ast-tiny", "ast-edge", "ast-paper"]:
        if Path(name).is_dir():
            print(f"{name}\n{format_table(run_complexity(name))}\n")
        else:
            print(f"{name} (rgbd)\n{format_table(preset_complexity(name))}\n")
