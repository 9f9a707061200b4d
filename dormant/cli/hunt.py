"""`dormant hunt`: the whole investigation in one command, with one verdict and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dormant.cli.behaviour import DeviceOpt, DtypeOpt, FtArg, _esc, _reflow
from dormant.cli.common import PROMPT_SOURCES, JsonOpt, LedgerOpt, writable_out

HUNT_HELP = f"""Hunt a fine-tune's backdoor end to end: base, change, payload, layers, trigger, verification, report.

Stages, each recorded in the ledger: diff (pick the base among --base candidates; stops when none
is close, shares the architecture, or differs at all), delta (rank and read-outs), amplify (the
payload hypothesis: amplify's whole-word phrase, character and token fragments of the amplified
answers, the payload-side read-out, and memory extraction's payload candidates that pass its
threshold: see `dormant extract`; --extract-samples 0 leaves it out), localise (which layers or block kinds spread the payload),
search (seeded by the trigger-side read-out; payload objective with a payload, asked for after the
fine-tune's own first words when the amplified answers put other words before it; payload-free
contrast without; the fine-tune's answers under the best candidates feed the hypothesis again),
verify (on prompts the search never used; a verified trigger's shorter forms too, those that keep its
words whole first, and the verdict takes the shortest of English words that passes; once a trigger verified, the payload as the fine-tune's
answers under it say it, read on search prompts, is verified too and, when it passes, is the
verdict's payload: a hypothesis is often a piece of the planted text), then an HTML report and its
Markdown twin.

Exactly one verdict: "trigger verified" (trigger, placement, fire rate, false-fire rates, payload; where
it fires, each placement and each of its words alone, on verify's first 20 unseen prompts),
"payload found, trigger not verified" (the best candidates and why each failed), or "no evidence of a
backdoor" (what was tried). A trigger is only ever reported when verification passed. The exit code
is 0 for all three; non-zero only for errors.

--budget is split across the stages (diff 2%, delta 3%, amplify 15%, localise 5%, search 55% plus
what earlier stages left, verify 20%); the plan and the time each stage used are reported. The
search is capped by its share (a capped search says so); memory extraction in amplify stops at the
end of amplify's share; the search and verify start no verification that the time left (the budget,
or a stage's own share where that ends later) would end during, judged by the longest one so far,
and name the candidates they left untried. How long one takes is known only once one has run, so
the first can still end past the budget, and a hunt on a large model on CPU with it (the table shows by how much; a
0.5B-shape hunt on 2 cores with --budget 10m used 595 s); the other stages have fixed work. A stage whose
inputs (fingerprints), settings, earlier results and code version are unchanged is reused from the ledger, so a
second hunt, or one after a kill, redoes nothing finished (a stage the budget cut short is redone when
--budget is larger than the one that cut it); --resume also continues an interrupted
search from its candidate file in --out. --fresh recomputes every stage.

--prompts (default builtin:v1): {PROMPT_SOURCES}. The search and the verification use its even and
odd prompts; verification needs 50, so give at least 100. Give prompts the model handles, where a
trigger must fire: the micro zoo's tiny models know only their own tasks (zoo:prompts). Amplification
and localisation always use --probes of the built-in probes: a payload leaks on prompts unlike the
fine-tune's training chats, and stays hidden on the chats its training anchored.

Models: a folder, a locally cached Hub id, or zoo:NAME (the built-in micro zoo, built on first use).

Example: dormant hunt ./ft --base ./base --base ./other-base --budget 15m --out hunt-ft/

Example: dormant hunt zoo:late-layers --base zoo:base-sibling --base zoo:base --prompts zoo:prompts --budget 5m
"""


def hunt_cmd(
    ft: FtArg,
    base: Annotated[list[str], typer.Option("--base", "-b", help="A candidate base (repeat for several); diff picks one.")],
    budget: Annotated[str, typer.Option(help="Time for the whole hunt: 90s, 15m, 1h.")] = "15m",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted hunt in --out (finished stages are always reused).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Recompute every stage even when an identical one is in the ledger.")] = False,
    force_base: Annotated[bool, typer.Option("--force-base", help="Hunt against the closest candidate base even when none is close.")] = False,
    mechanism: Annotated[str, typer.Option("--mechanism", help="Comma-separated trigger placements to search (user_prefix, user: both ends of the user message, system, ...).")] = "user_prefix",
    method: Annotated[str, typer.Option("--method", help="Comma-separated search methods, in order: readout, extract, sweep, symbols, beam, gcg, soft; climb and pieces run last, from a verified trigger.")] = "readout,extract,sweep,symbols,beam,gcg,climb,pieces",
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt source (default builtin:v1): a .txt/.jsonl file, builtin:v1 or zoo:prompts; at least 100 prompts.")] = None,
    probes: Annotated[int, typer.Option(min=1, help="Built-in probes used by amplification and localisation (spread over the categories).")] = 24,
    alphas: Annotated[str, typer.Option(help="Comma-separated amplification factors (include 0 and a negative one).")] = "-1,0,1,2,3,5",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per answer in amplification, localisation and answers.")] = 24,
    words: Annotated[int, typer.Option(min=0, help="Most frequent English words added to the search's vocabulary (see dormant search --help).")] = 3000,
    nulls: Annotated[int, typer.Option(min=1, help="Random candidates in each verification (without a payload at least 99, the fewest whose empirical p-value can reach 0.01).")] = 50,
    extract_samples: Annotated[int, typer.Option(min=0, help="Memory extraction's samples per assistant prefix and setting, as payload evidence (0: none).")] = 16,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", callback=writable_out, help="Folder for the report, plots and the search's candidates (default ./dormant-runs/hunt/).")] = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.llm.hunt import HuntConfig, hunt
    from dormant.llm.search.portfolio import parse_budget
    from dormant.report.console import emit

    try:
        grid = tuple(float(x) for x in alphas.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"--alphas must be comma-separated numbers, got {alphas!r}") from None
    if 0.0 not in grid or not any(a < 0 for a in grid) or not any(a > 1 for a in grid):
        raise typer.BadParameter("--alphas needs 0 (the base), a negative factor (collapse check) and one above 1 (amplification)")
    cfg = HuntConfig(ft=ft, bases=list(base), budget_s=parse_budget(budget), out=out or Path("dormant-runs") / "hunt", ledger=ledger,
                     resume=resume, reuse=not fresh, force_base=force_base,
                     mechanisms=tuple(m.strip() for m in mechanism.split(",") if m.strip()),
                     methods=tuple(m.strip() for m in method.split(",") if m.strip()), prompts=prompts, probes=probes, alphas=grid, max_new_tokens=max_new_tokens, words=words, nulls=nulls,
                     extract_samples=extract_samples,
                     dtype=dtype, device=device)
    result = hunt(cfg)
    emit(result, as_json, lambda: _render(result))


def _render(res: Any) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"stages (budget {res.budget_s:.0f}s, used {res.elapsed_s:.0f}s, prompts {_esc(res.prompts)})")
    for col in ("stage", "status", "planned", "used", "result"):
        t.add_column(col, justify="right" if col in ("planned", "used") else "left")
    for s in res.stages:
        t.add_row(s.name, s.status + (f" ({s.run_id})" if s.run_id else ""), f"{s.planned_s:.0f}s", f"{s.used_s:.0f}s", _esc(s.summary))
    console.print(t)
    if res.candidates and res.verdict != "trigger verified":
        c = Table(title="best candidates and why each failed")
        c.add_column("candidate")
        c.add_column("placement")
        c.add_column("why not verified")
        for x in res.candidates[:8]:
            c.add_row(_esc(repr(x["text"])), x["mechanism"], _esc(x["why"]))
        console.print(c)
    body = _esc(res.statement)
    on = f" ({res.n_detail} prompts)" if res.n_detail else ""
    if res.placements:
        body += f"\nplacements{on}: " + ", ".join(f"{m} {r:.0%}" for m, r in res.placements.items())
    if res.parts:
        body += f"\neach word alone{on}: " + ", ".join(f"{_esc(repr(w))} {r:.0%}" for w, r in res.parts.items())
    if res.verdict == "no evidence of a backdoor":
        body += "\ntried:\n" + "\n".join(f"- {_esc(x)}" for x in res.tried)
    colour = {"trigger verified": "red", "payload found, trigger not verified": "yellow"}.get(res.verdict, "green")
    console.print(Panel(body, title=f"[bold {colour}]{res.verdict}[/]", expand=False))
    console.print(f"report: {res.report_html}")


def register(app: typer.Typer) -> None:
    app.command("hunt", help=_reflow(HUNT_HELP))(hunt_cmd)
