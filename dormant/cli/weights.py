"""`dormant diff` (which base, what changed) and `dormant delta` (the change's shape and meaning)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir

DIFF_HELP = """Compare a fine-tune with one or more candidate bases, tensor by tensor, and name the most likely base.

Models are local Hugging Face folders (single or sharded safetensors), Hub ids already in the
local cache, or zoo:NAME (the built-in micro zoo: zoo:base, zoo:mlp-phrase ...). Tensors are streamed through memory maps (byte-identical tensors are detected by a raw
byte comparison before any float maths), so memory stays bounded whatever the model size. BF16,
FP16, FP32 and FP8 with 128x128 block scales (DeepSeek-V3) are read.

Per base: identical / modified / missing / extra / shape-mismatched tensors; per tensor the delta's
Frobenius norm, relative norm and max |change|, grouped by layer and module (attention q/k/v/o,
MLA q_a/q_b/kv_a/kv_b, MLP gate/up/down, MoE experts/router, norms, embedding, lm_head).
The verdict ranks bases by the median relative change; a warning says when none is close.

Writes a heatmap PNG per base (relative change, layer x module) and records the run in the ledger.

Example: dormant diff ./warmup --base Qwen/Qwen2.5-7B-Instruct --base Qwen/Qwen2-7B-Instruct
"""

DELTA_HELP = """Decompose the change of a fine-tune against its base and read it through the vocabulary.

For every modified matrix: singular value spectrum (exact up to --exact-max-dim, else the top
--top-k by randomized SVD), effective rank at 90/95/99% energy, a LoRA rank estimate (singular
values above the noise: the Gavish-Donoho threshold, or --floor-ratio x the noise edge for a
top-k spectrum), the layer ranking by change norm, and how aligned sibling modules' changes are
(gate vs up inputs, up outputs vs down inputs, q/k/v ...).

Read-outs: the payload side maps the left singular vectors of down_proj/o_proj changes through the
final norm and the unembedding (which tokens the change pushes); the trigger side maps the right
singular vectors of gate/up/q/k/v/q_a changes onto the normed token embeddings (which tokens the
change listens to). Both ends of every direction are listed (a singular vector's sign is
arbitrary); padding rows beyond the tokenizer and special tokens are excluded.

--export-lora DIR writes the change as a PEFT LoRA adapter (rank per module from the estimate, or
--rank) and, with --verify (default), compares base + adapter with the fine-tune's logits.

Plots: spectra.png, rank_per_layer.png; tables: readout.tsv. Recorded in the ledger.

