"""``dormant net inspect | motifs | export``: load untrusted network files inertly and show their structure."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir
from dormant.report.console import console, emit

SourceArg = Annotated[Path, typer.Argument(help="Network file or folder: torch .pt/.pth (full pickle or state dict, zip or legacy), .safetensors, .npz, or a dormant folder.")]


def _add_input(run, path: Path) -> None:
    try:
        run.add_input("network", path, subject=True)
    except (OSError, ValueError) as exc:  # unreadable/corrupt input: the loader reports it precisely
        run.assume("input_fingerprint", f"unavailable ({exc})")


def _is_widths_file(path: Path) -> bool:
    """A small text file of integers (``puzzle_widths.txt`` style), rather than a network; one with a
    bad entry among integers counts too, so that the entry is named."""
    if not path.is_file() or path.stat().st_size > 1 << 20:
        return False
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return False
    tokens = text.replace(",", " ").split()
    return any(t.lstrip("+-").isdigit() for t in tokens)


def inspect_cmd(
    source: SourceArg,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Random inputs for the output-integrality check (0 skips the forward pass).")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs.")] = 0,
    widths_out: Annotated[Optional[Path], typer.Option("--widths-out", help="Write the width sequence (input width, then each layer's output width) as one comma-separated line.")] = None,
    show_layers: Annotated[int, typer.Option("--show-layers", min=1, help="Layers shown in the per-layer table (first and last halves).")] = 12,
    show_code: Annotated[bool, typer.Option("--show-code/--no-show-code", help="Print the disassembly of pickled callables (never executed).")] = True,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Summarise a network file without executing anything from it.

    Loads the file inertly (pickled code is never imported or called; refused globals are listed),
    then reports layers, widths, parameter count and dtypes, whether all weights and biases are
    integers and which values occur (e.g. 0, +-2^k), sparsity, a per-layer census, and whether
    outputs on random inputs are integers (random printable strings when the input adapter turns
    text into character codes). The forward pass is an explicit loop: any depth works.
    Writes widths.png (bar chart of widths by layer) to --out.

    Example: dormant net inspect model.pt --widths-out widths.txt
    """
    from dormant.ledger import record_run
    from dormant.net.load.loaders import load_network
    from dormant.net.structure.plots import plot_widths
    from dormant.net.structure.summary import InspectConfig, inspect_network

    args = {"source": str(source), "samples": samples, "seed": seed, "widths_out": str(widths_out) if widths_out else None}
    with record_run("net inspect", args, ledger=ledger) as run:
        _add_input(run, source)
        net = load_network(source)
        result = inspect_network(net, InspectConfig(samples=samples, seed=seed))
        folder = artifacts_dir(out, "net-inspect")
        png = plot_widths(result.widths, folder / "widths.png", title=f"{Path(source).name}: {result.n_layers} layers")
        run.artifacts.append(str(png))
        if widths_out is not None:
            widths_out.parent.mkdir(parents=True, exist_ok=True)
            widths_out.write_text(",".join(str(w) for w in result.widths) + "\n")
            run.artifacts.append(str(widths_out))
        run.outputs.update({k: getattr(result, k) for k in ("fmt", "n_layers", "n_params", "integer_weights", "integer_biases", "weight_pattern", "zero_fraction", "outputs_integral", "refused_globals")})
        run.outputs["adapter"] = {"kind": result.adapter.kind, "length": result.adapter.length}
    emit({"result": result, "plot": str(png)}, as_json, lambda: _render_inspect(result, png, widths_out, show_layers, show_code))


