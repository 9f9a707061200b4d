"""``dormant zoo net md5|sha1|sha256|toy``: compile a hash function into an integer ReLU network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, writable_out
from dormant.report.console import console, emit, err_console


def net_cmd(
    kind: Annotated[str, typer.Argument(help="Function to compile: md5, sha1, sha256 or toy (8-character 32-bit checksum, ~20 layers).")],
    secret: Annotated[str, typer.Option("--secret", "-s", help="The string the net accepts (output 1.0). Up to 55 characters (toy: 8), codes 1..255.")] = "bitter lesson",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", callback=writable_out, help="Folder to write the net into. Default: the cache, $DORMANT_CACHE/netzoo/<key> (~/.cache/dormant/netzoo).")] = None,
    rounds: Annotated[Optional[int], typer.Option("--rounds", "-r", help="Compression steps (default all: md5 64, sha1 80, sha256 64); fewer gives a reduced-round variant.")] = None,
    pickle: Annotated[str, typer.Option("--pickle", help="Full-module pickle model.pt: auto (float32 up to 300 MB dense, else float16, else skipped), always (float32), never.")] = "auto",
    style: Annotated[str, typer.Option("--style", help="Compiler style: standard (the puzzle's construction: Kogge-Stone adders, periodic blocks, hat comparator) or asap (ripple-carry adders, gates as soon as ready, XNOR/AND-tree comparator).")] = "standard",
    layout: Annotated[str, typer.Option("--layout", help="compact (as compiled) or puzzle (md5 only: stretched onto the public puzzle's 2721 layer widths with copy-wire layers and constant-0 filler; layers that need more lanes than the puzzle's are reported in the manifest).")] = "compact",
    length_bug: Annotated[bool, typer.Option("--length-bug", help="Reproduce the puzzle's padding: only the low byte of the bit length is written, so the net computes the real hash for 0-31 characters only.")] = False,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Build a network that outputs exactly 1.0 on --secret and 0.0 on every other string.

    The net follows the opaque puzzle's conventions: input = 55 character codes of a NUL-padded
    string; a head counts characters, pads one MD5/SHA block and lays out its bytes with threshold
    neurons; each compression step is a stack of integer Linear+ReLU layers (XOR folded as
    a+b-2*AND(a,b), carry-save plus Kogge-Stone adders, IV and K constants in biases); the tail adds
    the IV back and compares each digest byte with three "hat" neurons, then one Linear(3n->1).
    Every build is verified against hashlib (random strings, near misses, the secret) before it is
    written. Writes network.json + layers.safetensors (sparse), model.pt (see --pickle),
    manifest.json (the answer key, for tests) and widths.png.

    Example: dormant zoo net md5 --secret "bitter lesson" --out nets/md5
    """
    from dormant.ledger import record_run
    from dormant.report.plots import new_figure, save_figure
    from dormant.zoo.net.build import build_net, make_spec

    kind = kind.lower()
    make_spec(kind, secret, rounds, length_bug, style, layout)  # bad arguments fail here, before a ledger run
    args = {"kind": kind, "secret": secret, "out": str(out) if out else None, "rounds": rounds, "pickle": pickle, "length_bug": length_bug, "style": style, "layout": layout}
    with record_run("zoo net", args, ledger=ledger) as run:
        with err_console.status(f"compiling {kind} and verifying it against the reference"):
            built = build_net(kind, secret, out=out, rounds=rounds, pickle=pickle, length_bug=length_bug, style=style, layout=layout)
        m = built.manifest
        fig, ax = new_figure(9, 3.5)
        widths = built.network.widths
        ax.plot(range(len(widths)), widths, lw=0.6)
        ax.set_xlabel("layer (0 = input)")
        ax.set_ylabel("width")
        ax.set_title(f"{kind} net, {m['rounds']} steps: {m['layers']} layers")
        png = save_figure(fig, built.folder / "widths.png")
        run.add_input("network", built.folder / "layers.safetensors")
        summary = {
            "folder": str(built.folder),
            "pickle": str(built.pickle_path) if built.pickle_path else None,
            "function": kind,
            "rounds": m["rounds"],
            "length_bug": m["length_bug"],
            "style": m.get("style", "standard"),
            "layout": m.get("layout", {"kind": "compact"}),
            "exact_lengths": m["input"]["exact_lengths"],
            "target": m["target"],
            "layers": m["layers"],
            "widths": m["widths"],
            "nnz": m["nnz"],
            "census": m["census"],
            "pickle_note": m["pickle"]["note"],
            "verified": m["verified"],
            "build_seconds": m["build_seconds"],
        }
        run.outputs.update(summary)
        run.artifacts += [str(built.folder), str(png)]

    def render() -> None:
        from rich.table import Table

        t = Table(title=f"zoo net {kind}: accepts {secret!r}", show_header=False)
        t.add_row("target digest", m["target"])
        t.add_row("steps", f"{m['rounds']} of {m['full_rounds']}")
        t.add_row("real hash for", f"strings of {m['input']['exact_lengths']} characters" + (" (puzzle length bug)" if m["length_bug"] else ""))
        t.add_row("layers", f"{m['layers']} Linear+ReLU")
        w = m["widths"]
        t.add_row("widths", f"{w['input']} -> {w['min_hidden']}..{w['max']} (mean {w['mean']}) -> {w['output']}")
        lay = m.get("layout", {"kind": "compact"})
        if lay["kind"] == "puzzle":
            t.add_row("puzzle layout", f"{lay['layers_matching_width']} of {m['layers']} layers as wide as the puzzle's; {lay['layers_over_width']} wider (by {lay['lanes_over_width']:,} lanes in all); {lay['filler_neurons']:,} constant-0 filler neurons, {lay['copy_layers_inserted']} copy-wire layers inserted")
        t.add_row("non-zero weights", f"{m['nnz']:,} of {m['dense_params']:,} dense parameters")
        t.add_row("gate census", ", ".join(f"{k} {v:,}" for k, v in m["census"].items()))
        t.add_row("verified", f"{m['verified']['probes']} probes (near misses {m['verified']['near_misses']}, random {m['verified']['random']}): digests equal the reference")
        t.add_row("folder", str(built.folder))
        t.add_row("pickle", f"{built.pickle_path or '-'} ({m['pickle']['note']})")
        t.add_row("widths plot", str(png))
        console.print(t)

    emit(summary, as_json, render)


def register(app: typer.Typer) -> None:
    """Add ``net`` to the ``dormant zoo`` sub-app."""
    app.command("net")(net_cmd)
