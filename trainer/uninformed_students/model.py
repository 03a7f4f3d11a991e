"""UninformedStudentsDetector: patch teachers and student ensembles per patch size, one inference module.

Inputs are edge_ad.preprocess's model inputs with ``depth_size == image_size``: ``image``
(N, 3, S, S), ``depth`` (N, 1, S, S), ``mask`` (N, 1, S, S). The networks see, per mode, RGB
(3 channels), depth (1) or both (4). Per patch size p the teacher's descriptor map is normalised
by its mean/std over the training set (per dimension), the M students regress it, and each
position gets the regression error e and the predictive variance v (trainer.uninformed_students
.losses), each divided by its std over the good validation parts (not centred: see _standardised). The score of a
position is ``e~ + v~``, averaged over patch sizes after bilinear upsampling to the finest grid
(image / smallest stride). The frozen pretrained backbone is a training target only: it is not
part of the detector, the export or the line.

``forward`` has no data-dependent control flow (the loops run over the fixed patch sizes and
students), so it exports to ONNX opset 17 as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_ad.errors import ConfigError
from edge_ad.typed_data import load_dataclass
from trainer.ast.model import aggregate_masked
from trainer.uninformed_students.losses import predictive_variance, regression_error
from trainer.uninformed_students.patch_net import DEFAULT_LEAKY_SLOPE, PatchNet, Teacher, geometry

MODE_CHANNELS = {"rgb": 3, "depth": 1, "rgbd": 4}
AGGREGATIONS = ("max", "mean")
# Guards the standardisation against a degenerate (constant) statistic.
STD_FLOOR = 1e-6


@dataclass(frozen=True)
class USModelConfig:
    """Every size the detector needs; saved in config.yaml under ``model``."""

    mode: str
    image_size: int
    patch_sizes: tuple[int, ...]
    target_channels: int
    width: int = 128
    descriptor_dim: int = 128
    students: int = 3
    leaky_slope: float = DEFAULT_LEAKY_SLOPE
    aggregation: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODE_CHANNELS:
            raise ConfigError(f"model.mode must be one of {', '.join(MODE_CHANNELS)}, got {self.mode!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"model.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        if not self.patch_sizes or len(set(self.patch_sizes)) != len(self.patch_sizes):
            raise ConfigError(f"model.patch_sizes: need distinct sizes, got {list(self.patch_sizes)}")
        for name in ("width", "descriptor_dim", "target_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.students < 2:
            raise ConfigError(
                f"model.students must be >= 2 (the variance needs an ensemble), got {self.students}"
            )
        for p in self.patch_sizes:
            stride = geometry(p)[1]
            if self.image_size % stride:
                raise ConfigError(
                    f"preprocess.image_size {self.image_size} is not a multiple of the stride {stride} of p = {p}"
                )

    @property
    def in_channels(self) -> int:
        """Input channels of every patch network (3 rgb, 1 depth, 4 rgbd)."""
        return MODE_CHANNELS[self.mode]

    @property
    def strides(self) -> tuple[int, ...]:
        """Output stride of each patch size's network."""
        return tuple(geometry(p)[1] for p in self.patch_sizes)

    @property
    def grid(self) -> int:
        """Side of the anomaly map: the image over the smallest stride."""
        return self.image_size // min(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict."""
        out = asdict(self)
        out["patch_sizes"] = list(self.patch_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> USModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types raise ConfigError."""
        return load_dataclass(cls, data, error=ConfigError, path="model")


def model_inputs(mode: str, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """The networks' input for ``mode``: RGB, depth or both stacked along channels."""
    if mode == "rgb":
        return image
    if mode == "depth":
        return depth
    return torch.cat([image, depth], dim=1)


def grid_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Binary foreground (N, h, w) at a stride-``stride`` grid: a cell with any foreground pixel counts."""
    if stride == 1:
        return (mask[:, 0] > 0).to(mask.dtype)
    return (F.max_pool2d(mask, stride, stride) > 0).to(mask.dtype)[:, 0]


class UninformedStudentsDetector(nn.Module):
    """``forward(image, depth, mask) -> (anomaly_map (N, 1, g, g), score (N,))``."""

    # Score name -> map of score_maps; the first is what forward (and the exported model) computes.
    SCORE_KINDS = {"uninformed_students": "score", "regression": "regression", "variance": "variance"}

    def __init__(self, config: USModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.teachers = nn.ModuleList(
            Teacher(c.in_channels, p, c.width, c.descriptor_dim, c.target_channels, c.leaky_slope)
            for p in c.patch_sizes
        )
        self.students = nn.ModuleList(
            nn.ModuleList(
                PatchNet(c.in_channels, p, c.width, c.descriptor_dim, c.leaky_slope)
                for _ in range(c.students)
            )
            for p in c.patch_sizes
        )
        scales, dim = len(c.patch_sizes), c.descriptor_dim
        # Set by training: teacher descriptor mean/std (per scale and dimension, training set) and
        # mean/std of the regression error and of the variance (per scale, good validation parts).
        self.register_buffer("descriptor_mean", torch.zeros(scales, dim))
        self.register_buffer("descriptor_std", torch.ones(scales, dim))
        self.register_buffer("error_stats", torch.tensor([[0.0, 1.0]] * scales))
        self.register_buffer("variance_stats", torch.tensor([[0.0, 1.0]] * scales))

    # -- pieces shared by training and inference ---------------------------------------------
    def normalised_descriptors(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's descriptor map of image ``x``, standardised with the training statistics."""
        descriptor = self.teachers[scale].net.dense(x)
        mean = self.descriptor_mean[scale].view(1, -1, 1, 1)
        std = self.descriptor_std[scale].view(1, -1, 1, 1)
        return (descriptor - mean) / std

    def student_descriptors(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """Every student's descriptor map of image ``x``: (M, N, d, h, w)."""
        return torch.stack([student.dense(x) for student in self.students[scale]])

    def raw_scores(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per patch size, the unstandardised regression error and variance (N, h, w) at its own grid."""
        out = []
        for scale in range(len(self.config.patch_sizes)):
            students = self.student_descriptors(scale, x)
            out.append(
                (
                    regression_error(students, self.normalised_descriptors(scale, x)),
                    predictive_variance(students),
                )
            )
        return out

    def _standardised(self, values: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        # Divided by the std of good parts, not centred: the paper's mean offset is a constant that
        # changes no ranking, but it would put good parts' scores at 0, and the export's parity gate
        # (differences relative to the threshold) means nothing for a threshold near 0.
        return self._to_grid(values) / stats[1].clamp(min=STD_FLOOR)

    def _to_grid(self, values: torch.Tensor) -> torch.Tensor:
        grid = self.config.grid
        if values.shape[-1] == grid:
            return values
        return F.interpolate(values[:, None], size=(grid, grid), mode="bilinear", align_corners=False)[:, 0]

    # -- inference ---------------------------------------------------------------------------
    def maps(self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked ``score``, ``regression`` and ``variance`` maps (N, g, g) and the grid ``mask``."""
        x = model_inputs(self.config.mode, image, depth)
        regression, variance = [], []
        for scale, (error, var) in enumerate(self.raw_scores(x)):
            regression.append(self._standardised(error, self.error_stats[scale]))
            variance.append(self._standardised(var, self.variance_stats[scale]))
        fg = grid_mask(mask, min(self.config.strides))
        mean_error = torch.stack(regression).mean(dim=0)
        mean_variance = torch.stack(variance).mean(dim=0)
        return {
            "score": (mean_error + mean_variance) * fg,
            "regression": mean_error * fg,
            "variance": mean_variance * fg,
            "mask": fg,
        }

    def score_maps(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every score kind's map (N, 1, g, g), foreground-masked, and the grid ``mask``."""
        return {name: value[:, None] for name, value in self.maps(image, depth, mask).items()}

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (standardised error + variance, masked, (N, 1, g, g)) and image score (N,)."""
        maps = self.maps(image, depth, mask)
        score = maps["score"]
        return score[:, None], aggregate_masked(score, maps["mask"], self.config.aggregation)
