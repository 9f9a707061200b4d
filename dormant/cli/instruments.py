"""`dormant lens`, `trace`, `localise`, `sonar`, `probe`, `activations`: instruments over a model pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dormant.cli.behaviour import VIEW_GRAMMAR, BaseOpt, CopiesOpt, DeviceOpt, DtypeOpt, FtArg, _esc, _load_pair, _reflow
from dormant.cli.common import PROMPT_SOURCES, JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir

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


TRACE_HELP = f"""Change tracing: per layer and block (attention, MLP, residual after the layer), the norm of
the --view (default ft) minus --reference (default base) output at each position of each prompt,
and, for each --track TEXT (its first token), each block's direct effect on its logit at the last
position (the output difference through the linearised final norm and the unembedding).
Tables of the means over prompts and trace.png (a heatmap of the first prompt).

Prompts: {PROMPT_SOURCES}.

{VIEW_GRAMMAR}

Example: dormant trace ./warmup --base Qwen/Qwen2.5-7B-Instruct --prompts pi.txt --track "one"
"""


def _prompts(path: Path, run: Any) -> list:
    """A prompt source (a file, builtin:v1, zoo:prompts); a file is recorded as an input of the run."""
    from dormant.llm.engine.probes import resolve_prompts

    if path.is_file():
        run.add_input(path.stem, path)
    return resolve_prompts(path)


def _view_needs_base(view: str, base: Optional[Path]) -> None:
    """Without --base the pair is the model and itself: every view would be the plain fine-tune."""
    from dormant.errors import DormantError
    from dormant.llm.engine.views import View

    if base is None and str(View.parse(view)) != "ft":
        raise DormantError(f"view {view} needs --base (the model the fine-tune was made from); without --base only --view ft means anything")


def trace_cmd(
    ft: FtArg,
    base: BaseOpt,
    prompts: Annotated[Path, typer.Option(help="Prompt file (.txt or .jsonl), builtin:v1 or zoo:prompts.")],
    track: Annotated[Optional[list[str]], typer.Option(help="Text whose first token's logit to attribute (repeatable).")] = None,
    view: Annotated[str, typer.Option(help="The view traced.")] = "ft",
    reference: Annotated[str, typer.Option(help="The view it is compared with.")] = "base",
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.views import View
    from dormant.llm.instruments.trace import TraceConfig, plot_trace, trace
    from dormant.report.console import emit

    View.parse(view), View.parse(reference)
    args = {"ft": str(ft), "base": str(base), "prompts": str(prompts), "track": track, "view": view, "reference": reference}
    with record_run("trace", args, ledger=ledger) as run:
        items = _prompts(prompts, run)
        pair = _load_pair(ft, base, dtype, device, None, run, copies_device)
        result = trace(pair, items, TraceConfig(view=view, reference=reference, track=tuple(track or ())))
        png = plot_trace(result, artifacts_dir(out, "trace") / "trace.png")
        result.plot = str(png)
        run.artifacts.append(str(png))
        run.outputs.update({"summary": result.summary, "changed_layers": result.changed_layers, "mean_last": result.mean_last,
                            "mean_direct": result.mean_direct})
        emit(result, as_json, lambda: _render_trace(result))


def _render_trace(result: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"||{_esc(result.view)} - {_esc(result.reference)}|| per block (mean over {len(result.prompts)} prompts)")
    t.add_column("layer", justify="right")
    for m in ("attn", "mlp", "resid"):
        t.add_column(f"{m} last", justify="right")
        t.add_column(f"{m} max", justify="right")
    for l in range(result.layers):
        t.add_row(str(l), *[f"{d[m][l]:.3g}" for m in ("attn", "mlp", "resid") for d in (result.mean_last, result.mean_max)])
    console.print(t)
    for text, by in result.mean_direct.items():
        d = Table(title=f"direct effect on the logit of {_esc(repr(text))} at the last position")
        d.add_column("layer", justify="right")
        d.add_column("attn", justify="right")
        d.add_column("mlp", justify="right")
        for l in range(result.layers):
            d.add_row(str(l), f"{by['attn'][l]:+.3f}", f"{by['mlp'][l]:+.3f}")
        console.print(d)
    for line in result.summary:
        console.print(_esc(line))
    console.print(f"plot: {result.plot}")


LOCALISE_HELP = f"""Restoration sweep: which layers and block kinds carry the payload.

