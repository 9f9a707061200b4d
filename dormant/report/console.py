"""The consoles: human output goes to stderr-safe Rich consoles, ``--json`` output to stdout alone."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
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


class LineProgress:
    """The plain-text stand-in for a progress bar when stderr is not a terminal (CI logs, pipes).

    Same calls as Rich's ``Progress`` (``add_task``, ``update``, ``advance``, context manager); it
    prints one line when a task starts, one every ``every`` seconds while tasks advance (step counts
    and an estimate of the time left), and one when a task completes.
    """

    def __init__(self, out: Console | None = None, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.out = out or err_console
        self.every = every
        self.clock = clock
        self.tasks: dict[int, dict[str, Any]] = {}
        self._last = clock()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        tid = len(self.tasks)
        # A task of total 0 is a message: printed once, never listed as running.
        self.tasks[tid] = {"description": description, "total": total, "completed": completed, "start": self.clock(), "done": total == 0}
        self._line(f"{description} ...")
        return tid

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None, total: float | None = None, description: str | None = None, **fields: Any) -> None:
        t = self.tasks[task_id]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if fields.get("past"):  # a timed task run past its planned total: its time, and no estimate of time left
            t["past"] = True
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        if not t["done"] and t["total"] and t["completed"] >= t["total"]:
            t["done"] = True
            count = "" if t.get("past") else f", {_num(t['completed'])}/{_num(t['total'])}"
            self._line(f"{t['description']}: done{count} in {self.clock() - t['start']:.0f}s")
        elif self.clock() - self._last >= self.every:  # one line with every unfinished task
            self._line(" | ".join(self.status(i) for i, other in self.tasks.items() if not other["done"]))

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def status(self, task_id: int) -> str:
        """``description: done/total (pct), elapsed, ~ETA left`` for one task."""
        t = self.tasks[task_id]
        elapsed = self.clock() - t["start"]
        if t.get("past"):
            return f"{t['description']}: {elapsed:.0f}s"
        if not t["total"]:
            return f"{t['description']}: {_num(t['completed'])} steps, {elapsed:.0f}s"
        frac = t["completed"] / t["total"]
        eta = f", ~{elapsed * (1 - frac) / frac:.0f}s left" if frac > 0 else ""
        return f"{t['description']}: {_num(t['completed'])}/{_num(t['total'])} ({frac:.0%}), {elapsed:.0f}s{eta}"

    def _line(self, text: str) -> None:
        self._last = self.clock()
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)


def _num(x: float) -> str:
    """A count as written (12), a measured amount (seconds of a budget) without its noise (20.0145 -> 20)."""
    if float(x).is_integer():
        return f"{x:g}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.0f}"


def progress(transient: bool = True) -> Progress | LineProgress:
    """Progress on stderr (so ``--json`` stdout stays clean): a Rich bar on a terminal, otherwise
    plain lines (each task's start and end, and a status line every ~10 s)."""
    if not err_console.is_terminal:
        return LineProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@contextmanager
def stage_progress(prefix: str = "") -> Iterator[Callable[[str, int, int], None]]:
    """A callback ``on_progress(stage, done, total)`` that shows one progress task per stage
    (the convention of long library calls such as ``build_suite``)."""
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{prefix}{stage}", total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield on_progress


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with progress on stderr (a bar on a terminal, periodic lines otherwise)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
