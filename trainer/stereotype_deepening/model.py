"""SDDetector: frozen doctor + masters + bachelors + normalisation statistics, one inference module.

Inputs are edge_ad.preprocess's model inputs: ``image`` (N, 3, S, S), ``depth`` (N, 1, S, S)
(depth_size = image_size: the students read depth at full resolution) and ``mask`` (N, 1, S, S).

* Doctor descriptor: the frozen Lite0 feature block at stride 8 (C channels), in ``rgbd`` with a
  depth target appended: the depth averaged to t x t sub-cells of each 8x8 cell and
  pixel-unshuffled (t^2 values per cell). Standardised per dimension with training statistics.
* Students (masters, bachelors): Table-1 networks on the RGB image (``rgb``) or RGB + depth scaled
  to unit spread (``rgbd``, 4 channels).
* Maps: the three biases (trainer.stereotype_deepening.biases), each divided by its mean over
  the training set's foreground cells so that none dominates; ``total`` is their sum (Eq. 10).

``forward`` computes ``total`` and exports to ONNX opset 17 as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.errors import ConfigError
from trainer.ast.model import aggregate_masked
from trainer.stereotype_deepening.biases import delivery_bias, inference_bias, peer_bias
from trainer.stereotype_deepening.patch_net import PAPER_LEAKY_SLOPE, STRIDE, PatchNetEnsemble

MODES = ("rgb", "rgbd")
AGGREGATIONS = ("max", "mean")
TERMS = ("inference", "delivery", "peer")


@dataclass(frozen=True)
class SDModelConfig:
    """Everything load needs to rebuild the networks; saved in config.yaml under ``model``."""

    mode: str
    grid: int
    doctor_channels: int
    masters: int = 2
    bachelors_per_master: int = 2
    widths: tuple[int, ...] = (64, 32, 16, 8)
    head_width: int = 128
    leaky_slope: float = PAPER_LEAKY_SLOPE
    depth_target_cells: int = 4
    aggregation: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"model.mode: stereotype_deepening supports {', '.join(MODES)}, got {self.mode!r} "
                "(its doctor is an RGB network: a depth-only run would have no teacher)"
            )
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"model.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.masters < 2 or self.bachelors_per_master < 1:
            raise ConfigError(f"model: need masters >= 2 and bachelors_per_master >= 1, got {self.masters}, "
                              f"{self.bachelors_per_master}")
        if len(self.widths) != 4 or min(self.widths) < 1 or self.head_width < 1:
            raise ConfigError(f"model.widths: need 4 conv widths >= 1 and head_width >= 1, got {list(self.widths)}")
        if STRIDE % self.depth_target_cells:
            raise ConfigError(f"model.depth_target_cells must divide {STRIDE}, got {self.depth_target_cells}")

    @property
    def uses_depth(self) -> bool:
        """Depth enters the students' input and the doctor's target (mode rgbd)."""
        return self.mode == "rgbd"

    @property
    def descriptor_dim(self) -> int:
        """d: the doctor's feature channels plus the depth target's t^2 values in rgbd."""
        return self.doctor_channels + (self.depth_target_cells**2 if self.uses_depth else 0)

    @property
    def student_channels(self) -> int:
        """Students' input channels: RGB, plus depth in rgbd."""
        return 4 if self.uses_depth else 3

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SDModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"model: unknown keys {', '.join(unknown)}")
        values = dict(data)
        if "widths" in values:
            values["widths"] = tuple(int(w) for w in values["widths"])
        return cls(**values)


class SDStats(nn.Module):
    """Normalisation statistics fitted on the training set (buffers: saved, loaded, exported)."""

    def __init__(self, descriptor_dim: int, masters: int) -> None:
        super().__init__()
        d = descriptor_dim
        self.register_buffer("doctor_mean", torch.zeros(d))
        self.register_buffer("doctor_std", torch.ones(d))
        self.register_buffer("master_mean", torch.zeros(masters, d))
        self.register_buffer("master_std", torch.ones(masters, d))
        self.register_buffer("depth_scale", torch.ones(()))
        self.register_buffer("term_mean", torch.ones(len(TERMS)))


