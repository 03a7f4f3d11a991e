"""ASTDetector: frozen backbone + normalizing-flow teacher + CNN student, one inference module.

Inputs are exactly edge_ad.preprocess's model inputs: ``image`` (N, 3, S, S) normalised RGB,
``depth`` (N, 1, D, D) in model units relative to the foreground mean (background 0) and
``mask`` (N, 1, D, D) in {0, 1}, with D = grid * 8. Per mode:

* ``rgb``: backbone features (C channels at the grid).
* ``depth``: the depth pixel-unshuffled by D / grid (64 channels); the backbone is never called.
* ``rgbd``: both, concatenated along channels (C + 64).

The mask is average-pooled to the grid and binarised (> 0: a grid cell with any foreground pixel
is foreground, AST's "bilinear downsample then > 0").

Differences from the AST paper and its official code (digest 1.5) and what we chose:
LeakyReLU slope 0.2 (paper; code 0.01), see trainer.ast.student; feature block "layer 36" =
block index 35 (code); coupling kernels 3/3/3/5, replicate padding and GLOW order (code);
student distance averaged over channels (code; paper sums), see trainer.ast.losses; the anomaly
map stays at the feature grid (the code upsamples bicubically x8 only for pixel AUROC, which is
evaluation's job).

``forward`` has no data-dependent Python control flow and no in-place ops, so it exports to ONNX
(opset 17) as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.errors import ConfigError
from trainer.ast.flow import ConditionalFlow
from trainer.ast.losses import student_distance_map, teacher_nll_map
from trainer.ast.positional import positional_encoding_2d
from trainer.ast.student import DEFAULT_LEAKY_SLOPE, Student

MODES = ("rgb", "depth", "rgbd")
AGGREGATIONS = ("max", "mean")


@dataclass(frozen=True)
class ASTModelConfig:
    """Every size the AST networks need; saved in config.yaml under ``model``."""

    mode: str
    grid: int
    rgb_channels: int
    depth_unshuffle: int = 8
    pos_channels: int = 32
    teacher_hidden: int = 64
    kernel_sizes: tuple[int, ...] = (3, 3, 3, 5)
    clamp_alpha: float = 1.9
    student_width: int = 1024
    student_blocks: int = 4
    leaky_slope: float = DEFAULT_LEAKY_SLOPE
    aggregation: str = "max"
    flow_seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"model.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"model.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        if self.pos_channels % 4:
            raise ConfigError(f"model.pos_channels must be a multiple of 4, got {self.pos_channels}")
        for name in ("grid", "depth_unshuffle", "teacher_hidden", "student_width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.uses_rgb and self.rgb_channels < 1:
            raise ConfigError(f"model.rgb_channels must be >= 1 in mode {self.mode!r}")

    @property
    def uses_rgb(self) -> bool:
        """The backbone runs (modes rgb and rgbd)."""
        return self.mode in ("rgb", "rgbd")

    @property
    def uses_depth(self) -> bool:
        """Unshuffled depth is part of the features (modes depth and rgbd)."""
        return self.mode in ("depth", "rgbd")

    @property
    def feature_channels(self) -> int:
        """Channels of the teacher's input x (and of z and the student's output)."""
        depth = self.depth_unshuffle**2 if self.uses_depth else 0
        return (self.rgb_channels if self.uses_rgb else 0) + depth

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict."""
        out = asdict(self)
        out["kernel_sizes"] = list(self.kernel_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ASTModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model: unknown keys {', '.join(unknown)}")
        values = dict(data)
        if "kernel_sizes" in values:
            values["kernel_sizes"] = tuple(int(k) for k in values["kernel_sizes"])
        return cls(**values)


class ASTDetector(nn.Module):
    """``forward(image, depth, mask) -> (anomaly_map (N, 1, h, w), score (N,))``."""

    # Score name -> map of score_maps; the first is what forward (and the exported model) computes.
    SCORE_KINDS = {"ast": "distance", "teacher-nll": "teacher_nll"}

    def __init__(self, config: ASTModelConfig, backbone: nn.Module | None) -> None:
        super().__init__()
        if config.uses_rgb and backbone is None:
            raise ConfigError(f"mode {config.mode!r} needs a backbone")
        self.config = config
        # Depth mode never calls a backbone, so none is kept (and none is exported).
        self.backbone = backbone if config.uses_rgb else None
        channels = config.feature_channels
        self.register_buffer(
            "pos",
            positional_encoding_2d(config.pos_channels, config.grid, config.grid)[None],
            persistent=False,
        )
        self.teacher = ConditionalFlow(
            channels,
            config.pos_channels,
            config.teacher_hidden,
            config.kernel_sizes,
            config.clamp_alpha,
            config.flow_seed,
        )
        self.student = Student(
            channels + config.pos_channels,
            channels,
            config.student_width,
            config.student_blocks,
            config.leaky_slope,
        )

    # -- pieces shared by training (cached features) and inference (images) -----------------
    def extract(self, image: torch.Tensor) -> torch.Tensor | None:
        """Backbone features for ``image`` (None in depth mode)."""
        if self.backbone is None:
            return None
        return self.backbone(image)

    def assemble(
        self, features: torch.Tensor | None, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher input x (N, C, h, w) and the binary foreground mask at the grid (N, h, w)."""
        r = self.config.depth_unshuffle
        parts = []
        if self.config.uses_rgb:
            parts.append(features)
        if self.config.uses_depth:
            parts.append(F.pixel_unshuffle(depth, r))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        grid_mask = (F.avg_pool2d(mask, kernel_size=r, stride=r) > 0).to(x.dtype)[:, 0]
        return x, grid_mask

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """Positional encoding broadcast to the batch."""
        return self.pos.expand(x.shape[0], -1, -1, -1)

    def teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher latent z and per-position log-det."""
        return self.teacher(x, self.condition(x))

    def student_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student prediction of z."""
        return self.student(torch.cat([x, self.condition(x)], dim=1))

    def aggregate(self, values: torch.Tensor, grid_mask: torch.Tensor) -> torch.Tensor:
        """Image score of a map (N, h, w) with this detector's aggregation (see :func:`aggregate_masked`)."""
        return aggregate_masked(values, grid_mask, self.config.aggregation)

    def maps_from_features(
        self, features: torch.Tensor | None, depth: torch.Tensor, mask: torch.Tensor, with_nll: bool = True
    ) -> dict[str, torch.Tensor]:
        """Masked ``distance`` (and ``teacher_nll``) maps (N, h, w) plus the grid ``mask``."""
        x, grid_mask = self.assemble(features, depth, mask)
        z, logdet = self.teacher_forward(x)
        student_out = self.student_forward(x)
        maps = {"distance": student_distance_map(student_out, z) * grid_mask, "mask": grid_mask}
        if with_nll:
            maps["teacher_nll"] = teacher_nll_map(z, logdet) * grid_mask
        return maps

    # -- inference ---------------------------------------------------------------------------
    def score_maps(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``distance`` and ``teacher_nll`` maps (N, 1, h, w), foreground-masked, and the grid ``mask``."""
        maps = self.maps_from_features(self.extract(image), depth, mask)
        return {name: value[:, None] for name, value in maps.items()}

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (masked student-teacher distance at the grid, (N, 1, h, w)) and image score (N,)."""
        maps = self.maps_from_features(self.extract(image), depth, mask, with_nll=False)
        distance = maps["distance"]
        return distance[:, None], self.aggregate(distance, maps["mask"])


def aggregate_masked(values: torch.Tensor, grid_mask: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Image scores (N,) from maps (N, h, w) over foreground positions (``grid_mask`` > 0).

    "max": the largest foreground value (background excluded even where values are negative,
    as teacher NLLs can be); "mean": the foreground mean. A sample without foreground scores 0.
    """
    fg = grid_mask > 0
    count = fg.sum(dim=(1, 2))
    if aggregation == "max":
        lowest = torch.full_like(values, torch.finfo(values.dtype).min)
        best = torch.where(fg, values, lowest).amax(dim=(1, 2))
        return torch.where(count > 0, best, torch.zeros_like(best))
    total = torch.where(fg, values, torch.zeros_like(values)).sum(dim=(1, 2))
    return total / count.clamp(min=1).to(values.dtype)
