"""REBDetector: backbone taps -> PatchCore-style neck -> memory bank -> LDKNN map, one inference module.

Inputs are edge_ad.preprocess's model inputs: ``image`` (N, 3, S, S), ``depth`` (N, 1, D, D),
``mask`` (N, 1, D, D), D = grid * depth_unshuffle, grid = S / stride of the shallow tap.

Neck (REB follows PatchCore): each tap is averaged over its 3x3 neighbourhood (avg-pool 3, stride
1, zero padding counted, as PatchCore's zero-padded unfold then averaging), the deep tap is
upsampled bilinearly to the shallow grid, each tap's channels are reduced to ``tap_dim`` and the
concatenation to ``feature_dim`` by adaptive average pooling over channels. That pooling is
written as a constant averaging matrix applied as a 1x1 convolution: the same numbers as
``adaptive_avg_pool1d``, and it exports for any channel counts. In ``rgbd`` the depth input,
pixel-unshuffled to the grid (depth_unshuffle**2 channels), 3x3-averaged and scaled by
``depth_scale`` (set at training so depth carries ``depth_weight`` of the RGB features' variance),
is appended to each patch feature.

Scoring: squared L2 distance to the nearest memory point m*, computed as |f|^2 - 2 f.M^T + |M|^2
on features centred by the bank mean (smaller magnitudes, less float32 cancellation; distances
are unchanged), then ``ldknn`` = d(f, m*) - lambda * density(m*) (REB's code: squared distances,
subtractive) and ``nn_distance`` = d(f, m*) (PatchCore). Maps are zero outside the grid mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.errors import ConfigError
from trainer.ast.model import aggregate_masked
from trainer.reb.taps import tap_outputs

MODES = ("rgb", "rgbd")


@dataclass(frozen=True)
class REBModelConfig:
    """Every size the detector needs; saved in config.yaml under ``model``."""

    mode: str
    image_size: int
    grid: int
    taps: tuple[int, int]
    tap_channels: tuple[int, int]
    tap_dim: int
    feature_dim: int
    depth_unshuffle: int
    depth_scale: float
    bank_size: int
    k: int
    ld_lambda: float
    aggregation: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"model.mode: REB supports {', '.join(MODES)}, got {self.mode!r}")
        if self.aggregation not in ("max", "mean"):
            raise ConfigError(f"model.aggregation must be max or mean, got {self.aggregation!r}")
        for name in ("grid", "tap_dim", "feature_dim", "depth_unshuffle", "bank_size", "k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def depth_channels(self) -> int:
        """Channels the depth descriptor adds (0 in rgb mode)."""
        return self.depth_unshuffle**2 if self.mode == "rgbd" else 0

    @property
    def total_dim(self) -> int:
        """Length of a patch feature (memory bank width)."""
        return self.feature_dim + self.depth_channels

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict."""
        out = asdict(self)
        out["taps"], out["tap_channels"] = list(self.taps), list(self.tap_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> REBModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"model: unknown keys {', '.join(unknown)}")
        values = dict(data)
        for name in ("taps", "tap_channels"):
            values[name] = tuple(int(v) for v in values[name])
        return cls(**values)


