"""Progress display for long work: a rich bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` while showing progress under ``description``.

    On a terminal this is a live bar; without one (CI, logs) it prints a line at start and end so
    logs stay short but still show that long work is moving.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
        return
    if not sys.stderr.isatty():
        print(f"{description} ...", file=sys.stderr, flush=True)
        count = 0
        for count, item in enumerate(items, start=1):  # noqa: B007
            yield item
        print(f"{description}: done ({count})", file=sys.stderr, flush=True)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
