"""Shared plumbing for CLI commands: error-to-exit-code mapping and console output."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from edge_ad.errors import EdgeAdError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an :class:`EdgeAdError` into its documented exit code and a one-line message."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EdgeAdError as exc:
            err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {exc}")
            raise typer.Exit(code=exc.exit_code) from exc
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper


def is_interactive() -> bool:
    """True when stdout is a terminal (progress bars animate; in CI they print plainly)."""
    return sys.stdout.isatty()
