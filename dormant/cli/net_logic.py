"""``dormant net decompile | identify | constants``: logic, function name, constant tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir
from dormant.report.console import console, emit

SourceArg = Annotated[Path, typer.Argument(help="Network file or folder: torch .pt/.pth, .safetensors, .npz, or a dormant folder.")]


def _add_input(run, path: Path) -> None:
    try:
        run.add_input("network", path, subject=True)
    except (OSError, ValueError) as exc:
        run.assume("input_fingerprint", f"unavailable ({exc})")


def _load(path: Path):
    from dormant.errors import NetworkFileError
    from dormant.net.load.loaders import load_network

    if not path.exists():
        raise NetworkFileError(f"{path}: no such file or folder")
    net = load_network(path)
    if not net.layers:
        raise NetworkFileError(f"{path}: the network has no layers")
    return net


# ----------------------------------------------------------------------------- decompile


def decompile_cmd(
    source: SourceArg,
    input_range: Annotated[Optional[tuple[float, float]], typer.Option("--input-range", help="Domain of every input, LO HI (default: 0 255 for character codes, 0 1 otherwise).")] = None,
    max_vars: Annotated[int, typer.Option("--max-vars", min=1, help="Widest truth table built for one gate.")] = 12,
    probes: Annotated[int, typer.Option("--probes", min=0, help="Random inputs used to skip tight intervals and to check the netlist (0: none, proofs only).")] = 256,
    refine: Annotated[bool, typer.Option("--refine/--no-refine", help="Enumerate small cones to tighten loose intervals (sound).")] = True,
    assume: Annotated[bool, typer.Option("--assume-observed/--proven-only", help="Treat a neuron seen only as 0/1 on every probe as 0/1 (counted as assumed, then checked).")] = True,
    check: Annotated[int, typer.Option("--check", min=0, help="Fresh random inputs on which the netlist is compared with the network (0 skips).")] = 32,
    top: Annotated[int, typer.Option("--top", min=0, help="Gate patterns shown in the alphabet table.")] = 12,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Decompile an integer ReLU network into a reduced boolean netlist.

    Interval bound propagation (inputs from the adapter: character codes in [0, 255], or
    --input-range) proves which neurons are 0/1 (small cones are enumerated where intervals are
    loose; with --assume-observed, neurons seen only as 0/1 on random probes are assumed so and
    counted apart). A gate census names the alphabet (wire, AND, NOR, NOT, AND-NOT, folded XOR,
    thresholds, decoders ...). Copy wires and duplicate neurons are merged, constants propagated,
    and each gate becomes a truth table; the live netlist is written as AIGER ASCII
    (netlist.aag), JSON and, when small, DOT, with census.png. The netlist is then compared with
    the network on --check fresh random inputs. Kogge-Stone adders are counted from the width
    profile (word-level structure; `dormant net identify` locates words and rotations). A float
    network (non-integer weights, few 0/1 neurons) is reported as not a logic circuit, with the
    evidence.

    Example: dormant net decompile model.pt --out runs/decompile
    """
    from dormant.ledger import record_run
    from dormant.net.identify.wordlevel import kogge_stone_adders
    from dormant.net.logic.bounds import BoundsConfig, input_domain, probe_inputs
    from dormant.net.logic.decompile import DecompileConfig, decompile
    from dormant.net.logic.evaluate import check_netlist
    from dormant.net.logic.export import export_all

    args = {"source": str(source), "input_range": list(input_range) if input_range else None, "max_vars": max_vars, "probes": probes, "refine": refine, "assume_observed": assume, "check": check}
    with record_run("net decompile", args, ledger=ledger) as run:
        _add_input(run, source)
        net = _load(source)
        lo, hi = input_range if input_range else (None, None)
        bcfg = BoundsConfig(input_low=lo, input_high=hi, refine=refine, probes=probes, assume_observed=assume and probes > 0)
        run.assume("input_range", [lo, hi] if input_range else ("char codes [0, 255]" if net.adapter.kind == "char_codes" else "[0, 1]"))
        res = decompile(net, DecompileConfig(bounds=bcfg, max_vars=max_vars, census_top=top))
        folder = artifacts_dir(out, "net-decompile")
        exports = export_all(res, folder)
        checked = None
        if res.netlist is not None and check > 0:  # fresh inputs from the domain the bounds used
            dlo, dhi = input_domain(net, bcfg)
            x = probe_inputs(net, dlo, dhi, check, seed=12345, integer=bcfg.integer_inputs)
            compared, bad = check_netlist(net, res.netlist, x)
            checked = {"inputs": check, "neuron_values_compared": compared, "disagreements": bad}
        png = _plot_census(res, folder / "census.png")
        adders = kogge_stone_adders(net.widths)
        result = {"verdict": res.verdict, "is_logic": res.is_logic, "stages": res.stages, "bounds": res.bounds_counts, "census": res.census, "evidence": res.evidence, "cuts": res.cuts, "unresolved": res.unresolved, "netlist_stats": res.stats, "check": checked, "exports": exports, "plot": str(png), "notes": res.notes,
                  "adders_from_widths": {"count": len(adders), "first_layers": [a.start for a in adders[:8]]}}
        run.outputs.update({k: v for k, v in result.items() if k != "census"})
        run.outputs["census_counts"] = res.census.counts
        run.artifacts += list(exports.values()) + [str(png)]
    emit(result, as_json, lambda: _render_decompile(res, exports, checked, png, top, adders))


