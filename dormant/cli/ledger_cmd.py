"""`dormant ledger list|show`: browse recorded runs; invalidated runs are struck out with the reason."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from dormant import ledger as _ledger
from dormant.cli.common import JsonOpt, LedgerOpt, fail
from dormant.report.console import console, emit

app = typer.Typer(help="Browse the run ledger: every result-producing command records its run there.", no_args_is_help=True)


CheckFilesOpt = Annotated[bool, typer.Option("--check-files/--no-check-files", help="Re-fingerprint input files still on disk and invalidate runs whose inputs changed since (reads a small sample of each file).")]


def _when(ts: float | None) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@app.command("list")
def list_cmd(
    ledger: LedgerOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many runs, newest first.")] = 30,
    command: Annotated[Optional[str], typer.Option(help="Only runs of this command (e.g. 'diff').")] = None,
    check_files: CheckFilesOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """List recorded runs, newest first; runs invalidated by a newer decision or a changed input file are marked INVALIDATED with the reason (`invalidated` in --json). A run left `running` by a process that is gone (killed) is stored and shown as `interrupted`."""
    runs = _ledger.list_runs(ledger, limit=limit, command=command, check_files=check_files)

    def render() -> None:
        from rich.markup import escape

        t = Table(title=f"runs in {_ledger.ledger_path(ledger)}")
        for col in ("id", "command", "started", "secs", "status", "inputs"):
            t.add_column(col, overflow="fold")
        for r in runs:
            secs = f"{r['ended_at'] - r['started_at']:.1f}" if r["ended_at"] else "-"
            style = {"ok": "green", "failed": "red", "interrupted": "red"}.get(r["status"], "yellow")
            status = f"[{style}]{r['status']}[/]"
            if r["invalidated"]:
                status += " [bold red]INVALIDATED[/]\n" + "\n".join(escape(x["reason"]) for x in r["invalidated"])
                t.add_row(f"[strike]{r['id']}[/]", f"[strike]{r['command']}[/]", _when(r["started_at"]), secs, status, ", ".join(r["inputs"] or {}))
            else:
                t.add_row(r["id"], r["command"], _when(r["started_at"]), secs, status, ", ".join(r["inputs"] or {}))
        console.print(t)
        n = sum(1 for r in runs if r["invalidated"])
        if n:
            console.print(f"{n} of {len(runs)} runs shown are INVALIDATED (struck out): their results rest on an assumption or input that has since changed.")

    emit(runs, as_json, render)


@app.command("show")
def show_cmd(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], ledger: LedgerOpt = None, check_files: CheckFilesOpt = True,
             as_json: JsonOpt = False) -> None:
    """Show one run: arguments, input fingerprints, assumptions, outputs, artifacts, what it computed with (torch, kernel
    set), and why it is invalid if it is."""
    try:
        run = _ledger.get_run(run_id, ledger, check_files=check_files)
    except KeyError as exc:
        raise fail(str(exc.args[0]))

    def render() -> None:
        from rich.markup import escape

        t = Table(title=f"run {run['id']}: {run['command']}", show_header=False)
        t.add_column("field", style="bold")
        t.add_column("value", overflow="fold")
        t.add_row("status", escape(run["status"] + (f" ({run['error']})" if run["error"] else "")))
        for x in run["invalidated"]:
            t.add_row("[bold red]INVALIDATED[/]", escape(x["reason"]))
        t.add_row("subject", escape(run.get("subject") or "-"))
        t.add_row("decided", ", ".join(run["decided"]) or "-")
        t.add_row("started", _when(run["started_at"]))
        t.add_row("ended", _when(run["ended_at"]))
        for key in ("args", "inputs", "assumptions"):
            t.add_row(key, escape(json.dumps(run[key], indent=1)))
        outputs = json.dumps(run["outputs"], indent=1)
        t.add_row("outputs", escape(outputs if len(outputs) < 4000 else outputs[:4000] + "\n... (use --json for all)"))
        t.add_row("artifacts", escape("\n".join(run["artifacts"] or []) or "-"))
        env = run.get("environment") or {}
        t.add_row("computed with", escape(", ".join(f"{k} {v}" for k, v in env.items()) or "- (not recorded)"))
        console.print(t)

    emit(run, as_json, render)
