"""`dormant report RUN_ID|latest`: one self-contained HTML file and a Markdown twin for a ledger run."""

from __future__ import annotations

from typing import Annotated

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir, fail


def report_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix), or 'latest' for the newest run.")],
    ledger: LedgerOpt = None,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a report on a recorded run: verdict first, key numbers, its plots inlined, and the other
    runs on the same subject (invalidated ones struck out with the reason). The HTML file needs no
    network access; the Markdown twin links the plots by path. Reads the ledger, records nothing.

    Example: `dormant report latest -o reports/`
    """
    from dormant.report.console import console, emit
    from dormant.report.document import headline, related_runs, resolve_run, write_report

    try:
        run = resolve_run(run_id, ledger)
    except KeyError as exc:
        raise fail(str(exc.args[0]))
    related = related_runs(run, ledger)
    html_path, md_path = write_report(run, related, artifacts_dir(out, "report"))
    result = {"run": run["id"], "command": run["command"], "headline": headline(run), "invalidated": run["invalidated"],
              "related": [r["id"] for r in related], "html": str(html_path), "markdown": str(md_path)}

    def render() -> None:
        from rich.markup import escape

        state = " [bold red](INVALIDATED)[/]" if run["invalidated"] else ""
        console.print(f"{escape(run['command'])} run {run['id']}{state}: {escape(headline(run))}")
        console.print(f"{len(related)} other runs on the same subject; wrote {escape(str(html_path))} and {escape(str(md_path))}")

    emit(result, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