def _plot_census(res, path: Path) -> Path:
    from dormant.report.plots import plt, save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    kinds = list(res.census.counts)
    ax1.barh(kinds[::-1], [res.census.shares[k] * 100 for k in kinds][::-1], color="tab:blue")
    ax1.set_xlabel("% of neurons")
    ax1.set_title("gate census")
    names = list(res.stages)
    ax2.barh(names[::-1], [max(res.stages[k], 1) for k in names][::-1], color="tab:green")
    ax2.set_xscale("log")
    ax2.set_title("reduction")
    return save_figure(fig, path)


def _render_decompile(res, exports: dict, checked: dict | None, png: Path, top: int, adders: list) -> None:
    from rich.table import Table

    style = "green" if res.is_logic else "yellow"
    console.print(f"[bold {style}]{res.verdict}[/]")
    b = res.bounds_counts
    console.print(f"bounds: {b.get('binary', 0)} of {b.get('neurons', 0)} neurons 0/1 ({b.get('binary_proven', b.get('binary', 0))} proven, {b.get('binary_assumed', 0)} assumed from probes), {b.get('integer', 0)} integer, {b.get('constant', 0)} constant")
    t = Table(title="gate census")
    t.add_column("gate"), t.add_column("neurons", justify="right"), t.add_column("share", justify="right")
    for k, v in res.census.counts.items():
        t.add_row(k, str(v), f"{res.census.shares[k]:.1%}")
    console.print(t)
    a = Table(title=f"alphabet (top {top} exact patterns)")
    for col in ("gate", "weights", "bias", "count"):
        a.add_column(col)
    for e in res.census.alphabet[:top]:
        w = ", ".join(f"{x:g}" for x in e.weights[:8]) + (" ..." if len(e.weights) > 8 else "")
        a.add_row(e.kind, w, f"{e.bias:g}", str(e.count))
    console.print(a)
    s = Table(title="reduction")
    s.add_column("stage"), s.add_column("count", justify="right"), s.add_column("neurons / count", justify="right")
    first = max(next(iter(res.stages.values()), 1), 1)
    for k, v in res.stages.items():
        s.add_row(k, str(v), f"{first / v:.1f}x" if v else "-")
    console.print(s)
    if res.is_logic:
        console.print(f"cut inputs (bits computed from non-boolean values): {res.cuts}; gates written with clipped rows: {res.stats.get('clipped', 0)}")
    else:
        ev = res.evidence
        console.print(f"evidence: non-integer weights {ev['non_integer_weight_share']:.1%}, non-integer biases {ev['non_integer_bias_share']:.1%}, neurons proven 0/1 {ev['binary_neuron_share']:.1%}")
    if checked:
        ok = checked["disagreements"] == 0
        console.print(f"netlist vs network on {checked['inputs']} fresh inputs: {checked['neuron_values_compared']} values compared, [{'green' if ok else 'red'}]{checked['disagreements']} disagree[/]")
    if adders:
        console.print(f"word level: {len(adders)} Kogge-Stone {adders[0].bits}-bit adders in the width profile (rises {adders[0].rises}), first at widths index {adders[0].start}")
    for k, v in exports.items():
        console.print(f"{k}: {v}")
    console.print(f"plot: {png}")
    for n in res.notes:
        console.print(f"[dim]{n}[/]")


