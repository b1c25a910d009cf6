"""`batch`'s progress bar on stderr: done / failed / in flight, rate, ETA and credits.

Only for a person at a terminal (`Terminal.decorative`): piped or with -q it draws nothing
at all. It is rich's Progress on the stderr console, transient, refreshed by the main thread.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from mavera_cli.terminal import Terminal


class BatchCounts(Protocol):
    """What the bar shows, read from the running batch."""

    outcomes: Any  # Counter of outcome name -> items
    in_flight: int
    credits: int


class BatchProgress:
    """A context manager; `update` redraws from the batch's counts (cheap when off)."""

    def __init__(self, terminal: Terminal, total: int) -> None:
        self._terminal = terminal
        self._total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> BatchProgress:
        if not self._terminal.decorative or self._total == 0:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._terminal.console(),
            transient=True,
        )
        self._task = self._progress.add_task("batch", total=self._total, detail="")
        self._progress.start()
        return self

    def update(self, counts: BatchCounts) -> None:
        if self._progress is None:
            return
        done = sum(counts.outcomes.values())
        failed = done - counts.outcomes.get("ok", 0)
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = done / elapsed if elapsed > 0 else 0.0
        detail = (
            f"{failed} failed · {counts.in_flight} in flight · {rate:.1f}/s · "
            f"{counts.credits} credits"
        )
        self._progress.update(self._task, completed=done, detail=detail)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
