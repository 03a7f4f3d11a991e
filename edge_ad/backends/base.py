"""The inference backend protocol: numpy in, numpy out, no pre- or post-processing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output (dims may be None when dynamic)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def matches(self, array: np.ndarray) -> bool:
        """True when ``array`` has this spec's dtype and shape (dynamic dims match anything)."""
        if str(array.dtype) != self.dtype or array.ndim != len(self.shape):
            return False
        return all(d is None or d == s for d, s in zip(self.shape, array.shape, strict=True))


@runtime_checkable
class InferenceBackend(Protocol):
    """What the runtime needs of an engine: specs, one call, and a way to release it."""

    def input_spec(self) -> list[TensorSpec]:
        """Inputs the model takes, in graph order."""
        ...

    def output_spec(self) -> list[TensorSpec]:
        """Outputs the model returns, in graph order."""
        ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once; raises InferenceError on failure."""
        ...

    def close(self) -> None:
        """Release the session / engine."""
        ...
