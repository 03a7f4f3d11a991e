"""Training data of the patch networks: whole preprocessed images in memory, targets per cell, crops.

The paper trains its teacher on random p x p patches, the distillation target being a pretrained
ResNet-18's descriptor of each patch. Running a pretrained net on every patch is far too slow on
a CPU; instead the frozen backbone runs once per image (features at stride 8 or 16) and each
patch's target is that feature map bilinearly sampled at the patch centre. Training densely on an
image (or a crop of it) is training on every patch of the stride lattice at once, with shared
convolutions. The backbone's features see some context beyond the patch, so the teacher learns
their expectation given the patch: still a descriptive, pretrained-feature-shaped target.

Depth (modes depth, rgbd): a pretrained RGB network cannot describe depth, and compactness alone
would not make the descriptor encode it. The teacher's target is therefore extended by the patch's
own depth averaged over ``blocks x blocks`` sub-blocks (a reconstruction target), so the
descriptor must carry the part's local surface shape, and the students then have to predict it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.uninformed_students.patch_net import PatchNet, reflect_pad


@dataclass(eq=False)
class ScaleData:
    """One split at one patch size: padded inputs, per-cell targets and foreground, on one device."""

    padded: torch.Tensor  # (N, C, S + 2 * pad, S + 2 * pad)
    targets: torch.Tensor  # (N, T, h, w), h = S / stride
    mask: torch.Tensor  # (N, h, w) in {0, 1}
    stride: int
    span: int  # input pixels of a crop of one cell: receptive field

    def __len__(self) -> int:
        return len(self.padded)


def feature_targets(features: torch.Tensor, size: int) -> torch.Tensor:
    """Backbone features (N, C, hb, wb) sampled at the centres of a ``size`` x ``size`` cell grid.

    Both grids tile the same image, so ``align_corners=False`` puts every sample at its cell's centre.
    """
    return F.interpolate(features, size=(size, size), mode="bilinear", align_corners=False)


def depth_block_targets(depth: torch.Tensor, net: PatchNet, blocks: int) -> torch.Tensor:
    """Mean depth of each of ``blocks`` x ``blocks`` sub-blocks of every cell's patch: (N, blocks^2, h, w)."""
    side = max(1, net.receptive_field // blocks)
    offset = (net.receptive_field - side * blocks) // 2
    cells = depth.shape[-1] // net.stride
    block_means = F.avg_pool2d(reflect_pad(depth, net.pad), side, stride=1)
    channels = []
    for row in range(blocks):
        for col in range(blocks):
            top, left = offset + row * side, offset + col * side
            grid = block_means[:, :, top :: net.stride, left :: net.stride]
            channels.append(grid[:, :, :cells, :cells])
    return torch.cat(channels, dim=1)


def standardise(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) of maps (N, C, h, w) over positions where ``mask`` (N, h, w) > 0."""
    vectors = values.permute(0, 2, 3, 1).reshape(-1, values.shape[1])[mask.reshape(-1) > 0]
    if len(vectors) < 2:
        vectors = values.permute(0, 2, 3, 1).reshape(-1, values.shape[1])
    return vectors.mean(dim=0), vectors.std(dim=0).clamp(min=1e-6)


def crop_batch(
    data: ScaleData,
    targets: torch.Tensor,
    index: torch.Tensor,
    cells: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, mask) of ``cells`` x ``cells``-cell crops of the samples ``index``.

    ``targets`` (N, T, h, w) may be ``data.targets`` or any map on the same grid (the students'
    teacher descriptors). Each crop is centred on a random foreground cell (any cell without
    foreground) and kept inside the image; ``generator`` None centres on the foreground's middle
    (deterministic, for validation). Crops start on the stride lattice, so a crop's outputs are
    exactly the whole image's outputs at those cells.
    """
    side = data.mask.shape[-1]
    if cells >= side:
        return data.padded[index], targets[index], data.mask[index]
    inputs, crops, masks = [], [], []
    pixels = (cells - 1) * data.stride + data.span
    for i in index.tolist():
        fg = torch.nonzero(data.mask[i] > 0)
        if len(fg) == 0:
            fg = torch.nonzero(torch.ones_like(data.mask[i]))
        if generator is None:
            centre = fg.float().mean(dim=0).round().long()
        else:
            centre = fg[torch.randint(len(fg), (1,), generator=generator).item()]
        top, left = (centre - cells // 2).clamp(min=0, max=side - cells).tolist()
        y, x = top * data.stride, left * data.stride
        inputs.append(data.padded[i, :, y : y + pixels, x : x + pixels])
        crops.append(targets[i, :, top : top + cells, left : left + cells])
        masks.append(data.mask[i, top : top + cells, left : left + cells])
    return torch.stack(inputs), torch.stack(crops), torch.stack(masks)
