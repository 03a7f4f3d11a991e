"""``edge-ad export`` (workstation: a trained run becomes a verified bundle) and ``edge-ad build-engine`` (Jetson)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, handle_errors


@handle_errors
def export(
    run: Annotated[Path, typer.Option("--run", help="Training run directory (from edge-ad train --out).")],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Dataset (ROOT/CATEGORY) for the parity and INT8 gates; default: the run's training data."),
    ] = None,
    frr: Annotated[
        float, typer.Option("--frr", min=1e-6, max=0.5, help="Target false-reject rate on good validation parts.")
    ] = 0.01,
    parity_samples: Annotated[
        int, typer.Option("--parity-samples", min=1, help="Held-out samples (validation + test) for the parity gate.")
    ] = 16,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, int8 (QDQ, gated against FP32) or fp16 (TensorRT engines only).")
    ] = "fp32",
    target: Annotated[
        str, typer.Option("--target", help="onnxruntime (CPU, the default) or tensorrt (engine built later on the Jetson).")
    ] = "onnxruntime",
    int8_retry: Annotated[
        bool, typer.Option("--int8-retry", help="When the INT8 gate fails, retry with more of the graph kept in float.")
    ] = False,
    calibration_samples: Annotated[
        int, typer.Option("--calibration-samples", min=1, help="Good training parts used to calibrate INT8.")
    ] = 32,
    gate_samples: Annotated[
        int, typer.Option("--gate-samples", min=2, help="Held-out parts (good + defective) for the INT8 gate.")
    ] = 200,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle directory.")] = False,
) -> None:
    """Export RUN to a bundle: graph check, torch-vs-ONNX Runtime parity gate, optional INT8 gate, manifest with hashes.

    Exit 8 when a gate fails (the message says by how much); nothing is left behind then.
    """
    from export.pipeline import Int8Options, check_precision_target, export_run  # torch: workstation only

    check_precision_target(precision, target)
    result = export_run(
        run,
        out,
        data=data,
        target_frr=frr,
        parity_samples=parity_samples,
        overwrite=overwrite,
        precision=precision,  # type: ignore[arg-type]
        target=target,  # type: ignore[arg-type]
        int8=Int8Options(calibration_samples=calibration_samples, gate_samples=gate_samples, retry=int8_retry),
    )
    p = result.parity
    console.print(f"bundle written: {result.bundle_dir}")
    console.print(
        f"parity on {p.samples} held-out samples: map max |diff| {p.map_max_abs:.2e} x threshold, "
        f"score max |diff| {p.score_max_abs:.2e} x threshold, decisions agree {p.decision_agreement:.0%}"
    )
    console.print(f"threshold {result.threshold:.6g} for false-reject rate {frr:.2%} on good validation parts")
    if result.int8 is not None:
        g = result.int8.gate
        auroc = "n/a (one class)" if g.auroc_drop is None else f"{g.auroc_fp32:.4f} -> {g.auroc_int8:.4f} ({100 * g.auroc_drop:+.2f} points drop)"
        console.print(
            f"INT8 gate on {g.samples} parts ({g.good} good, {g.defective} {g.defects} defects): decisions agree "
            f"{g.decision_agreement:.1%}, AUROC {auroc}, score max |diff| {g.score_max_abs:.2e} x threshold"
        )
        groups = ", ".join(f"{reason} {count}" for reason, count in result.int8.plan.summary().items())
        console.print(f"kept in float (retry level {result.int8.settings.level}): {groups}")
        offsets = ", ".join(
            f"{flavour} {value:+.4g} ({value / result.threshold:+.2%} of threshold)"
            for flavour, value in result.int8.settings.score_offsets.items()
        )
        console.print(f"INT8 score offset measured on the calibration parts and subtracted: {offsets}")
    if result.device_command:
        console.print(f"on the Jetson, build the engine with: {result.device_command}")


@handle_errors
def build_engine(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from edge-ad export).")],
    precision: Annotated[str, typer.Option("--precision", help="fp16 or int8 (fp32 for debugging).")] = "fp16",
    workspace_mb: Annotated[int, typer.Option("--workspace-mb", min=16, help="TensorRT builder workspace in MiB.")] = 1024,
    calibration_data: Annotated[
        Path | None,
        typer.Option("--calibration-data", help="Good parts (ROOT/CATEGORY) for INT8 calibration when the bundle has no TensorRT Q/DQ model."),
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build again even when a matching engine exists.")] = False,
) -> None:
    """Build the bundle's TensorRT engine on this device (Jetson), or reuse the one already built for it.

    Exit 2 when TensorRT or pycuda is missing (the message includes the equivalent trtexec command),
    4 when the bundle is bad, 8 when TensorRT fails to parse or build.
    """
    from edge_ad.bundle import load_bundle
    from edge_ad.errors import ConfigError
    from edge_ad.trt_engine_cache import ENGINE_PRECISIONS

    if precision not in ENGINE_PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {precision!r}")
    loaded = load_bundle(bundle)
    from export.tensorrt import build_engine as build
    from export.tensorrt import iter_calibration_inputs, onnx_for_engine

    try:
        calibration = list(iter_calibration_inputs(loaded, calibration_data)) if calibration_data else None
        result = build(loaded, precision, workspace_mb=workspace_mb, calibration=calibration, rebuild=rebuild)
    except ConfigError as exc:
        from edge_ad.trt_engine_cache import trtexec_command

        onnx_path = onnx_for_engine(loaded, precision)
        engine_path = Path(bundle) / "engines" / f"model_{precision}.engine"
        command = trtexec_command(
            onnx_path, engine_path, precision, None, workspace_mb, float_nodes=loaded.manifest.float_nodes
        )
        raise ConfigError(
            f"{exc}. Without the Python bindings, trtexec can build an engine: {' '.join(command)} "
            "(edge-ad loads engines it built itself; name and sidecar are checked)"
        ) from exc
    verb = "built" if result.built else "reused"
    console.print(f"engine {verb}: {result.path}")


def register(app: typer.Typer) -> None:
    """Add ``edge-ad export`` and ``edge-ad build-engine``."""
    app.command("export")(export)
    app.command("build-engine")(build_engine)