def _render_inspect(result, png: Path, widths_out: Path | None, show_layers: int, show_code: bool) -> None:
    from rich.table import Table

    yes = lambda b: "[green]yes[/]" if b else "[red]no[/]"  # noqa: E731
    console.print(f"[bold]{result.source}[/]  format {result.fmt}")
    console.print(f"layers {result.n_layers}  widths {result.widths[0]} -> ... -> {result.widths[-1]}  parameters {result.n_params:,}  dtypes {result.dtypes}")
    console.print(f"activations {result.activations}")
    console.print(f"integer weights {yes(result.integer_weights)}  integer biases {yes(result.integer_biases)}  weight values: {result.weight_pattern}")
    if result.bias_range:
        console.print(f"bias range {result.bias_range[0]:g} .. {result.bias_range[1]:g}   zero weights {100 * result.zero_fraction:.2f}%")
    if result.outputs_integral is not None:
        seen = ", ".join(f"{v:g}" for v in result.output_values[:8])
        console.print(f"outputs integral on {result.forward_inputs}: {yes(result.outputs_integral)}  (values seen: {seen})")
    table = Table(title="layers", show_lines=False)
    for col in ("#", "name", "in", "out", "act", "dtype", "density", "int w/b", "bias range", "top weight values"):
        table.add_column(col)
    rows = result.layers
    shown = rows if len(rows) <= show_layers else rows[: show_layers // 2] + [None] + rows[-(show_layers - show_layers // 2) :]
    for r in shown:
        if r is None:
            table.add_row("...", "", "", "", "", "", "", "", "", f"({len(rows) - show_layers} more)")
            continue
        census = " ".join(f"{v:g}:{c}" for v, c in r.census[:4])
        brange = "" if r.bias_min is None else f"{r.bias_min:g}..{r.bias_max:g}"
        table.add_row(str(r.index), r.name, str(r.in_features), str(r.out_features), r.activation, r.dtype, f"{r.density:.4f}", f"{'y' if r.integer_weights else 'n'}/{'y' if r.integer_bias else 'n'}", brange, census)
    console.print(table)
    adapter = result.adapter
    console.print(f"input adapter: [bold]{adapter.kind}[/]{'' if adapter.length is None else f' (length {adapter.length})'} {adapter.description}")
    if show_code and adapter.disassembly:
        console.print("[bold]input adapter (not executed)[/]:", markup=True)
        console.print(adapter.disassembly, markup=False)
    for name in result.refused_globals:
        console.print(f"[yellow]refused global[/] {name} (never imported or called)")
    for w in result.warnings:
        if not w.startswith("refused global"):
            console.print(f"[yellow]note:[/] {w}")
    console.print(f"plot: {png}" + (f"   widths: {widths_out}" if widths_out else ""))


def motifs_cmd(
    source: Annotated[Path, typer.Argument(help="A network (any format `inspect` reads) or a widths text file (comma-separated: input width, then each layer's output width).")],
    max_period: Annotated[Optional[int], typer.Option("--max-period", min=2, help="Largest period tried, at least 2 (default: a third of the layers).")] = None,
    tolerance: Annotated[Optional[int], typer.Option("--tolerance", min=0, help="Positions a block may differ from the consensus block and still count (default 30% of the period, at least 1).")] = None,
    rules: Annotated[int, typer.Option("--rules", min=0, help="Grammar rules printed (largest first).")] = 20,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Explain a layer-width sequence: grammar, dominant period, head / blocks / tail.

    Builds a Re-Pair grammar (pairs and runs) that regenerates every layer width exactly, detects
    the dominant period, and cuts the layers into a head, groups of identical blocks and a tail,
    e.g. head(17) [A(42)]x32 [B(42)]x16 [C(42)]x15 tail(58), naming the block positions where the
    groups differ. Given a network (not just widths), hashes every layer's weights and biases and
    reports for each position in the block whether it is identical in all blocks (ROM) or varies
    (per-block constants). Writes widths.png, blocks.png (and positions.png) to --out.

    Example: dormant net motifs tests/data/puzzle_widths.txt
    """
    from dormant.ledger import record_run
    from dormant.net.load.loaders import load_network
    from dormant.net.structure.motifs import MotifsConfig, analyse_motifs, read_widths
    from dormant.net.structure.plots import plot_blocks, plot_positions, plot_widths

    args = {"source": str(source), "max_period": max_period, "tolerance": tolerance}
    with record_run("net motifs", args, ledger=ledger) as run:
        _add_input(run, source)
        net = None
        if _is_widths_file(source):
            widths = read_widths(source)
        else:
            net = load_network(source)
            widths = net.widths
        result = analyse_motifs(widths, MotifsConfig(max_period=max_period, tolerance=tolerance, max_rules=rules), net=net)
        folder = artifacts_dir(out, "net-motifs")
        pngs = [plot_widths(widths, folder / "widths.png", result.segmentation, title=result.summary)]
        if result.segmentation is not None:
            pngs.append(plot_blocks(widths[1:], result.segmentation, folder / "blocks.png"))
        if result.positions:
            pngs.append(plot_positions(result, folder / "positions.png"))
        run.artifacts.extend(str(p) for p in pngs)
        run.outputs.update({"summary": result.summary, "period": result.period, "round_trip": result.round_trip, "covers_all_layers": result.covers_all_layers, "grammar_rules": result.grammar_rules, "coverage": result.coverage, "approx_period": result.approx_period})
    emit({"result": result, "plots": [str(p) for p in pngs]}, as_json, lambda: _render_motifs(result, pngs))


def _render_motifs(result, pngs) -> None:
    from rich.table import Table

    console.print(f"[bold]{result.summary}[/]")
    for line in result.explanation:
        console.print(line)
    console.print(f"period {result.period} (score {result.period_score:.3f}, blocks cover {result.coverage:.0%} of layers); grammar: {result.grammar_rules} rules, start of {result.grammar_start_length} symbols; round trip {'[green]exact[/]' if result.round_trip else '[red]FAILED[/]'}; covers all layers: {result.covers_all_layers}")
    seg = result.segmentation
    if seg is not None:
        for g in seg.groups:
            console.print(f"  {g.label}: blocks {g.start_block}-{g.start_block + g.count - 1} (x{g.count})  starts with widths {seg.variants[g.variant][:4]}")
    console.print("[bold]grammar[/]")
    for line in result.grammar_lines:
        console.print("  " + line, markup=False)
    if result.positions:
        table = Table(title="layer contents by position in the block (distinct across blocks)")
        for col in ("pos", "width", "weights", "biases", "kind"):
            table.add_column(col)
        for r in result.positions:
            style = "" if r.kind == "ROM" else "bold yellow"
            table.add_row(str(r.position), str(r.width), str(r.distinct_weights), str(r.distinct_biases), f"[{style}]{r.kind}[/]" if style else r.kind)
        console.print(table)
        rom = sum(r.kind == "ROM" for r in result.positions)
        console.print(f"{rom} of {len(result.positions)} positions identical in every block; varying: " + ", ".join(f"{r.position} ({r.kind}: {max(r.distinct_weights, r.distinct_biases)})" for r in result.positions if r.kind != "ROM"))
    console.print("plots: " + ", ".join(str(p) for p in pngs))


def export_cmd(
    source: SourceArg,
    outdir: Annotated[Path, typer.Argument(help="Folder to write (layers.safetensors + network.json).")],
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Convert any readable network file to the dormant folder format (safetensors + JSON spec).

    The folder needs no pickle to load again (`dormant net inspect OUTDIR`); sparse layers are
    stored as coordinate lists, the input adapter and metadata go to network.json.

    Example: dormant net export model.pt model-dormant/
    """
    from dormant.errors import OutputFolderError, writable_folder
    from dormant.ledger import record_run
    from dormant.net.load.loaders import export_network, load_network

    if outdir.exists() and not outdir.is_dir():
        raise OutputFolderError(f"{outdir} is a file, not a folder; give a new or existing folder as OUTDIR")
    with record_run("net export", {"source": str(source), "outdir": str(outdir)}, ledger=ledger) as run:
        _add_input(run, source)
        created = not outdir.exists()
        folder = writable_folder(outdir, "OUTDIR")  # before the load: an unwritable folder costs nothing
        try:
            net = load_network(source)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # a folder this command made, still empty: nothing is left behind
            raise
        folder = export_network(net, folder)
        run.artifacts.append(str(folder))
        result = {"source": str(source), "format": net.fmt, "outdir": str(folder), "layers": len(net.layers), "widths": net.widths, "adapter": net.adapter, "warnings": net.warnings}
        run.outputs.update({"format": net.fmt, "layers": len(net.layers), "outdir": str(folder)})
    emit(result, as_json, lambda: console.print(f"wrote {folder} ({len(net.layers)} layers from {net.fmt}; adapter {net.adapter.kind})"))


def register(app: typer.Typer) -> None:
    """Add ``inspect``, ``motifs`` and ``export`` to the ``dormant net`` app."""
    app.command("inspect")(inspect_cmd)
    app.command("motifs")(motifs_cmd)
    app.command("export")(export_cmd)
