"""One progress-bar style for all long work (rich, on stderr; silent when disabled)."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")

stderr_console = Console(stderr=True)


def make_progress(*extra_columns, disable: bool = False) -> Progress:
    """A rich Progress on stderr; ``extra_columns`` add e.g. loss or files/s fields."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), *extra_columns,
        console=stderr_console, disable=disable, transient=False,
    )


def track(items: Iterable[T], description: str, total: Optional[int] = None,
          disable: bool = False) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(disable=disable) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
