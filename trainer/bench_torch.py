"""The PyTorch eager side of ``edge-ad bench``: a trained run's detector behind the InferenceBackend protocol.

Wrapping the detector as a backend lets the bench push exactly the same frames, preprocessing
and scoring through torch as through ONNX Runtime, so the two inference timings differ only in
the engine. Imported by the bench command only when ``--run`` is given (edge_ad stays torch-free).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ad.backends.base import TensorSpec
from edge_ad.bundle import Bundle
from edge_ad.errors import ConfigError, InferenceError
from trainer.run_io import CONFIG_FILE, load_detector


class TorchEagerBackend:
    """``detector(image, depth, mask) -> (anomaly_map, score)`` in eager mode under ``torch.no_grad``.

    Inputs are taken in ``inputs`` order (the model contract's: image, depth, mask); outputs are
    named by ``output_names`` in the detector's return order. Output specs come from one probe
    forward on zeros, so a detector that does not fit the bundle is caught when the Inspector
    compares them with the manifest.
    """

    def __init__(self, detector: nn.Module, inputs: Sequence[TensorSpec], output_names: Sequence[str]) -> None:
        """Probe ``detector`` once with zero inputs shaped like ``inputs``; InferenceError if it fails."""
        self.detector: nn.Module | None = detector.eval()
        self._inputs = list(inputs)
        self._output_names = list(output_names)
        if any(dim is None for spec in self._inputs for dim in spec.shape):
            raise InferenceError(f"torch eager backend needs static input shapes, got {self._inputs}")
        probe = {spec.name: np.zeros(spec.shape, dtype=spec.dtype) for spec in self._inputs}
        outputs = self.infer(probe)
        self._outputs = [TensorSpec(name, tuple(a.shape), str(a.dtype)) for name, a in outputs.items()]

    def input_spec(self) -> list[TensorSpec]:
        """The inputs the detector is fed (the bundle's)."""
        return list(self._inputs)

    def output_spec(self) -> list[TensorSpec]:
        """What the probe forward returned."""
        return list(self._outputs)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One eager forward; numpy in, numpy out (conversions included, as ONNX Runtime's are)."""
        if self.detector is None:
            raise InferenceError("torch eager backend is closed")
        missing = [spec.name for spec in self._inputs if spec.name not in inputs]
        if missing:
            raise InferenceError(f"torch eager backend: missing inputs {missing}")
        tensors = [torch.from_numpy(inputs[spec.name]) for spec in self._inputs]
        try:
            with torch.no_grad():
                result = self.detector(*tensors)
        except RuntimeError as exc:  # shape or dtype problems inside the network
            raise InferenceError(f"torch eager backend: forward failed: {exc}") from exc
        if not isinstance(result, tuple | list) or len(result) != len(self._output_names):
            raise InferenceError(
                f"torch eager backend: detector returned {type(result).__name__}, "
                f"expected {len(self._output_names)} tensors ({', '.join(self._output_names)})"
            )
        return {name: t.detach().cpu().numpy() for name, t in zip(self._output_names, result, strict=True)}

    def close(self) -> None:
        """Drop the detector."""
        self.detector = None


def open_torch_backend(run_dir: Path, bundle: Bundle, threads: int) -> TorchEagerBackend:
    """The detector of ``run_dir`` on the CPU with ``threads`` torch threads, checked against ``bundle``.

    ConfigError when the run's preprocessing differs from the bundle's: then the two backends would
    not see the same inputs and the ratio would compare different models.
    """
    if threads < 1:
        raise ConfigError(f"torch threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    loaded = load_detector(Path(run_dir), device="cpu")
    run_pre, bundle_pre = loaded.preprocess_config.to_dict(), bundle.preprocess_config.to_dict()
    differing = sorted(key for key in run_pre.keys() | bundle_pre.keys() if run_pre.get(key) != bundle_pre.get(key))
    if differing:
        details = "; ".join(f"{key}: run {run_pre.get(key)!r}, bundle {bundle_pre.get(key)!r}" for key in differing)
        raise ConfigError(
            f"--run {run_dir}: preprocessing in {Path(run_dir) / CONFIG_FILE} differs from bundle {bundle.root} "
            f"({details}); pass the run the bundle was exported from"
        )
    return TorchEagerBackend(
        loaded.detector, bundle.manifest.inputs, [spec.name for spec in bundle.manifest.outputs]
    )


def torch_threads() -> int:
    """The intra-op thread count torch is using now."""
    return torch.get_num_threads()
