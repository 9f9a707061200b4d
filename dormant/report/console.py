"""The consoles: human output goes to stderr-safe Rich consoles, ``--json`` output to stdout alone."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dormant.report.jsonable import to_jsonable

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

T = TypeVar("T")


def emit(result: Any, as_json: bool, render: Callable[[], None] | None = None) -> None:
    """Print ``result`` as JSON on stdout when ``as_json``, otherwise call ``render`` for Rich output."""
    if as_json:
        sys.stdout.write(json.dumps(to_jsonable(result), indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()
    elif render is not None:
        render()


def progress(transient: bool = True) -> Progress:
    """A Rich progress bar on stderr (so ``--json`` stdout stays clean)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr (silent when stderr is not a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
