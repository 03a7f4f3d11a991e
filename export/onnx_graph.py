"""Trace a trained detector into one ONNX graph with exactly the runtime's inputs and outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from edge_ad.backends.base import TensorSpec
from edge_ad.errors import ExportError
from edge_ad.preprocess import PreprocessConfig

# Opset 17: the newest that TensorRT 8.5 (JetPack 5) parses, and supported by TensorRT 10 (JetPack 6)
# and every onnxruntime we target. Pinned so a bundle builds identically on every workstation.
OPSET = 17
INPUT_NAMES = ("image", "depth", "mask")
OUTPUT_NAMES = ("anomaly_map", "score")


def example_inputs(config: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-of-one example inputs shaped like :func:`edge_ad.preprocess.to_model_inputs` output."""
    s, d = config.image_size, config.depth_size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, s, s, generator=generator)
    depth = torch.randn(1, 1, d, d, generator=generator)
    mask = torch.ones(1, 1, d, d)
    return image, depth, mask


class ContractGraph(nn.Module):
    """The detector with every contract input kept in the graph.

    The TorchScript exporter drops inputs a mode does not read (depth in rgb mode, image in depth
    mode). The runtime, INT8 calibration and TensorRT all feed the same three inputs, so the graph
    consumes the unused ones in a term that is exactly zero for the finite inputs the backend
    admits (it checks them before every call).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        anomaly_map, score = self.detector(image, depth, mask)
        keep_inputs = (image.mean() + depth.mean()) * 0.0
        return anomaly_map, score + keep_inputs


def export_detector(detector: nn.Module, config: PreprocessConfig, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Write ``detector`` (eval mode, CPU) as ONNX to ``path``; returns (input specs, output specs).

    The graph is checked with ``onnx.checker`` (full check, shape inference) before returning.
    """
    detector = detector.eval().cpu()
    inputs = example_inputs(config)
    with torch.no_grad():
        anomaly_map, score = detector(*inputs)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which emits opset 18+;
        # opset 17 is what the Jetson's TensorRT 8.5 reads, so the stable tracer stays.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # Shapes are static by design (batch of one, fixed sizes), so the tracer's warnings that
        # Python-side shape arithmetic becomes constant are expected.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            ContractGraph(detector).eval(),
            inputs,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph {path} failed onnx.checker: {exc}") from exc
    in_specs = [TensorSpec(name, tuple(t.shape), "float32") for name, t in zip(INPUT_NAMES, inputs, strict=True)]
    out_specs = [
        TensorSpec("anomaly_map", tuple(anomaly_map.shape), "float32"),
        TensorSpec("score", tuple(score.shape), "float32"),
    ]
    return in_specs, out_specs


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Mirror key manifest fields into the ONNX file's ``metadata_props`` (visible to any ONNX tool)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
