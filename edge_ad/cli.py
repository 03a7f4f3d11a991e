"""The `edge-ad` command line: a thin typer shell over the library.

Each area registers its commands from ``edge_ad/commands/<area>.py``; heavy imports (torch,
onnx, pyrealsense2) happen inside command bodies so that ``edge-ad --help`` stays fast and
torch-free on the device.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="edge-ad",
    help=(
        "Anomaly detection for factory lines with an RGB-D camera. Train on good parts "
        "(workstation), export a verified bundle, and inspect parts on the line (Jetson)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order their commands appear in --help. A module that is not
# written yet is skipped, so areas can land one at a time.
COMMAND_MODULES = (
    "edge_ad.commands.data",
    "edge_ad.commands.synth",
    "edge_ad.commands.train",
    "edge_ad.commands.evaluate",
    "edge_ad.commands.export",
    "edge_ad.commands.run",
    "edge_ad.commands.check",
    "edge_ad.commands.bench",
    "edge_ad.commands.benchmark_models",
    "edge_ad.commands.demo",
    "edge_ad.commands.camera",
    "edge_ad.commands.calibrate",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)


@app.command()
def version() -> None:
    """Print the edge-ad version and the versions of its runtime libraries."""
    import numpy
    import onnxruntime

    from edge_ad import __version__

    typer.echo(f"edge-ad {__version__} (numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__})")


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
