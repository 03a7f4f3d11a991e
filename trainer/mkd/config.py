"""The preset's ``model`` section for MKD (:class:`MKDSizes`) and the run's resolved model (:class:`MKDModelConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edge_ad.errors import ConfigError
from trainer.mkd.losses import COMBINATIONS, loss_weights

AGGREGATIONS = ("max", "mean")
# The official code's lambda for MVTec AD (its L_dir + lambda * L_val).
CODE_LAMBDA = 0.5


@dataclass(frozen=True)
class MKDSizes:
    """Preset ``model:`` fields.

    ``source_taps``: backbone layer indices of the CPs (the last must be ``backbone.block``);
    ``cloner_stages``: conv widths per stage (each stage ends in a 2x2 max-pool);
    ``cp_activation``: relu (VGG pools) or linear (EfficientNet block outputs);
    ``score_points``: CP indices (0-based, into ``source_taps``) that score; null = all;
    ``loss``: "paper" (L_val + lambda L_dir) or "code" (L_dir + lambda L_val);
    ``lam``: lambda; null = the paper's rule (initial L_val / L_dir) or 0.5 with "code";
    ``gradient_sigma``: the Gaussian of the "mkd-gradient" map, in input pixels.
    """

    source_taps: tuple[int, ...]
    cloner_stages: tuple[tuple[int, ...], ...]
    cp_activation: str = "relu"
    score_points: tuple[int, ...] | None = None
    loss: str = "code"
    lam: float | None = None
    gradient_sigma: float = 4.0

    def validate(self, path: str) -> None:
        """Cross-field checks, called by ``load_dataclass``."""
        if self.loss not in COMBINATIONS:
            raise ConfigError(f"{path}.loss: must be one of {', '.join(COMBINATIONS)}, got {self.loss!r}")
        if self.lam is not None and self.lam <= 0:
            raise ConfigError(f"{path}.lam: must be > 0 or null, got {self.lam}")
        if self.score_points is not None:
            bad = [p for p in self.score_points if not 0 <= p < len(self.source_taps)]
            if bad or not self.score_points or len(set(self.score_points)) != len(self.score_points):
                raise ConfigError(
                    f"{path}.score_points: need distinct CP indices in 0..{len(self.source_taps) - 1}, "
                    f"got {list(self.score_points)}"
                )
        if self.gradient_sigma < 0:
            raise ConfigError(f"{path}.gradient_sigma: must be >= 0, got {self.gradient_sigma}")


@dataclass(frozen=True)
class MKDModelConfig:
    """Everything the detector needs; saved in config.yaml under ``model``.

    ``grid``: side of the anomaly map (the finest scoring CP's); ``mask_pool``: the foreground mask
    (depth_size) is average-pooled by this factor to the grid. ``lam`` is resolved (never null).
    """

    mode: str
    image_size: int
    grid: int
    mask_pool: int
    source_taps: tuple[int, ...]
    source_channels: tuple[int, ...]
    source_strides: tuple[int, ...]
    cloner_stages: tuple[tuple[int, ...], ...]
    cp_activation: str
    score_points: tuple[int, ...]
    loss: str
    lam: float
    lam_rule: str  # "preset" (given), "code-default" or "initial-ratio" (the paper's rule)
    gradient_sigma: float
    aggregation: str

    def __post_init__(self) -> None:
        if self.mode != "rgb":
            raise ConfigError(f"model.mode: mkd runs on rgb only, got {self.mode!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"model.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        loss_weights(self.loss, self.lam)  # checks the combination name

    @property
    def weights(self) -> tuple[float, float]:
        """(weight_val, weight_dir) of the loss and of the anomaly map."""
        return loss_weights(self.loss, self.lam)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict."""
        out = asdict(self)
        for name in ("source_taps", "source_channels", "source_strides", "score_points"):
            out[name] = list(out[name])
        out["cloner_stages"] = [list(s) for s in self.cloner_stages]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MKDModelConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise ConfigError(f"model: unknown keys {unknown}, missing keys {missing}")
        values = dict(data)
        for name in ("source_taps", "source_channels", "source_strides", "score_points"):
            values[name] = tuple(int(v) for v in values[name])
        values["cloner_stages"] = tuple(tuple(int(w) for w in s) for s in values["cloner_stages"])
        return cls(**values)