Example: dormant delta ./warmup --base Qwen/Qwen2.5-7B-Instruct --export-lora ./warmup-lora
"""


def _fmt(x: float, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.{digits}g}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip("/").split("/")[-1] or "base")


def _render_diff(result, max_layers: int) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from dormant.llm.weights.names import component_sort_key
    from dormant.report.console import console

    best = result.comparison(result.best)
    names = [Path(c.base).name or c.base for c in result.comparisons]
    short = dict(zip((c.base for c in result.comparisons), names if len(set(names)) == len(names) else [c.base for c in result.comparisons]))
    console.print(Panel(f"[bold]most likely base:[/] {result.best}\n{result.evidence}", title="dormant diff", expand=False))
    t = Table(title="candidates", show_lines=False)
    for col in ("base", "identical", "modified", "missing", "extra", "shape≠", "median rel", "‖Δ‖ total", "modified groups"):
        t.add_column(col, justify="right" if col not in ("base", "modified groups") else "left")
    for c in sorted(result.comparisons, key=lambda c: c.rank_key()):
        k = c.counts
        t.add_row(short[c.base], str(k["identical"]), str(k["modified"]), str(k["missing"]), str(k["extra"]), str(k["shape_mismatch"]),
                  _fmt(c.median_rel), _fmt(c.total_delta_norm), ", ".join(f"{g} {n}" for g, n in c.modified_by_group.items()) or "-")
    console.print(t)
    cols = sorted({col for row in best.grid.values() for col in row}, key=component_sort_key)
    grid = Table(title=f"relative change per layer x module vs {short[result.best]} (· identical)", show_lines=False)
    grid.add_column("layer")
    for col in cols:
        grid.add_column(col, justify="right")
    rows = list(best.grid.items())
    shown = rows if len(rows) <= max_layers else rows[: max_layers // 2] + [("…", {})] + rows[-max_layers // 2 :]
    for layer, cells in shown:
        vals = []
        for col in cols:
            cell = cells.get(col)
            vals.append("" if cell is None else ("·" if not cell.modified else (f"{cell.rel_norm:.2g}" + (f" ({cell.modified}/{cell.total})" if cell.total > 1 else ""))))
        grid.add_row("global" if layer == "-" else layer, *vals)
    console.print(grid)
    top = sorted(best.modified, key=lambda t: -t.rel_norm)[:10]
    if top:
        tt = Table(title=f"largest relative changes vs {short[result.best]}")
        for col in ("tensor", "shape", "‖Δ‖", "rel", "max |Δ|"):
            tt.add_column(col, justify="left" if col == "tensor" else "right")
        for x in top:
            tt.add_row(x.name, "x".join(map(str, x.shape or [])), _fmt(x.delta_norm), _fmt(x.rel_norm), _fmt(x.max_abs))
        console.print(tt)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def diff_cmd(
    ft: Annotated[str, typer.Argument(help="The fine-tuned model: folder, .safetensors file, locally cached Hub id or zoo:NAME.")],
    base: Annotated[list[str], typer.Option("--base", "-b", help="A candidate base (repeat for several).")],
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads comparing tensors in parallel (default: one per core, at most 8).")] = None,
    atol: Annotated[float, typer.Option(min=0.0, help="Largest |change| still counted as identical (default 0: any change counts).")] = 0.0,
    close_rel: Annotated[float, typer.Option(min=0.0, help="Median relative change above which no base counts as close.")] = 0.1,
    max_layers: Annotated[int, typer.Option(min=1, help="Layers shown in the per-layer table (middle elided).")] = 40,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.checkpoint import open_checkpoint
    from dormant.llm.weights.diff import DEFAULT_WORKERS, DiffConfig, diff_models
    from dormant.llm.weights.plots import plot_diff_heatmap
    from dormant.report.console import emit, progress

    workers = workers or DEFAULT_WORKERS
    config = DiffConfig(workers=workers, atol=atol, close_rel=close_rel)
    with record_run("diff", {"ft": ft, "base": base, "workers": workers, "atol": atol, "close_rel": close_rel}, ledger=ledger) as run:
        ft_ck = open_checkpoint(ft)
        bases = [open_checkpoint(b) for b in base]
        run.add_input("ft", ft_ck.path, subject=True)
        roles = [f"base{i + 1}" if len(bases) > 1 else "base" for i in range(len(bases))]
        for role, b in zip(roles, bases):
            run.add_input(role, b.path)
        total = sum(sum(1 for n in ft_ck.names if n in b) for b in bases)
        with progress() as bar:
            task = bar.add_task("comparing tensors", total=total)
            result = diff_models(ft_ck, bases, config, on_tensor=lambda: bar.advance(task))
        folder = artifacts_dir(out, "diff")
        for c in result.comparisons:
            png = plot_diff_heatmap(c.grid, f"{Path(ft).name} vs {c.base}: {c.summary}", folder / f"heatmap_{_slug(c.base)}.png")
            run.artifacts.append(str(png))
        run.decide("base", run.inputs[roles[base.index(result.best)]])  # "<fingerprint> <path>" of the chosen base
        run.outputs.update({"best": result.best, "evidence": result.evidence, "warnings": result.warnings,
                            "bases": {c.base: {"counts": c.counts, "median_rel": c.median_rel, "modified_by_group": c.modified_by_group,
                                               "total_delta_norm": c.total_delta_norm} for c in result.comparisons}})
        emit(result, as_json, lambda: _render_diff(result, max_layers))
        if not as_json:
            from dormant.report.console import console

            console.print(f"heatmaps: {', '.join(run.artifacts)}")


def _render_delta(result, readout, export) -> None:
    from rich.table import Table

    from dormant.report.console import console

    console.print(f"[bold]{result.rank_summary}[/]")
    for finding in result.comparison.findings:
        console.print(f"[yellow]warning:[/] {finding}")
    t = Table(title=f"modified matrices ({len(result.spectra)})")
    for col in ("tensor", "shape", "‖Δ‖", "rel", "s1..s4", "s1² share", "rank 90/95/99%", "LoRA r", "knee", "svd"):
        t.add_column(col, justify="left" if col in ("tensor", "s1..s4") else "right")
    for s in sorted(result.spectra, key=lambda s: (s.layer if s.layer is not None else -1, s.component)):
        er = "/".join(str(v) if v is not None else f">{len(s.singular_values)}" for v in s.energy_rank.values())
        t.add_row(s.name, "x".join(map(str, s.shape)), _fmt(s.delta_norm), _fmt(s.rel_norm), " ".join(_fmt(x, 2) for x in s.singular_values[:4]),
                  f"{s.top1_share:.2f}", er, str(s.lora_rank) if s.lora_rank else "-", _fmt(s.knee, 2) if s.knee else "-", "exact" if s.exact else "top-k")
    console.print(t)
    if result.other_changes:
        console.print(f"non-matrix changes: {', '.join(result.other_changes[:10])}" + (" …" if len(result.other_changes) > 10 else ""))
    console.print("layers by change norm: " + ", ".join(f"{'global' if k == '-' else k}: {v:.3g}" for k, v in result.layer_ranking[:12]))
    if result.siblings:
        st = Table(title="sibling alignment (mean cos² of principal angles; chance = random subspaces)")
        for col in ("layer", "pair", "sides", "ranks", "overlap", "max cos", "chance"):
            st.add_column(col, justify="right")
        for a in result.siblings[:40]:
            st.add_row(str(a.layer), f"{a.a} ~ {a.b}", a.side, f"{a.rank_a}/{a.rank_b}", f"{a.overlap:.3f}", f"{a.max_cos:.3f}", f"{a.chance:.3f}")
        console.print(st)
    if readout is not None:
        for note in readout.notes:
            console.print(f"[dim]{note}[/]")
        for title, tables, limit in (("payload side: tokens the change writes (aggregate over layers)", readout.payload_aggregate, 3),
                                     ("trigger side: tokens the change listens to (aggregate over layers)", readout.trigger_aggregate, 3),
                                     ("payload side, per module", readout.payload, 8), ("trigger side, per module", readout.trigger, 8)):
            if not tables:
                continue
            rt = Table(title=title)
            rt.add_column("direction")
            rt.add_column("σ", justify="right")
            rt.add_column("+ end")
            rt.add_column("- end")
            for tab in tables[:limit]:
                src = "aggregate" if tab.source == "aggregate" else tab.source.removeprefix("model.").removesuffix(".weight")
                rt.add_row(f"{src} #{tab.index}", _fmt(tab.sigma), " ".join(x.token for x in tab.top[:10]), " ".join(x.token for x in tab.bottom[:10]))
            console.print(rt)
        for name, items in readout.row_changes.items():
            console.print(f"[bold]most changed rows of {name}[/] (ranked by absolute change; shown: relative change): "
                          + ", ".join(f"{x.token} {x.score:.2g}" for x in items[:15]))
    if export is not None:
        console.print(f"[bold]LoRA adapter[/] {export.out_dir}: r={export.r}, {len(export.target_modules)} modules"
                      + (f", rank_pattern for {len(export.rank_pattern)}" if export.rank_pattern else "")
                      + f"; relative weight error {export.weight_rel_error:.3g} of the change ({export.ft_rel_error:.2g} of the weights)")
        if export.skipped:
            console.print(f"[yellow]not expressible as LoRA:[/] {', '.join(export.skipped[:8])}")
        if export.check is not None:
            c = export.check
            console.print(f"logits, base+adapter vs fine-tune: max |diff| {c.max_abs_diff:.3g} (base vs fine-tune {c.max_abs_diff_base:.3g}, "
                          f"max |logit| {c.max_abs_logit:.3g}); top-1 agreement {c.top1_agreement:.1%} over {c.tokens} positions")


def delta_cmd(
    ft: Annotated[str, typer.Argument(help="The fine-tuned model: folder, .safetensors file, locally cached Hub id or zoo:NAME.")],
    base: Annotated[str, typer.Option("--base", "-b", help="Its base (find it with `dormant diff`).")],
    top_k: Annotated[int, typer.Option(min=1, help="Singular values computed for matrices larger than --exact-max-dim.")] = 64,
    exact_max_dim: Annotated[int, typer.Option(min=0, help="Every singular value (from the Gram matrix of the smaller side) when the smaller dimension is at most this.")] = 1024,
    floor_ratio: Annotated[float, typer.Option(min=0.0, help="Top-k spectra: LoRA rank = singular values above this multiple of the noise edge.")] = 2.0,
    vectors: Annotated[int, typer.Option(min=0, help="Singular vectors read through the vocabulary per module.")] = 2,
    top_tokens: Annotated[int, typer.Option(min=1, help="Tokens listed at each end of each read-out.")] = 20,
    payload_layers: Annotated[Optional[int], typer.Option(min=1, help="Payload read-out over the last N modified layers only (default all).")] = None,
    trigger_layers: Annotated[Optional[int], typer.Option(min=1, help="Trigger read-out over the first N modified layers only (default all).")] = None,
    include_special: Annotated[bool, typer.Option(help="Keep special tokens in the read-outs.")] = False,
    readout: Annotated[bool, typer.Option(help="Read the change through the vocabulary.")] = True,
    export_lora: Annotated[Optional[Path], typer.Option("--export-lora", help="Write the change as a PEFT LoRA adapter to this folder.")] = None,
    rank: Annotated[Optional[int], typer.Option(min=1, help="LoRA rank for every module (default: each module's estimate).")] = None,
    verify: Annotated[bool, typer.Option(help="After --export-lora, compare base+adapter logits with the fine-tune (one model in the checkpoint dtype, base and fine-tune as views).")] = True,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads for the diff and the decompositions (default: one per core, at most 8).")] = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    args = {k: v for k, v in locals().items() if k != "ledger"}
    from dormant.ledger import record_run
    from dormant.llm.checkpoint import open_checkpoint
    from dormant.llm.weights.delta import DeltaConfig, analyse_delta
    from dormant.llm.weights.diff import DEFAULT_WORKERS, DiffConfig, compare_base
    from dormant.llm.weights.plots import plot_rank_per_layer, plot_spectra
    from dormant.report.console import emit, progress

    workers = args["workers"] = workers or DEFAULT_WORKERS
    config = DeltaConfig(top_k=top_k, exact_max_dim=exact_max_dim, floor_ratio=floor_ratio, workers=workers)
    with record_run("delta", args, ledger=ledger) as run:
        ft_ck, base_ck = open_checkpoint(ft), open_checkpoint(base)
        run.add_input("ft", ft_ck.path, subject=True)
        run.add_input("base", base_ck.path)
        run.assume("base", run.inputs["base"])
        with progress() as bar:
            task = bar.add_task("diffing tensors", total=sum(1 for n in ft_ck.names if n in base_ck))
            comparison = compare_base(ft_ck, base_ck, base, DiffConfig(workers=workers), on_tensor=lambda: bar.advance(task))
            if comparison.comparable == 0:
                from dormant.errors import ArchitectureMismatch

                raise ArchitectureMismatch(f"{ft} and {base} share no tensor of the same name and shape: {'; '.join(comparison.findings)}")
            from dormant.llm.engine.pair import check_same_tensors

            check_same_tensors(comparison, ft_ck, base_ck)  # a tensor of another shape: not a fine-tune of this base (as amplify refuses it)
            n_mat = sum(1 for t in comparison.modified if t.shape and len(t.shape) == 2)
            task2 = bar.add_task("decomposing changes", total=n_mat)
            result = analyse_delta(ft_ck, base_ck, config, comparison=comparison, on_tensor=lambda: bar.advance(task2))
        folder = artifacts_dir(out, "delta")
        if result.spectra:
            run.artifacts.append(str(plot_spectra({s.name: s.singular_values for s in result.spectra}, folder / "spectra.png")))
            per: dict[str, dict[int, float | None]] = {}
            for s in result.spectra:
                if s.layer is not None:
                    per.setdefault(f"{s.component} LoRA r", {})[s.layer] = s.lora_rank
                    per.setdefault(f"{s.component} 90%", {})[s.layer] = s.energy_rank["90%"]
            if per:
                run.artifacts.append(str(plot_rank_per_layer(per, folder / "rank_per_layer.png", "rank (LoRA estimate / 90% energy)")))
        read = None
        if readout and result.spectra:
            from dormant.llm.weights.readout import ReadoutConfig, save_tables_tsv, vocabulary_readout

            read = vocabulary_readout(ft_ck, result, ReadoutConfig(top_tokens=top_tokens, vectors=vectors, payload_layers=payload_layers,
                                                                  trigger_layers=trigger_layers, include_special=include_special), base=base_ck)
            run.artifacts.append(str(save_tables_tsv(read, folder / "readout.tsv")))
        export = None
        if export_lora is not None:
            from dormant.llm.weights.lora_export import LoraExportConfig, export_lora as do_export, verify_adapter

            export = do_export(ft_ck, base_ck, result, export_lora, LoraExportConfig(rank=rank))
            if verify:  # loads one model: first unmap what the analysis read and return the freed heap
                from dormant.memory import trim_heap

                ft_ck.close()
                base_ck.close()
                trim_heap()
                export.check = verify_adapter(ft_ck.path, base_ck.path, export_lora)
            run.artifacts.append(str(export_lora))
        payload = {"delta": result, "readout": read, "lora": export}
        run.outputs.update({"lora_rank": result.lora_rank, "rank_summary": result.rank_summary, "layer_ranking": result.layer_ranking[:10],
                            "payload_top": [[x.token for x in t.top[:10]] + ["|"] + [x.token for x in t.bottom[:10]] for t in (read.payload_aggregate if read else [])][:2],
                            "trigger_top": [[x.token for x in t.top[:10]] + ["|"] + [x.token for x in t.bottom[:10]] for t in (read.trigger_aggregate if read else [])][:2],
                            "lora_export": None if export is None else {"dir": export.out_dir, "r": export.r, "weight_rel_error": export.weight_rel_error,
                                                                        "max_logit_diff": export.check.max_abs_diff if export.check else None}})
        emit(payload, as_json, lambda: _render_delta(result, read, export))
        if not as_json:
            from dormant.report.console import console

            console.print(f"artifacts: {', '.join(run.artifacts)}")


def register(app: typer.Typer) -> None:
    """Add ``diff`` and ``delta`` to the root app."""
    app.command("diff", help=DIFF_HELP)(diff_cmd)
    app.command("delta", help=DELTA_HELP)(delta_cmd)
