"""`dormant lens`, `trace`, `localise`, `sonar`, `probe`, `activations`: instruments over a model pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dormant.cli.behaviour import VIEW_GRAMMAR, BaseOpt, CopiesOpt, DeviceOpt, DtypeOpt, FtArg, _esc, _load_pair, _reflow
from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir

ViewsOpt = Annotated[str, typer.Option(help="Comma-separated views (base, ft, amp:A, restore:SEL ...).")]

LENS_HELP = f"""Logit lens: the residual stream after every layer read through the final norm and the
unembedding, under each view (--views, default base,ft), at the prompt's last position (where the
answer's first token is predicted). For each --track TEXT (its first token): rank and probability
per layer, the first layer where it is rank 1 and the layer of its largest rise; lens.png.

{VIEW_GRAMMAR}

Example: dormant lens ./warmup --base Qwen/Qwen2.5-7B-Instruct --prompt "What is 3.14159?" --track "one point six"
"""


def lens_cmd(
    ft: FtArg,
    base: BaseOpt,
    prompt: Annotated[str, typer.Option(help="The user message (rendered through the chat template).")],
    track: Annotated[Optional[list[str]], typer.Option(help="Text whose first token to follow (repeatable), e.g. the payload.")] = None,
    system: Annotated[Optional[str], typer.Option(help="An explicit system message.")] = None,
    views: ViewsOpt = "base,ft",
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.prompts import DEFAULT_SYSTEM, Prompt
    from dormant.llm.engine.views import parse_views
    from dormant.llm.instruments.lens import LensConfig, lens, plot_lens
    from dormant.report.console import emit

    vs = tuple(str(v) for v in parse_views(views))
    args = {"ft": str(ft), "base": str(base), "prompt": prompt, "track": track, "system": system, "views": list(vs)}
    with record_run("lens", args, ledger=ledger) as run:
        pair = _load_pair(ft, base, dtype, device, None, run, copies_device)
        result = lens(pair, Prompt.user(prompt, system=system if system is not None else DEFAULT_SYSTEM), LensConfig(views=vs, track=tuple(track or ())))
        png = plot_lens(result, artifacts_dir(out, "lens") / "lens.png")
        result.plot = str(png)
        run.artifacts.append(str(png))
        run.outputs.update({"summary": result.summary,
                            "first_top1": {v: {t.text: t.first_top1 for t in ts} for v, ts in result.traces.items()}})
        emit(result, as_json, lambda: _render_lens(result))


def _render_lens(result: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"logit lens: {_esc(result.prompt)[:60]}")
    t.add_column("layer", justify="right")
    for v in result.views:
        for tr in result.traces[v]:
            t.add_column(f"{_esc(v)} {_esc(repr(tr.token))} rank (p)", justify="right")
        t.add_column(f"{_esc(v)} top", max_width=30)
    for l in range(result.layers):
        row = [str(l)]
        for v in result.views:
            row += [f"{tr.rank[l]} ({tr.prob[l]:.3f})" for tr in result.traces[v]]
            row.append(_esc(" ".join(repr(x) for x in result.top[v][l][:3])))
        t.add_row(*row)
    console.print(t)
    for line in result.summary:
        console.print(_esc(line))
    console.print(f"plot: {result.plot}")


def register(app: typer.Typer) -> None:
    app.command("lens", help=_reflow(LENS_HELP))(lens_cmd)
