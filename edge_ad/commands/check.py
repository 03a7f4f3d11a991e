"""``edge-ad check``: verify things before they reach the line (``check bundle``; ``check config`` joins later)."""

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


def register(app: typer.Typer) -> None:
    """Add the ``check`` sub-app to the root CLI."""
    app.add_typer(check_app, name="check")