# ----------------------------------------------------------------------------- identify


def identify_cmd(
    source: SourceArg,
    probes: Annotated[int, typer.Option("--probes", min=1, help="Random messages run through the network and the reference hashes (chance match of a neuron: 2^-probes).")] = 128,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Longest random message (the public puzzle is exact MD5 only up to 31 characters).")] = 31,
    functions: Annotated[str, typer.Option("--functions", help="Reference functions, comma separated.")] = "md5,sha1,sha256",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random messages.")] = 0,
    words: Annotated[bool, typer.Option("--words/--no-words", help="Also recover word lanes and rotation amounts of the named function.")] = True,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Name the hash a network computes, find its digest lanes, verify them, read the target.

    Runs --probes random messages through the network and through reference MD5 / SHA-1 / SHA-256
    that record every intermediate word; a neuron equal to a reference bit on all of them is a
    match. The verdict names the function with the most matched words (message words, shared by
    all functions, do not count; SHA-1 is not confused with MD5 even though they share the IV).
    The layer holding the whole digest is located and checked against hashlib on fresh messages,
    and the comparator's target (read from the last two layers) is put into digest order.
    With --words, the named function's 32-bit words are located and the rotation between word
    pairs is read from the wiring (MD5's shift amounts, SHA-1's rotl 5 / 30); Kogge-Stone adders
    are counted from the width profile. Writes matches.png (matched neurons per layer and function).

    Example: dormant net identify model.pt --json
    """
    from dormant.errors import DormantError
    from dormant.ledger import record_run
    from dormant.net.identify.reference_hashes import TRACERS
    from dormant.net.identify.signature import IdentifyConfig, identify
    from dormant.net.identify.wordlevel import recover_words

    fns = tuple(f.strip() for f in functions.split(",") if f.strip())
    unknown = [f for f in fns if f not in TRACERS]
    if unknown:
        raise DormantError(f"--functions: unknown {', '.join(unknown)} (known: {', '.join(TRACERS)})")
    args = {"source": str(source), "probes": probes, "max_length": max_length, "functions": list(fns), "seed": seed}
    with record_run("net identify", args, ledger=ledger) as run:
        _add_input(run, source)
        net = _load(source)
        cfg = IdentifyConfig(probes=probes, max_length=max_length, functions=fns, seed=seed)
        ident = identify(net, cfg)
        wl = recover_words(net, ident.function, cfg) if words else None
        png = _plot_matches(ident, artifacts_dir(out, "net-identify") / "matches.png")
        run.outputs.update({"function": ident.function, "rounds": ident.rounds, "confidence": ident.confidence, "verified": ident.verified, "target_hex": ident.target_hex, "digest_layer": ident.digest_layer, "evidence": ident.evidence})
        word_summary = _word_summary(wl) if wl else None
        if word_summary:
            run.outputs["words"] = word_summary
        run.artifacts.append(str(png))
    payload = {**{f: getattr(ident, f) for f in ident.__dataclass_fields__}, "words": word_summary, "plot": str(png)}
    emit(payload, as_json, lambda: _render_identify(ident, png, word_summary))


def _word_summary(wl) -> dict:
    """Lanes found, their bit orders, adders from widths, and rotations grouped by word kinds."""
    from collections import Counter

    groups: dict[str, dict[int, int]] = {}
    for r in wl.rotations:
        if r.rotl == 0:
            continue
        delta = r.b[1] - r.a[1]
        key = f"rotl({r.a[0]}_i, s) aligned with {r.b[0]}_i{delta:+d}" if delta else f"rotl({r.a[0]}_i, s) aligned with {r.b[0]}_i"
        groups.setdefault(key, {})[r.a[1]] = r.rotl
    return {
        "function": wl.function,
        "lanes": len(wl.lanes),
        "lane_orders": dict(Counter(lane.order for lane in wl.lanes)),
        "adders_from_widths": len(wl.adders),
        "rotations": {k: dict(sorted(v.items())) for k, v in groups.items()},
    }


def _plot_matches(ident, path: Path) -> Path:
    from dormant.report.plots import new_figure, save_figure

    fig, ax = new_figure(10, 4)
    for fn, per in ident.per_layer.items():
        if per:
            ax.plot(list(per), list(per.values()), ".", ms=3, label=fn)
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons equal to a reference bit")
    ax.set_title(f"signature matches ({ident.probes} probes)")
    if ident.per_layer:
        ax.legend()
    return save_figure(fig, path)


def _render_identify(ident, png: Path, words: dict | None = None) -> None:
    if ident.function:
        c = {"high": "green", "medium": "yellow"}.get(ident.confidence, "red")
        rounds = f", reduced to its first {ident.rounds} steps" if ident.rounds else ""
        console.print(f"[bold {c}]function: {ident.function}[/]{rounds} (confidence {ident.confidence})")
    else:
        console.print("[bold yellow]function not identified[/]")
    for e in ident.evidence:
        console.print(f"  {e}")
    if ident.digest_layer is not None:
        v = "[green]verified[/]" if ident.verified else "[red]NOT verified[/]"
        ref = "hashlib" if not ident.rounds else "the truncated reference"
        console.print(f"digest lanes: layer {ident.digest_layer}; {v} against {ref} on {ident.verified_probes} fresh messages")
    if ident.target_hex:
        console.print(f"[bold]target digest: {ident.target_hex}[/]")
    elif ident.comparator_hex:
        console.print(f"comparator bytes (layer order): {ident.comparator_hex}")
    if words and words["function"]:
        console.print(f"words: {words['lanes']} lanes of {words['function']} located ({words['lane_orders']}); {words['adders_from_widths']} Kogge-Stone adders in the width profile")
        for k, v in words["rotations"].items():
            amounts = list(v.values())
            shown = ", ".join(str(a) for a in amounts[:16]) + (" ..." if len(amounts) > 16 else "")
            console.print(f"  {k}: s = {shown} ({len(amounts)} steps)")
    elif words and words["adders_from_widths"]:
        console.print(f"words: {words['adders_from_widths']} Kogge-Stone adders in the width profile")
    for n in ident.notes:
        console.print(f"[dim]{n}[/]")
    console.print(f"plot: {png}")


# ----------------------------------------------------------------------------- constants


def constants_cmd(
    source: Annotated[Path, typer.Argument(help="Network file/folder, an .npz/.safetensors of bias vectors alone, or a bias-bits .txt (0x<hex> (len=W) (layer=I) per line).")],
    hits: Annotated[int, typer.Option("--hits", min=0, help="Individual hits listed (0: summary only).")] = 20,
    no_complements: Annotated[bool, typer.Option("--no-complements", help="Do not look for complemented words.")] = False,
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Scan bias vectors for known constant tables (MD5 IV/K/shifts, SHA-1 IV/K, SHA-256 IV/K, CRC-32).

    Every window of 32 consecutive 0/1 biases is read as a word in four bit layouts (LSB first,
    MSB first, and both with the bits of each byte reversed), optionally complemented, and looked
    up; integer biases are matched as whole words. The report names the table, how many of its
    entries were found, where (layer, offset) and in which layout: a wrong published verdict came
    from MD5's IV read with each byte's bits reversed. Works on bias vectors alone and on the
    puzzle's bias-bits text file (both neuron orders). Writes constants.png (hits per layer).

    Example: dormant net constants puzzle_bias_bits.txt
    """
    from dormant.ledger import record_run
    from dormant.net.identify.constant_scan import ConstantsConfig, load_bias_vectors, scan_constants

    args = {"source": str(source), "complements": not no_complements}
    with record_run("net constants", args, ledger=ledger) as run:
        _add_input(run, source)
        vecs = load_bias_vectors(source)
        res = scan_constants(vecs, ConstantsConfig(complements=not no_complements), source=str(source))
        png = _plot_constants(res, artifacts_dir(out, "net-constants") / "constants.png")
        run.outputs.update({"verdict": res.verdict, "summary": res.summary, "n_hits": len(res.hits)})
        run.artifacts.append(str(png))
    payload = {"verdict": res.verdict, "summary": res.summary, "n_vectors": res.n_vectors, "n_windows": res.n_windows, "hits": res.hits[:hits] if hits else [], "n_hits": len(res.hits), "plot": str(png)}
    emit(payload, as_json, lambda: _render_constants(res, hits, png))


def _plot_constants(res, path: Path) -> Path:
    from dormant.report.plots import new_figure, save_figure

    fig, ax = new_figure(10, 3.8)
    tables = sorted({h.table for h in res.hits})
    for j, t in enumerate(tables):
        xs = [h.layer for h in res.hits if h.table == t]
        ax.plot(xs, [j] * len(xs), "|", ms=12, label=t)
    ax.set_yticks(range(len(tables)), tables)
    ax.set_xlabel("layer (bias vector)")
    ax.set_title(res.verdict[:110])
    return save_figure(fig, path)


def _render_constants(res, hits: int, png: Path) -> None:
    from rich.table import Table

    found = not res.verdict.startswith("no ")
    console.print(f"[bold {'green' if found else 'yellow'}]{res.verdict}[/]")
    console.print(f"{res.n_vectors} bias vectors, {res.n_windows} windows of 32 0/1 biases scanned")
    t = Table(title="tables")
    for col in ("table", "entries", "hits", "layout", "neuron order", "layers", "chance hits"):
        t.add_column(col)
    for s in res.summary:
        layers = ", ".join(str(x) for x in s.layers[:6]) + (f" ... ({len(s.layers)})" if len(s.layers) > 6 else "")
        t.add_row(s.table, f"{s.entries_found}/{s.table_size}", str(s.hits), s.layout, s.order or "-", layers, f"{s.expected_false_hits:.2g}")
    console.print(t)
    if hits:
        h = Table(title=f"first {min(hits, len(res.hits))} of {len(res.hits)} hits")
        for col in ("table", "entry", "word", "layer", "offset", "layout"):
            h.add_column(col)
        for x in res.hits[:hits]:
            h.add_row(x.table, str(x.entry), f"{x.word:08x}", f"{x.layer} ({x.name})", str(x.offset), x.layout + (" complemented" if x.complemented else "") + (f", order {x.order}" if x.order else ""))
        console.print(h)
    console.print(f"plot: {png}")


def register(app: typer.Typer) -> None:
    """Add ``decompile``, ``identify`` and ``constants`` to the ``dormant net`` app."""
    app.command("decompile")(decompile_cmd)
    app.command("identify")(identify_cmd)
    app.command("constants")(constants_cmd)
