"""``edge-ad check``: verify things before they reach the line (``check bundle``, ``check config``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge_ad.commands._common import console, handle_errors
from edge_ad.errors import BundleError

check_app = typer.Typer(
    help="Verify a bundle (or a station config) before using it on the line.",
    no_args_is_help=True,
)

_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


@check_app.command("bundle")
@handle_errors
def check_bundle(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (holds manifest.yaml and model.onnx).")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the checks as JSON instead of a table.")
    ] = False,
    no_hashes: Annotated[
        bool, typer.Option("--no-hashes", help="Skip SHA-256 (sizes and git-lfs pointers are still checked).")
    ] = False,
) -> None:
    """Check a bundle's manifest, file hashes and model I/O; exit 0 when it is usable, 4 when not."""
    from edge_ad.bundle import verify_bundle

    report = verify_bundle(bundle, check_hashes=not no_hashes)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"bundle {bundle}", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in report.checks:
            table.add_row(check.name, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail)
        console.print(table)
        verdict = (
            "[green]bundle OK[/]"
            if report.ok
            else f"[bold red]bundle refused[/]: {len(report.failures)} check(s) failed"
        )
        console.print(verdict)
    if not report.ok:
        raise typer.Exit(code=BundleError.exit_code)


@check_app.command("config")
@handle_errors
def check_config(
    station: Annotated[Path, typer.Argument(help="Station YAML file (see firmware_configs/stations/).")],
    probe: Annotated[
        bool, typer.Option("--probe", help="Also open the camera named in the file: requested vs. actual profile.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the resolved config as JSON.")] = False,
) -> None:
    """Check a station file; print the resolved config (exit 0) or the file:line and key at fault (exit 2).

    With --probe the camera is opened and its profile compared with the file; a camera that is missing or delivers another profile exits 5.
    """
    import yaml

    from edge_ad.commands._common import err_console
    from edge_ad.config import load_station
    from edge_ad.errors import ConfigError

    config = load_station(station)
    resolved = config.to_dict()
    derived: dict[str, object] = {"decision_latency_s": round(config.decision_latency_s(), 4)}
    fire = config.reject.fire_delay_s()
    if fire is not None:
        derived["reject_fire_delay_s"] = round(fire, 4)
    if config.reject.mode == "encoder":
        derived["reject_delay_counts"] = config.reject.delay_counts()
    bundle = config.bundle_path()
    if bundle is not None:
        derived["bundle"] = str(bundle)
        if not (bundle / "manifest.yaml").is_file():
            err_console.print(f"[yellow]warning[/]: model.bundle {bundle} has no manifest.yaml (the runtime will refuse to start)")
    noise = config.noise_path()
    if noise is not None and not noise.is_file():
        raise ConfigError(f"{station}: geometry.noise_file {noise} does not exist (run `edge-ad calibrate plane` again)")
    resolved["derived"] = derived
    if json_output:
        typer.echo(json.dumps(resolved, indent=2))
    else:
        typer.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)
        console.print(f"[green]station config OK[/]: {station}")
    if probe:
        from edge_ad.station_camera import probe_camera, refuse_mismatch

        report = probe_camera(config)  # CameraError (exit 5) when it cannot be opened
        table = Table(title=f"camera {report.uri}")
        table.add_column("setting")
        table.add_column("requested")
        table.add_column("actual")
        for key in sorted(set(report.requested) | set(report.actual)):
            table.add_row(key, str(report.requested.get(key, "-")), str(report.actual.get(key, "-")))
        console.print(table)
        if report.not_applied:
            err_console.print(f"[yellow]not applied by this source[/]: {', '.join(report.not_applied)}")
        refuse_mismatch(report)
        console.print("[green]camera delivers the requested profile[/]")


def register(app: typer.Typer) -> None:
    """Add the ``check`` sub-app to the root CLI."""
    app.add_typer(check_app, name="check")