def _per_dim(values: torch.Tensor) -> torch.Tensor:
    # (d,) or (m, d) -> broadcastable over (N, [m,] d, h, w).
    return values[..., None, None]


class SDDetector(nn.Module):
    """``forward(image, depth, mask) -> (anomaly_map (N, 1, h, w), score (N,))``."""

    # Score name -> map of score_maps; the first is what forward (and the exported model) computes.
    SCORE_KINDS = {
        "stereotype_deepening": "total",
        "sd-inference": "inference",
        "sd-delivery": "delivery",
        "sd-peer": "peer",
    }

    def __init__(self, config: SDModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        d, m = config.descriptor_dim, config.masters
        sizes = {"widths": config.widths, "head_width": config.head_width, "leaky_slope": config.leaky_slope}
        self.masters = PatchNetEnsemble(config.student_channels, d, m, **sizes)
        self.bachelors = PatchNetEnsemble(config.student_channels, d, m * config.bachelors_per_master, **sizes)
        self.stats = SDStats(d, m)

    # -- pieces shared by training and inference -----------------------------------------------
    def doctor_raw(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """The doctor's descriptor before standardisation, (N, d, h, w)."""
        features = self.backbone(image)
        if not self.config.uses_depth:
            return features
        t = self.config.depth_target_cells
        target = F.pixel_unshuffle(F.avg_pool2d(depth, STRIDE // t), t)
        return torch.cat([features, target], dim=1)

    def doctor(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """The standardised doctor descriptor D (what masters regress)."""
        stats = self.stats
        return (self.doctor_raw(image, depth) - _per_dim(stats.doctor_mean)) / _per_dim(stats.doctor_std)

    def student_input(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """What masters and bachelors see: RGB, or RGB + scaled depth."""
        if not self.config.uses_depth:
            return image
        return torch.cat([image, depth * self.stats.depth_scale], dim=1)

    def master_targets(self, masters: torch.Tensor) -> torch.Tensor:
        """Masters' outputs normalised per master and dimension (what their bachelors regress)."""
        return (masters - _per_dim(self.stats.master_mean)) / _per_dim(self.stats.master_std)

    @staticmethod
    def grid_mask(mask: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) -> (N, h, w): a cell with any foreground pixel is foreground."""
        return (F.avg_pool2d(mask, STRIDE) > 0).to(mask.dtype)[:, 0]

    def raw_terms(self, image: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three biases (N, h, w) before normalisation by their training means."""
        x = self.student_input(image, depth)
        masters = self.masters(x)
        bachelors = self.bachelors(x)
        return {
            "inference": inference_bias(self.doctor(image, depth), masters),
            "delivery": delivery_bias(self.master_targets(masters), bachelors),
            "peer": peer_bias(masters, bachelors),
        }

    # -- inference -------------------------------------------------------------------------------
    def score_maps(self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``total``, ``inference``, ``delivery``, ``peer`` maps (N, 1, h, w), masked, and the grid ``mask``."""
        grid_mask = self.grid_mask(mask)
        raw = self.raw_terms(image, depth)
        maps = {name: raw[name] / self.stats.term_mean[i] * grid_mask for i, name in enumerate(TERMS)}
        maps["total"] = maps["inference"] + maps["delivery"] + maps["peer"]
        maps["mask"] = grid_mask
        return {name: value[:, None] for name, value in maps.items()}

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (the normalised sum of the three biases, (N, 1, h, w)) and image score (N,)."""
        maps = self.score_maps(image, depth, mask)
        total = maps["total"]
        return total, aggregate_masked(total[:, 0], maps["mask"][:, 0], self.config.aggregation)
