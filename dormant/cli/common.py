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
OutDirOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Folder for artifacts (plots, exports). Default: ./dormant-runs/<command>/."),
]


def fail(message: str, code: int = 2) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def artifacts_dir(out: Path | None, command: str) -> Path:
    d = out if out is not None else Path("dormant-runs") / command
    d.mkdir(parents=True, exist_ok=True)
    return d
