"""Progress bars (rich) with ETA, silenced by ``quiet=True``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        pass


class _RichProgress:
    def __init__(self, progress, task):
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def progress_bar(total: int, description: str, quiet: bool = False) -> Iterator[_NullProgress]:
    """Context manager yielding an object with ``advance(n)``.

    Shows a bar with count, elapsed time and ETA on stderr unless ``quiet`` is true.
    """
    if quiet:
        yield _NullProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield _RichProgress(progress, task)
