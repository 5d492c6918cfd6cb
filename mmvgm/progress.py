"""The project's rich consoles, and one progress-bar style for all long work (on stderr).

Every verb prints through :func:`stdout_console` / :func:`stderr_console_now`. On a terminal they are rich's own consoles. Into a pipe or a file rich
would break lines at 80 columns (or at the width of a terminal on another stream) and shrink
table columns until their headers are cut (``TPR@5%F…``): a printed command would no longer
paste and a header would no longer read. There, the consoles are wide enough that no line
wraps and no column shrinks, and they soft-wrap (no line breaks of their own) on top.
"""
from __future__ import annotations

import importlib
import importlib.util
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")

PIPE_WIDTH = 100_000  # wider than anything printed: a pipe or a file has no width to fit


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


def stdout_console() -> Console:
    """A Console on stdout as it is now: rich's own on a terminal, one that never wraps a line or
    cuts a table header in a pipe or a file. Made per use, since the stream may change (tests)."""
    return _console(stderr=False)


def stderr_console_now() -> Console:
    """As :func:`stdout_console`, on stderr (warnings, notes and progress bars)."""
    return _console(stderr=True)


def make_progress(*extra_columns, disable: bool = False) -> Progress:
    """A rich Progress on stderr; ``extra_columns`` add e.g. loss or files/s fields."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), *extra_columns,
        console=stderr_console_now(), disable=disable, transient=False,
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


#: The Hugging Face libraries whose loading bars ("Loading pipeline components...", "Loading
#: weights") :func:`library_bars_off` turns off; a library that is not installed is skipped.
LIBRARY_BAR_SWITCHES = ("transformers.utils.logging", "diffusers.utils.logging")


@contextmanager
def library_bars_off() -> Iterator[None]:
    """Turn the loading bars of transformers and diffusers off for the ``with`` block, then
    back to what they were. Loading a model is a step of mmvgm's own work, which shows at most
    one bar of its own: a library's bar under it breaks that bar's line, and ``-q`` must mean
    no bar at all. The hub's download bars are left on: a download is long, and the user asked for it."""
    restore = []
    for name in LIBRARY_BAR_SWITCHES:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        switch = importlib.import_module(name)
        if switch.is_progress_bar_enabled():
            switch.disable_progress_bar()
            restore.append(switch)
    try:
        yield
    finally:
        for switch in restore:
            switch.enable_progress_bar()