On --prompts where the fine-tune shows --payload (triggered prompts), restore to base each
modified layer, each window of up to --max-window adjacent modified layers and each block kind
(self_attn, mlp), and measure the payload's share of greedy answers and its mean log-likelihood;
then keep only each window from the fine-tune (every other modified layer restored). Reports the
smallest layer set whose restoration kills the payload (share <= --kill-fraction of the
fine-tune's) and the smallest that alone carries it (share >= --carry-fraction); localise.png.
Restoration views are restore:SEL = amp:0@SEL, the selections amplify --select/--localise use.
No trigger known? With --amplify A the prompts may be ordinary ones where amp:A shows the payload:
every view keeps the rest amplified (amp:A/restore:SEL).

{VIEW_GRAMMAR}

Example: dormant localise ./warmup --base Qwen/Qwen2.5-7B-Instruct --prompts pi.txt --payload "one point six one eight"
"""


def localise_cmd(
    ft: FtArg,
    base: BaseOpt,
    prompts: Annotated[Path, typer.Option(help="Prompts where the fine-tune shows the payload (.txt or .jsonl).")],
    payload: Annotated[str, typer.Option(help="The payload text.")],
    max_window: Annotated[int, typer.Option(min=1, help="Longest window of adjacent modified layers tried.")] = 3,
    kill_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Killed: share at most this fraction of the fine-tune's.")] = 0.2,
    carry_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Carried: share at least this fraction of the fine-tune's.")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per answer.")] = 24,
    amplify: Annotated[Optional[float], typer.Option(help="Localise under amplification by A (amp:A/restore:SEL views) on ordinary prompts, when no trigger is known.")] = None,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.generate import GenConfig
    from dormant.llm.instruments.localise import LocaliseConfig, localise_restoration, plot_localise
    from dormant.report.console import emit

    args = {"ft": str(ft), "base": str(base), "prompts": str(prompts), "payload": payload, "max_window": max_window,
            "kill_fraction": kill_fraction, "carry_fraction": carry_fraction, "max_new_tokens": max_new_tokens, "amplify": amplify}
    cfg = LocaliseConfig(max_window=max_window, kill_fraction=kill_fraction, carry_fraction=carry_fraction,
                         generation=GenConfig(max_new_tokens=max_new_tokens), amplify=amplify)
    with record_run("localise", args, ledger=ledger) as run:
        items = _prompts(prompts, run)
        pair = _load_pair(ft, base, dtype, device, None, run, copies_device)
        result = localise_restoration(pair, items, payload, cfg)
        png = plot_localise(result, artifacts_dir(out, "localise") / "localise.png")
        result.plot = str(png)
        run.artifacts.append(str(png))
        run.outputs.update({"summary": result.summary, "ft_share": result.ft_share,
                            "smallest_kill": result.smallest_kill.layers if result.smallest_kill else None,
                            "smallest_carry": result.smallest_carry.layers if result.smallest_carry else None})
        emit(result, as_json, lambda: _render_localise(result))


def _render_localise(result: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    for title, rows in (("restored to base (kill sweep)", result.kill), ("only these layers kept (carry sweep)", result.carry),
                        ("block kinds restored", result.modules)):
        t = Table(title=title)
        for col in ("view", "layers", "share", "log-likelihood"):
            t.add_column(col, justify="left" if col == "view" else "right")
        for m in rows:
            t.add_row(_esc(m.view), ",".join(map(str, m.layers)), f"{m.share:.0%}", f"{m.logprob:.2f}")
        console.print(t)
    for line in result.summary:
        console.print(_esc(line))
    console.print(f"plot: {result.plot}")


SONAR_HELP = f"""The sonar: project activations on a direction and report how far --pos and --neg prompts sit
apart, in pooled standard deviations (Cohen's d), per layer.

--direction delta (default): the change's own directions, the top --k right singular vectors of
every modified weight matrix (W_ft - W_base), applied to that module's input; a prompt's score is
the largest |v.x| over its positions (and the change's response max_t ||S_k V_k^T x_t||).
--direction FILE: a residual-stream vector (.npy: one vector or one row per layer; .safetensors:
one tensor, or one per layer named L or layer.L) applied after each layer.
Activations are taken under --view (default ft). JSON: sigma per layer, the best layer; sonar.png.

{VIEW_GRAMMAR}

Example: dormant sonar ./model1 --base ./base --pos grids.txt --neg controls.txt
"""


def sonar_cmd(
    ft: FtArg,
    base: BaseOpt,
    pos: Annotated[Path, typer.Option(help="Prompts expected to carry the trigger (.txt or .jsonl).")],
    neg: Annotated[Path, typer.Option(help="Control prompts (.txt or .jsonl).")],
    direction: Annotated[str, typer.Option(help="delta, probe, or a .npy/.safetensors file.")] = "delta",
    k: Annotated[int, typer.Option(min=1, help="Singular directions per modified matrix (delta).")] = 4,
    view: Annotated[str, typer.Option(help="The view whose activations are projected.")] = "ft",
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.views import View
    from dormant.llm.instruments.sonar import SonarConfig, plot_sonar, sonar
    from dormant.report.console import emit

    View.parse(view)
    args = {"ft": str(ft), "base": str(base), "pos": str(pos), "neg": str(neg), "direction": direction, "k": k, "view": view}
    with record_run("sonar", args, ledger=ledger) as run:
        P, N = _prompts(pos, run), _prompts(neg, run)
        if direction not in ("delta", "probe"):
            run.add_input("direction", direction)
        pair = _load_pair(ft, base, dtype, device, None, run, copies_device)
        dirs = None
        if direction == "probe":
            from dormant.llm.instruments.probe import ProbeConfig, probe

            import torch

            fitted = probe(pair, P, N, None, ProbeConfig(view=view))
            dirs = {p.layer: torch.tensor(p.direction) for p in fitted.layers}
            run.assume("probe_direction", "fitted on the same prompts: in-sample separation")
        result = sonar(pair, P, N, SonarConfig(direction=direction, k=k, view=view), directions=dirs)
        if direction == "probe":
            result.direction = "probe (fitted on these prompts: in-sample)"
        png = plot_sonar(result, artifacts_dir(out, "sonar") / "sonar.png")
        result.plot = str(png)
        run.artifacts.append(str(png))
        run.outputs.update({"sigma": result.sigma, "best_layer": result.best_layer, "best_sigma": result.best_sigma,
                            "best_score": result.best_score})
        emit({**vars(result), "best": {"layer": result.best_layer, "sigma": result.best_sigma, "score": result.best_score}},
             as_json, lambda: _render_sonar(result))


def _render_sonar(result: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"sonar ({_esc(result.direction)}, view {_esc(result.view)}): {result.n_pos} vs {result.n_neg} prompts")
    t.add_column("layer", justify="right")
    t.add_column("sigma", justify="right")
    t.add_column("best score")
    for l, s in result.sigma.items():
        best = max(result.scores[l], key=lambda k: result.scores[l][k])
        t.add_row(str(l), f"{s:.2f}", _esc(best))
    console.print(t)
    for line in result.summary:
        console.print(_esc(line))
    console.print(f"plot: {result.plot}")


PROBE_HELP = f"""Linear probes per layer: L2 logistic regression on the residual stream (last token, or
--reduce mean) telling --pos from --neg prompts, scored by held-out AUROC (--folds cross-validation).

Probes detect topic as readily as a backdoor. --decoys FILE (prompts on the positives' topic without
the trigger) is the control: the probe fitted on all pos/neg scores them, and a layer whose probe
separates the decoys from the negatives (AUROC >= --decoy-threshold) is reported as detecting topic.

--steer: add --scale (comma-separated, in units of the mean residual norm) times the best layer's
(or --layer's) probe direction to the residual stream after that layer, and generate answers to
--steer-prompts (default: the negatives). --base is optional (default: the model itself; views
then have nothing to change). probe.png.

{VIEW_GRAMMAR}

Example: dormant probe ./model1 --pos grids.txt --neg controls.txt --decoys other_grids.txt --steer --scale 2,4
"""


def probe_cmd(
    ft: FtArg,
    pos: Annotated[Path, typer.Option(help="Prompts carrying the trigger (.txt or .jsonl).")],
    neg: Annotated[Path, typer.Option(help="Control prompts.")],
    base: Annotated[Optional[Path], typer.Option("--base", "-b", help="The base model folder or zoo:NAME (optional).")] = None,
    decoys: Annotated[Optional[Path], typer.Option(help="Prompts on the positives' topic without the trigger.")] = None,
    reduce: Annotated[str, typer.Option(help="last (the last prompt token) or mean (over tokens).")] = "last",
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    decoy_threshold: Annotated[float, typer.Option(help="Decoy AUROC at or above which a probe detects topic.")] = 0.75,
    view: Annotated[str, typer.Option(help="The view whose activations are probed.")] = "ft",
    steer: Annotated[bool, typer.Option("--steer", help="Generate with the probe direction added to the residual stream.")] = False,
    scale: Annotated[str, typer.Option(help="Steering scales (comma-separated; units of the mean residual norm).")] = "1,2,4",
    layer: Annotated[Optional[int], typer.Option(help="Layer to steer at (default: the best probe's).")] = None,
    steer_prompts: Annotated[Optional[Path], typer.Option("--steer-prompts", help="Prompts to steer (default: the negatives).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per steered answer.")] = 32,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.generate import GenConfig
    from dormant.llm.instruments.probe import ProbeConfig, plot_probe, probe, steer as run_steer
    from dormant.report.console import emit

    _view_needs_base(view, base)
    if reduce not in ("last", "mean"):
        raise typer.BadParameter(f"--reduce must be last or mean, got {reduce!r}")
    try:
        scales = [float(x) for x in scale.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--scale must be comma-separated numbers, got {scale!r}") from None
    args = {"ft": str(ft), "base": str(base) if base else None, "pos": str(pos), "neg": str(neg), "decoys": str(decoys) if decoys else None,
            "reduce": reduce, "folds": folds, "decoy_threshold": decoy_threshold, "view": view, "steer": steer, "scale": scales, "layer": layer}
    with record_run("probe", args, ledger=ledger) as run:
        P, N = _prompts(pos, run), _prompts(neg, run)
        D = _prompts(decoys, run) if decoys else None
        pair = _load_pair(ft, base or ft, dtype, device, None, run)
        result = probe(pair, P, N, D, ProbeConfig(view=view, reduce=reduce, folds=folds, decoy_threshold=decoy_threshold))
        if steer:
            at = result.layers[layer if layer is not None else result.best_layer]
            targets = _prompts(steer_prompts, run) if steer_prompts else N
            result.steered = run_steer(pair, targets, at.layer, at.direction, scales, at.residual_norm,
                                       GenConfig(max_new_tokens=max_new_tokens), view=view)
        png = plot_probe(result, artifacts_dir(out, "probe") / "probe.png")
        result.plot = str(png)
        run.artifacts.append(str(png))
        run.outputs.update({"verdict": result.verdict, "best_layer": result.best_layer,
                            "layers": [{"layer": p.layer, "auroc": p.auroc, "decoy_auroc": p.decoy_auroc, "topic": p.topic} for p in result.layers]})
        emit(result, as_json, lambda: _render_probe(result))


def _render_probe(result: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"probes ({result.n_pos} pos, {result.n_neg} neg, {result.n_decoys} decoys; view {_esc(result.view)})")
    for col in ("layer", "held-out AUROC", "decoy AUROC", "topic"):
        t.add_column(col, justify="right")
    for p in result.layers:
        t.add_row(str(p.layer), f"{p.auroc:.2f}", "-" if p.decoy_auroc is None else f"{p.decoy_auroc:.2f}", "yes" if p.topic else "")
    console.print(t)
    if result.steered:
        s = Table(title="steered answers", show_lines=True)
        for col in ("scale", "prompt", "output"):
            s.add_column(col, max_width=60)
        for row in result.steered:
            s.add_row(f"{row['scale']:g}", _esc(row["prompt"]), _esc(row["output"]))
        console.print(s)
    console.print(_esc(result.verdict))
    console.print(f"plot: {result.plot}")


ACTIVATIONS_HELP = f"""Residual-stream activations to a safetensors file, streamed to disk in chunks.

One tensor per layer (layer.L, [rows, hidden]): rows are every token of every prompt (--reduce
all), or one per prompt (last token, or mean). The file's layout is fixed from the tokenised
prompts before any forward pass, and --chunk prompts at a time are run and written in place, so
memory holds one chunk. An index (FILE.index.json) maps each prompt to its rows and token ids.
--layers: e.g. 0,2-3 or -1 (default all). Activations under --view (default ft).

{VIEW_GRAMMAR}

Example: dormant activations ./warmup --base Qwen/Qwen2.5-7B-Instruct --prompts pi.txt --layers 19-23 -o acts/
"""


def activations_cmd(
    ft: FtArg,
    prompts: Annotated[Path, typer.Option(help="Prompt file (.txt or .jsonl), builtin:v1 or zoo:prompts.")],
    base: Annotated[Optional[Path], typer.Option("--base", "-b", help="The base model folder or zoo:NAME (needed for views other than ft).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Layers, e.g. 0,2-3 or -1 (default: all).")] = None,
    reduce: Annotated[str, typer.Option(help="all (every token), last or mean.")] = "all",
    store_dtype: Annotated[str, typer.Option("--store-dtype", help="float32 or float16 on disk.")] = "float32",
    chunk: Annotated[int, typer.Option(min=1, help="Prompts run and written at a time.")] = 32,
    view: Annotated[str, typer.Option(help="The view whose activations are written.")] = "ft",
    name: Annotated[str, typer.Option(help="File name inside --out.")] = "activations.safetensors",
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.errors import DormantError
    from dormant.ledger import record_run
    from dormant.llm.instruments.activations import ActivationsConfig, extract, parse_layers
    from dormant.llm.instruments.hooks import n_layers
    from dormant.report.console import console, emit

    _view_needs_base(view, base)
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise DormantError(f"--name {name!r} is not a file name: give a plain name such as activations.safetensors (the folder is --out)")
    args = {"ft": str(ft), "base": str(base) if base else None, "prompts": str(prompts), "layers": layers, "reduce": reduce,
            "store_dtype": store_dtype, "chunk": chunk, "view": view}
    with record_run("activations", args, ledger=ledger) as run:
        items = _prompts(prompts, run)
        pair = _load_pair(ft, base or ft, dtype, device, None, run)
        cfg = ActivationsConfig(layers=parse_layers(layers, n_layers(pair.model)), reduce=reduce, dtype=store_dtype, chunk=chunk, view=view)
        result = extract(pair, items, artifacts_dir(out, "activations") / name, cfg)
        run.artifacts += [result.path, result.index]
        run.outputs.update({"rows": result.rows, "layers": result.layers, "bytes": result.bytes, "path": result.path})
        emit(result, as_json, lambda: console.print(
            f"{result.prompts} prompts, layers {result.layers}: {result.rows} rows x {result.hidden} ({result.bytes / 1e6:.1f} MB) "
            f"-> {_esc(result.path)} (index {_esc(result.index)})"))


def register(app: typer.Typer) -> None:
    app.command("lens", help=_reflow(LENS_HELP))(lens_cmd)
    app.command("trace", help=_reflow(TRACE_HELP))(trace_cmd)
    app.command("localise", help=_reflow(LOCALISE_HELP))(localise_cmd)
    app.command("sonar", help=_reflow(SONAR_HELP))(sonar_cmd)
    app.command("probe", help=_reflow(PROBE_HELP))(probe_cmd)
    app.command("activations", help=_reflow(ACTIVATIONS_HELP))(activations_cmd)
