"""`dormant demo`: both investigations end to end on the built-in subjects."""

from __future__ import annotations

from typing import Annotated

import typer

from dormant.cli.common import JsonOpt, LedgerOpt


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        llm: Annotated[bool, typer.Option("--llm/--no-llm", help="Run the dormant-LLM tour (builds the micro zoo on first use).")] = True,
        net: Annotated[bool, typer.Option("--net/--no-net", help="Run the opaque-network tour (compiles an MD5 network on first use).")] = True,
        ledger: LedgerOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the guided tour: find the planted backdoor of a zoo chat model and invert a compiled MD5 network.

        LLM side (variant mlp-phrase of the micro zoo): diff against two candidate bases, the
        change's rank and payload read-out, weight amplification exposing the payload. Network side:
        `net solve` on an MD5 network with a two-word secret. Each finding is printed beside the
        planted answer (which the tools never read). First run builds the subjects (minutes); later
        runs use the cache.

        Example: dormant demo --no-net
        """
        from rich.panel import Panel

        from dormant.demo import run_demo
        from dormant.ledger import record_run
        from dormant.report.console import console, emit, stage_progress

        def show(step) -> None:
            if as_json:
                return
            mark = "[green]ok[/]" if step.ok else "[red]missed[/]"
            console.print(Panel(f"{step.finding}\n[dim]planted: {step.planted}[/]", title=f"{step.name}  {mark}  ({step.seconds:.1f}s)", title_align="left"))

        with record_run("demo", {"llm": llm, "net": net}, ledger=ledger) as run:
            if llm:  # the first use builds the zoo: minutes, so show progress (later runs read the cache)
                from dormant.zoo.llm import build_suite

                with stage_progress("building the LLM zoo (first use only): ") as on_build:
                    build_suite("micro", on_progress=on_build)
            result = run_demo(show, llm=llm, net=net)
            run.outputs["steps"] = result.steps
        emit(result, as_json, lambda: console.print("[bold green]all steps found the planted answer[/]" if result.ok else "[bold red]some steps missed[/]"))
        if not result.ok:
            raise typer.Exit(1)
