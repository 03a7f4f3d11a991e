"""Tiny but real bundles and RGB-D frames for tests (no torch, no training).

``make_tiny_bundle`` writes a genuine ONNX graph (built with onnx.helper) with the model contract's
inputs and outputs, plus a manifest with hashes written through ``edge_ad.manifest``. The graph:

    anomaly_map = (AvgPool8(|depth|) + COLOR_GAIN * AvgPoolK(mean_c |image|)) * (AvgPool8(mask) > 0)
    score       = max (or mean) of anomaly_map over all positions

so a dent or bump in the (foreground-relative) depth scores high, and ``tiny_model_reference``
computes the same thing in numpy. ``make_box_frame`` renders a box on a tilted belt plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_ad.backends.base import TensorSpec
from edge_ad.frame import Frame, Intrinsics
from edge_ad.geometry import ForegroundConfig
from edge_ad.manifest import (
    SCHEMA_VERSION,
    Manifest,
    ModelInfo,
    Normalization,
    ScoringSpec,
    ThresholdSpec,
    Versions,
    describe_files,
    utc_now_iso,
    write_manifest,
)
from edge_ad.preprocess import PreprocessConfig

OPSET = 17
UNSHUFFLE = 8  # depth pixels per feature-grid cell (AST's pixel-unshuffle factor)
COLOR_GAIN = 0.1
MODEL_FILE = "model.onnx"


def tiny_preprocess_config(
    mode: str = "rgbd", *, image_size: int = 32, depth_size: int = 32
) -> PreprocessConfig:
    """A small preprocessing config (feature grid depth_size / 8) with the line's plane foreground."""
    foreground = ForegroundConfig(method="plane", dilate_px=2)
    return PreprocessConfig(
        image_size=image_size, depth_size=depth_size, mode=mode, mask_dilate_px=2, foreground=foreground
    )


def _tiny_graph(image_size: int, depth_size: int, aggregation: str) -> onnx.ModelProto:
    if depth_size % UNSHUFFLE:
        raise ValueError(f"depth_size {depth_size} must be a multiple of {UNSHUFFLE}")
    grid = depth_size // UNSHUFFLE
    if image_size % grid:
        raise ValueError(f"image_size {image_size} must be a multiple of the grid {grid}")
    k_img = image_size // grid

    def pool(name: str, src: str, k: int) -> onnx.NodeProto:
        return helper.make_node("AveragePool", [src], [name], kernel_shape=[k, k], strides=[k, k])

    reduce = "ReduceMax" if aggregation == "max" else "ReduceMean"
    nodes = [
        helper.make_node("Abs", ["depth"], ["depth_abs"]),
        pool("depth_pooled", "depth_abs", UNSHUFFLE),
        helper.make_node("Abs", ["image"], ["image_abs"]),
        helper.make_node("ReduceMean", ["image_abs"], ["image_gray"], axes=[1], keepdims=1),
        pool("color_pooled", "image_gray", k_img),
        helper.make_node("Mul", ["color_pooled", "color_gain"], ["color_term"]),
        helper.make_node("Add", ["depth_pooled", "color_term"], ["raw_map"]),
        pool("mask_pooled", "mask", UNSHUFFLE),
        helper.make_node("Greater", ["mask_pooled", "zero"], ["fg_bool"]),
        helper.make_node("Cast", ["fg_bool"], ["fg"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["raw_map", "fg"], ["anomaly_map"]),
        helper.make_node(reduce, ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    inits = [
        helper.make_tensor("color_gain", TensorProto.FLOAT, [], [COLOR_GAIN]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, image_size, image_size]),
        helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, depth_size, depth_size]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, depth_size, depth_size]),
    ]
    outputs = [
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, grid, grid]),
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
    ]
    graph = helper.make_graph(nodes, "tiny_ast_stand_in", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-ad-tests"
    )
    model.ir_version = 8  # what opset 17 needs; keeps the file loadable by older onnxruntime builds
    onnx.checker.check_model(model, full_check=True)
    return model


