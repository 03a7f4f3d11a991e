"""Per-epoch progress for training loops: a live bar with the loss on a terminal, lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Without a terminal (CI, log files) print about this many lines per phase.
LOG_LINES_PER_PHASE = 10


class EpochProgress:
    """``with EpochProgress("teacher", 30) as bar: bar.update(epoch, loss, val_loss)``."""

    def __init__(self, phase: str, epochs: int, enabled: bool = True) -> None:
        self.phase = phase
        self.epochs = epochs
        self.enabled = enabled
        self._live = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task = 0

    def __enter__(self) -> EpochProgress:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(f"{self.phase}", total=self.epochs)
        return self

    def update(self, epoch: int, loss: float, val_loss: float | None = None) -> None:
        """Report the end of ``epoch`` (1-based) with its mean training (and validation) loss."""
        if not self.enabled:
            return
        text = f"{self.phase} epoch {epoch}/{self.epochs} loss {loss:.4f}"
        if val_loss is not None:
            text += f" val {val_loss:.4f}"
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=text)
            return
        every = max(1, self.epochs // LOG_LINES_PER_PHASE)
        if epoch == 1 or epoch == self.epochs or epoch % every == 0:
            print(text, file=sys.stderr, flush=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
