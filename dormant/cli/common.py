"""Options and error handling shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.report.console import err_console

LedgerOpt = Annotated[
    Optional[Path],
    typer.Option("--ledger", envvar="DORMANT_LEDGER", help="SQLite run ledger to record into (default ./dormant-runs/ledger.sqlite)."),
]
# What a --prompts option takes (``dormant.llm.engine.probes.resolve_prompts``).
PROMPT_SOURCES = ('a .txt file (one prompt a line), a .jsonl file ("prompt" or "messages" a line), builtin:v1 (the built-in probes) '
                  "or zoo:prompts (104 prompts of the micro zoo's own distribution)")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
def writable_out(value: Optional[Path]) -> Optional[Path]:
    """--out, checked as the command line is read: an unwritable folder is refused before any work."""
    from dormant.errors import DormantError, writable_folder

    if value is not None:
        try:
            writable_folder(value)
        except DormantError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


OutDirOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", callback=writable_out,
                 help="Folder for artifacts (plots, exports). Default: a folder named after the command in ./dormant-runs/ (e.g. ./dormant-runs/amplify/)."),
]


def fail(message: str, code: int = 2) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def artifacts_dir(out: Path | None, command: str) -> Path:
    from dormant.errors import writable_folder

    return writable_folder(out if out is not None else Path("dormant-runs") / command)