def channel_pool_matrix(in_channels: int, out_channels: int) -> torch.Tensor:
    """(out, in) matrix M with M @ x == adaptive_avg_pool1d(x, out) for a channel vector x."""
    matrix = torch.zeros(out_channels, in_channels)
    for i in range(out_channels):
        start = (i * in_channels) // out_channels
        end = -((-(i + 1) * in_channels) // out_channels)  # ceil
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class FeatureNeck(nn.Module):
    """Two taps (+ depth) -> patch features (N, total_dim, grid, grid); constants only, no parameters."""

    def __init__(self, config: REBModelConfig) -> None:
        super().__init__()
        self.config = config
        shallow, deep = config.tap_channels
        self.register_buffer("reduce_shallow", channel_pool_matrix(shallow, config.tap_dim)[:, :, None, None])
        self.register_buffer("reduce_deep", channel_pool_matrix(deep, config.tap_dim)[:, :, None, None])
        self.register_buffer(
            "reduce_final", channel_pool_matrix(2 * config.tap_dim, config.feature_dim)[:, :, None, None]
        )

    def forward(self, taps: list[torch.Tensor], depth: torch.Tensor) -> torch.Tensor:
        """Patch features at the shallow tap's grid."""
        grid = self.config.grid
        shallow = F.avg_pool2d(taps[0], 3, stride=1, padding=1)
        deep = F.avg_pool2d(taps[1], 3, stride=1, padding=1)
        deep = F.interpolate(deep, size=(grid, grid), mode="bilinear", align_corners=False)
        both = torch.cat([F.conv2d(shallow, self.reduce_shallow), F.conv2d(deep, self.reduce_deep)], dim=1)
        features = F.conv2d(both, self.reduce_final)
        if self.config.mode == "rgbd":
            unshuffled = F.pixel_unshuffle(depth, self.config.depth_unshuffle)
            local = F.avg_pool2d(unshuffled, 3, stride=1, padding=1)
            features = torch.cat([features, local * self.config.depth_scale], dim=1)
        return features


class REBDetector(nn.Module):
    """``forward(image, depth, mask) -> (anomaly_map (N, 1, grid, grid), score (N,))``."""

    # Score name -> map of score_maps; the first is what forward (and the exported model) computes.
    SCORE_KINDS = {"reb": "ldknn", "knn": "nn_distance"}

    def __init__(self, config: REBModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.neck = FeatureNeck(config)
        dim = config.total_dim
        self.register_buffer("bank_center", torch.zeros(dim))
        self.register_buffer("bank", torch.zeros(config.bank_size, dim))
        self.register_buffer("bank_sq", torch.zeros(config.bank_size))
        self.register_buffer("density", torch.zeros(config.bank_size))

    def features(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Patch features (N, total_dim, grid, grid)."""
        return self.neck(tap_outputs(self.backbone, image, self.config.taps), depth)

    def grid_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask at the grid (N, grid, grid): a cell with any foreground pixel is foreground."""
        r = self.config.depth_unshuffle
        return (F.avg_pool2d(mask, kernel_size=r, stride=r) > 0).to(mask.dtype)[:, 0]

    @torch.no_grad()
    def set_memory(self, bank: torch.Tensor, density: torch.Tensor) -> None:
        """Store the (coreset) memory bank (M, D) and each point's local density (M,)."""
        if bank.shape != self.bank.shape or density.shape != self.density.shape:
            raise ConfigError(f"memory bank {tuple(bank.shape)} does not fit the model's {tuple(self.bank.shape)}")
        center = bank.mean(dim=0)
        centred = bank - center
        self.bank_center.copy_(center)
        self.bank.copy_(centred)
        self.bank_sq.copy_((centred * centred).sum(dim=1))
        self.density.copy_(density)

    def nearest(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distance to the nearest memory point and that point's density, both (N, grid, grid)."""
        n, dim, h, w = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(n * h * w, dim) - self.bank_center
        squared = (flat * flat).sum(dim=1, keepdim=True) - 2.0 * flat @ self.bank.t() + self.bank_sq[None]
        distance, index = squared.clamp(min=0.0).min(dim=1)
        density = self.density.index_select(0, index)
        return distance.reshape(n, h, w), density.reshape(n, h, w)

    def maps_from_features(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ldknn`` and ``nn_distance`` maps (N, grid, grid), zero off the grid mask, plus ``mask``."""
        grid_mask = self.grid_mask(mask)
        distance, density = self.nearest(features)
        return {
            "ldknn": (distance - self.config.ld_lambda * density) * grid_mask,
            "nn_distance": distance * grid_mask,
            "mask": grid_mask,
        }

    def score_maps(self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every score kind's map (N, 1, grid, grid) and the grid ``mask``."""
        maps = self.maps_from_features(self.features(image, depth), mask)
        return {name: value[:, None] for name, value in maps.items()}

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LDKNN map (N, 1, grid, grid) and image score (max / mean over the foreground), (N,)."""
        maps = self.maps_from_features(self.features(image, depth), mask)
        ldknn = maps["ldknn"]
        return ldknn[:, None], aggregate_masked(ldknn, maps["mask"], self.config.aggregation)