def tiny_model_reference(
    image: np.ndarray, depth: np.ndarray, mask: np.ndarray, aggregation: str = "max"
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy version of the tiny graph on (1, ...) inputs: (anomaly_map (1,1,g,g), score (1,))."""

    def pool(x: np.ndarray, k: int) -> np.ndarray:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))

    grid = depth.shape[-1] // UNSHUFFLE
    color = pool(np.abs(image).mean(axis=1, keepdims=True), image.shape[-1] // grid)
    fg = (pool(mask, UNSHUFFLE) > 0).astype(np.float32)
    anomaly = (pool(np.abs(depth), UNSHUFFLE) + np.float32(COLOR_GAIN) * color) * fg
    reduce = np.max if aggregation == "max" else np.mean
    return anomaly.astype(np.float32), reduce(anomaly, axis=(1, 2, 3)).astype(np.float32)


def make_tiny_bundle(
    out_dir: Path,
    *,
    preprocess_config: PreprocessConfig | None = None,
    threshold: float = 1.0,
    aggregation: Literal["max", "mean"] = "max",
    normalization: Normalization | None = None,
    name: str = "tiny",
) -> Path:
    """Write a verified-loadable bundle (model.onnx + manifest.yaml) into ``out_dir``; returns ``out_dir``."""
    config = preprocess_config or tiny_preprocess_config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _tiny_graph(config.image_size, config.depth_size, aggregation)
    onnx.save(model, str(out / MODEL_FILE))
    grid = config.depth_size // UNSHUFFLE
    s, d = config.image_size, config.depth_size
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        model=ModelInfo(
            name=name,
            family="ast",
            preset="tiny-test",
            mode=config.mode,
            source_run="tiny-run",
            created=utc_now_iso(),
        ),
        inputs=(
            TensorSpec("image", (1, 3, s, s), "float32"),
            TensorSpec("depth", (1, 1, d, d), "float32"),
            TensorSpec("mask", (1, 1, d, d), "float32"),
        ),
        outputs=(
            TensorSpec("anomaly_map", (1, 1, grid, grid), "float32"),
            TensorSpec("score", (1,), "float32"),
        ),
        preprocess=config.to_dict(),
        scoring=ScoringSpec(
            aggregation=aggregation,
            normalization=normalization or Normalization(method="threshold", threshold=threshold),
            threshold=ThresholdSpec(
                value=threshold,
                target_frr=0.01,
                achieved_frr=0.0,
                frr_upper_95=0.0295,
                n_good=100,
                data_hash=None,
            ),
        ),
        files=describe_files(out, {MODEL_FILE: "model"}),
        versions=Versions.current(opset=OPSET),
        precision="fp32",
    )
    write_manifest(out, manifest)
    return out


def make_box_frame(
    *,
    width: int = 64,
    height: int = 48,
    belt_distance_m: float = 0.5,
    tilt_deg: float = 5.0,
    box: tuple[float, float, float, float] | None = (0.3, 0.3, 0.7, 0.7),
    box_height_m: float = 0.03,
    bump_m: float = 0.0,
    frame_number: int = 0,
    seed: int = 0,
) -> Frame:
    """A box (normalised x0, y0, x1, y1; None = empty belt) on a belt plane tilted about the x axis.

    ``bump_m`` raises (> 0) or dents (< 0) a disc in the middle of the box top. Colour: dark belt,
    light box, a little seeded texture so nothing is exactly constant.
    """
    intrinsics = Intrinsics(
        width, height, fx=0.9 * width, fy=0.9 * width, cx=(width - 1) / 2, cy=(height - 1) / 2
    )
    t = np.deg2rad(tilt_deg)
    v_ray = (np.arange(height, dtype=np.float64)[:, None] - intrinsics.cy) / intrinsics.fy
    # Plane n.X + d = 0 with n = (0, -sin t, -cos t) toward the camera; height h above it: z = (d - h) / (n'.ray).
    d = belt_distance_m * np.cos(t)
    denominator = np.sin(t) * v_ray + np.cos(t) + np.zeros((height, width))
    elevation = np.zeros((height, width))
    rng = np.random.default_rng(seed)
    color = rng.integers(50, 70, size=(height, width, 3)).astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = (
            round(box[0] * width),
            round(box[1] * height),
            round(box[2] * width),
            round(box[3] * height),
        )
        elevation[y0:y1, x0:x1] = box_height_m
        color[y0:y1, x0:x1] = rng.integers(170, 190, size=(y1 - y0, x1 - x0, 3)).astype(np.uint8)
        if bump_m:
            cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, min(x1 - x0, y1 - y0) / 4
            yy, xx = np.mgrid[0:height, 0:width]
            elevation[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += bump_m
    depth = ((d - elevation) / denominator).astype(np.float32)
    return Frame(
        color=color,
        depth=depth,
        intrinsics=intrinsics,
        frame_number=frame_number,
        device_timestamp_ms=frame_number * 33.3,
        arrival_ns=frame_number * 33_300_000,
    )
