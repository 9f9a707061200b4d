"""`dormant net invert` and `dormant net solve`: find the input that makes a network fire."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir
from dormant.report.console import console, emit, err_console

INVERT_HELP = (
    "Find a preimage of a hash digest: the string a hash network (or a bare digest) was built for.\n\n"
    "Give the target with --md5 HEX, --sha1 HEX, --sha256 HEX or --function NAME --target HEX, or give a "
    "network FILE: its function and target are then identified from the file (as `dormant net solve` does).\n\n"
    "Candidates, most likely first: --mask patterns (?l a-z, ?u A-Z, ?d 0-9, ?s punctuation, ?a printable, "
    "?h hex; e.g. '?u?l?l?l?d?d'), --charset strings of --length 1-4, --words FILE lists, then the packaged "
    "English list (on unless a mask or charset is given): single words of the top --top 30000 (lower, "
    "Capital, UPPER), ordered pairs of the top --pairs-top 10000 joined by ' ' and '' in frequency shells "
    "(common pairs first), then '-'/'_' separators and Capitalised pairs among the top --variants-top 3000: "
    "about 330M candidates, a minute or two on two cores.\n\n"
    "Runs on every core (--workers), shows candidates/s on stderr and stops at the first hit. Each finished "
    "chunk is appended to a state file; after an interruption, the same command with --resume continues "
    "where it stopped.\n\n"
    "Example: dormant net invert --md5 c7ef65233c40aa32c2b9ace37595fa7c"
)


def _parse_length(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise typer.BadParameter(f"length {text!r}: use N or MIN-MAX, e.g. 1-4", param_hint="--length") from None
    if lo < 0 or hi < lo:
        raise typer.BadParameter(f"length {text!r}: MIN must be at least 0 and at most MAX, e.g. 1-4", param_hint="--length")
    return lo, hi


def _hints(mask: list[str] | None, words: list[Path] | None, top: int, pairs_top: int, variants_top: int, *, need_candidates: bool = True,
           **more):
    """The preimage search's hints from the options ``invert`` and ``solve`` share, plus ``more``;
    checked (masks, lengths, word lists and, with ``need_candidates``, that they give any) before anything is written."""
    from dormant.net.invert.candidates import Hints, build_space

    hints = Hints(
        masks=list(mask or []),
        word_files=list(words or []),
        english_top=top,
        pairs_top=pairs_top,
        pairs=pairs_top > 0,
        variants_top=variants_top,
        **more,
    )
    # solve: the hints matter only if the network turns out to be a hash, so none at all is no error there
    build_space(hints, allow_empty=not need_candidates)
    return hints


def _group_stages(stages: list[dict]) -> list[tuple[str, int, int]]:
    """Collapse the per-shell products into families: (family, products, candidates)."""
    from dormant.net.invert.preimage import family_of

    groups: dict[str, list[int]] = {}
    for s in stages:
        family = family_of(s["label"])
        g = groups.setdefault(family, [0, 0])
        g[0] += 1
        g[1] += s["size"]
    return [(k, v[0], v[1]) for k, v in groups.items()]


EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Search engine: dormant (this machine's cores) or hashcat (runs the hand-off folder's attacks with an "
        "installed hashcat; $HASHCAT_OPTS is passed on, default --force for CPU OpenCL). The hand-off folder "
        "(target.hash, word lists, run.sh) is written either way.",
    ),
]


def check_engine(engine: str) -> None:
    from dormant.net.invert.preimage import InvertError

    if engine not in ("dormant", "hashcat"):
        raise InvertError(f"unknown engine {engine!r}: use dormant or hashcat")


def search_with(engine: str, handoff_dir: Path, targets: list[bytes], function: str, hints, config):
    """Write the hashcat hand-off, then search with ``engine`` (dormant or hashcat)."""
    from dormant.net.invert.hashcat import invert_with_hashcat, write_handoff
    from dormant.net.invert.preimage import invert

    check_engine(engine)
    handoff = write_handoff(handoff_dir, function, targets, hints)
    err_console.print(f"hashcat hand-off: {handoff.script} ({len(handoff.attacks)} attacks, {handoff.size:,} candidates)")
    result = invert_with_hashcat(handoff) if engine == "hashcat" else invert(targets, function, hints, config)
    result.handoff = str(handoff.folder)
    return result


def render_invert(result) -> None:
    from rich.table import Table

    if result.found and result.verified is False:
        console.print(
            f"[bold red]digest matched but the network does NOT fire[/] on {result.preimage!r}: "
            "not its secret (the target read from the network is wrong)"
        )
    elif result.found:
        check = " (the network fires on it)" if result.verified else ""
        console.print(f"[bold green]FOUND[/] {result.function}({result.preimage!r}) = {result.hits[0].target}{check}")
        for h in result.hits[1:]:
            console.print(f"      also {h.preimage!r} = {h.target}")
        where = f" (candidate #{result.hits[0].index:,})" if result.hits[0].index >= 0 else ""
        console.print(f"  from: {result.hits[0].source}{where}")
    else:
        console.print(f"[bold red]not found[/] ({result.why_not_found}): {result.tried}")
    table = Table(title="candidate families, in search order", show_lines=False)
    table.add_column("family")
    table.add_column("parts", justify="right")
    table.add_column("candidates", justify="right")
    table.add_column("hashed this run", justify="right")
    for family, n, size in _group_stages(result.stages):
        table.add_row(family, str(n), f"{size:,}", f"{result.covered.get(family, 0):,}")
    console.print(table)
    if result.backend == "hashcat":
        console.print(
            f"hashcat: {len(result.chunks_run)} of {result.chunks_total} attacks run in {result.seconds:.1f}s; "
            f"{result.candidates:,} candidates in attacks it ran to their end ({result.rate / 1e6:.2f} M/s with start-up)"
        )
    else:
        console.print(
            f"{result.candidates:,} hashed in {result.seconds:.1f}s = {result.rate / 1e6:.2f} M/s "
            f"({result.workers} workers, {result.backend}); chunks {len(result.chunks_run)} run, "
            f"{result.chunks_resumed} resumed, {result.chunks_total} total"
        )
    if result.checkpoint:
        console.print(f"state file: {result.checkpoint} (rerun with --resume to continue)")
    if result.handoff:
        console.print(f"hashcat hand-off: {result.handoff} (target.hash, word lists, run.sh)")


def invert_cmd(
    file: Annotated[Optional[Path], typer.Argument(help="Hash network file whose target to invert (optional).")] = None,
    md5: Annotated[Optional[str], typer.Option("--md5", help="Target MD5 digest (hex).")] = None,
    sha1: Annotated[Optional[str], typer.Option("--sha1", help="Target SHA-1 digest (hex).")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Target SHA-256 digest (hex).")] = None,
    function: Annotated[Optional[str], typer.Option("--function", "-f", help="Hash function: md5, sha1, sha256.")] = None,
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="Target digest (hex), with --function.")] = None,
    mask: Annotated[Optional[list[str]], typer.Option("--mask", "-m", help="Mask such as '?l?l?l?d' (repeatable).")] = None,
    charset: Annotated[Optional[str], typer.Option("--charset", help="Try every string over these characters.")] = None,
    length: Annotated[str, typer.Option("--length", help="Lengths for --charset: N or MIN-MAX.")] = "1-4",
    words: Annotated[Optional[list[Path]], typer.Option("--words", help="User word list, one per line (repeatable).")] = None,
    english: Annotated[Optional[bool], typer.Option("--english/--no-english", help="Packaged English list (default: on unless --mask/--charset).")] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Single English words: the N most frequent.")] = 30_000,
    pairs_top: Annotated[int, typer.Option("--pairs-top", min=0, help="Word pairs among the N most frequent words (0: no pairs).")] = 10_000,
    variants_top: Annotated[int, typer.Option("--variants-top", min=0, help="Pair variants ('-', '_', Capitalised) among the top N.")] = 3_000,
    sep: Annotated[Optional[list[str]], typer.Option("--sep", help="Pair separators (repeatable; default ' ' and '').")] = None,
    byte_orders: Annotated[bool, typer.Option("--byte-orders", help="Also match the digest with bytes reversed per word / overall.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=0, help="Processes (default or 0: all cores).")] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Candidates per chunk (unit of resume).")] = 1 << 20,
    budget: Annotated[Optional[int], typer.Option("--budget", min=1, help="Stop after about this many candidates.")] = None,
    max_chunks: Annotated[Optional[int], typer.Option("--max-chunks", min=1, help="Stop after this many chunks.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip the chunks the state file lists as done.")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="State file (default: in the --out folder).")] = None,
    all_hits: Annotated[bool, typer.Option("--all", help="Do not stop at the first hit: exhaust the space.")] = False,
    backend: Annotated[str, typer.Option("--backend", help="Hash engine: auto, numba (compiled), numpy.")] = "auto",
    engine: EngineOpt = "dormant",
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.net.invert.preimage import InvertConfig, InvertError, byte_order_variants, check_backend, parse_digest

    given = [(f, t) for f, t in (("md5", md5), ("sha1", sha1), ("sha256", sha256)) if t]
    if target:
        given.append((function or "md5", target))
    if len(given) > 1:
        raise InvertError("give one target: --md5, --sha1, --sha256 or --function/--target")
    identified = {}
    if not given:
        if file is None:
            raise InvertError("no target: give --md5 HEX (or --sha1/--sha256/--function+--target) or a network FILE")
        from dormant.net.solve import target_from_network

        identified = target_from_network(file, function)
        given.append((identified["function"], identified["target"]))
        err_console.print(f"{file}: {identified['evidence']}")
        byte_orders = byte_orders or identified.get("byte_orders", False)
    name, hexdigest = given[0]
    digest = parse_digest(name, hexdigest)
    targets = byte_order_variants(digest) if byte_orders else [digest]
    check_engine(engine)
    check_backend(backend)
    lo, hi = _parse_length(length)
    hints = _hints(mask, words, top, pairs_top, variants_top, charset=charset, min_len=lo, max_len=hi, english=english, separators=tuple(sep) if sep else (" ", ""))
    tag = hashlib.sha256(json.dumps([name, digest.hex(), hints.describe(), chunk_size]).encode()).hexdigest()[:10]
    if checkpoint is None:
        checkpoint = artifacts_dir(out, "invert") / f"{name}-{digest.hex()[:12]}-{tag}.state"
    handoff_dir = artifacts_dir(out, "invert") / f"hashcat-{name}-{digest.hex()[:12]}-{tag}"
    config = InvertConfig(
        workers=workers,
        chunk_size=chunk_size,
        checkpoint=checkpoint,
        resume=resume,
        max_chunks=max_chunks,
        max_candidates=budget,
        backend=backend,
        stop_on_hit=not all_hits,
    )
    args = {"function": name, "target": digest.hex(), "hints": hints.describe(), "workers": workers, "resume": resume}
    with record_run("net invert", args, ledger=ledger) as run:
        if file is not None:
            run.add_input("network", file, subject=True)
        for w in words or []:
            run.add_input(f"words:{w.name}", w)
        run.artifacts.append(str(handoff_dir))
        try:
            result = search_with(engine, handoff_dir, targets, name, hints, config)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: finished chunks are in {checkpoint}; rerun the same command with --resume")
            raise typer.Exit(130) from None
        if file is not None and result.found:
            from dormant.net.solve import network_fires

            result.verified = network_fires(file, result.preimage, bytes.fromhex(result.hits[0].preimage_hex))
        run.outputs.update(
            found=result.found,
            verified=result.verified,
            preimage=result.preimage,
            status=result.status,
            candidates=result.candidates,
            rate=result.rate,
            identified=identified or None,
        )
        run.artifacts.append(str(checkpoint))
    emit(result, as_json, lambda: render_invert(result))


SOLVE_HELP = (
    "Solve an opaque network end to end: load it inertly, inspect, find its motifs, decompile (small nets), "
    "identify the function and read the target, then find the input that makes it fire.\n\n"
    "For a hash network (MD5, SHA-1, SHA-256) the target digest is inverted with the same search as "
    "`dormant net invert` (English words and pairs by default; add --words, --mask; digest byte orders "
    "are tried too). For any other small circuit every firing input is searched: SAT on the decompiled "
    "netlist when possible, else enumeration of strings over --alphabet up to --max-len characters.\n\n"
    "Prints each stage's key finding, status and time, then the verdict; the preimage is checked on the "
    "network itself. A stage that fails is reported and the chain goes on.\n\n"
    "Example: dormant net solve model.pt --json"
)


def render_solve(result) -> None:
    from rich.table import Table

    colour = {"ok": "green", "failed": "red", "skipped": "dim"}
    table = Table(title=f"dormant net solve {result.source}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("finding", overflow="fold")
    for s in result.stages:
        table.add_row(s.name, f"[{colour.get(s.status, 'white')}]{s.status}[/]", f"{s.seconds:.1f}s", s.finding)
    console.print(table)
    style = "bold green" if result.found and result.verified else "bold red"  # green only for what the network confirmed
    console.print(f"[{style}]verdict:[/] {result.verdict}")


def solve_cmd(
    file: Annotated[Path, typer.Argument(help="Network file or folder (torch pickle, safetensors, npz, dormant folder).")],
    words: Annotated[Optional[list[Path]], typer.Option("--words", help="User word list for the preimage search (repeatable).")] = None,
    mask: Annotated[Optional[list[str]], typer.Option("--mask", "-m", help="Mask for the preimage search, e.g. '?l?l?l?d' (repeatable).")] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Single English words: the N most frequent.")] = 30_000,
    pairs_top: Annotated[int, typer.Option("--pairs-top", min=0, help="Word pairs among the N most frequent words (0: none).")] = 10_000,
    variants_top: Annotated[int, typer.Option("--variants-top", min=0, help="Pair variants ('-', '_', Capitalised) among the top N.")] = 3_000,
    byte_orders: Annotated[bool, typer.Option("--byte-orders/--no-byte-orders", help="Also match byte-swapped digests.")] = True,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=0, help="Processes for the search (default or 0: all cores).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", min=1, help="Stop the preimage search after about this many candidates.")] = None,
    alphabet: Annotated[str, typer.Option("--alphabet", help="Non-hash circuits: characters to enumerate (default: printable ASCII).")] = "",
    max_len: Annotated[int, typer.Option("--max-len", min=1, help="Non-hash circuits: longest string enumerated.")] = 3,
    decompile_max: Annotated[int, typer.Option("--decompile-max", min=0, help="Decompile only nets with at most this many neurons.")] = 50_000,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Stages to skip: inspect, motifs, decompile (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted preimage search (state file in --out).")] = False,
    engine: EngineOpt = "dormant",
    out: OutDirOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.errors import NetworkFileError
    from dormant.ledger import record_run
    from dormant.net.logic.circuit_search import PRINTABLE

    if not file.exists():
        raise NetworkFileError(f"{file}: no such file or folder")
    from dormant.net.invert.preimage import InvertConfig
    from dormant.net.solve import SolveConfig, solve

    check_engine(engine)
    hints = _hints(mask, words, top, pairs_top, variants_top, need_candidates=False, english=True)
    state = artifacts_dir(out, "solve") / f"{file.name or 'network'}.invert.state"
    config = SolveConfig(
        hints=hints,
        invert=InvertConfig(workers=workers, max_candidates=budget, checkpoint=state, resume=resume),
        byte_orders=byte_orders,
        decompile_max_neurons=decompile_max,
        alphabet=alphabet or PRINTABLE,
        max_len=max_len,
        skip=tuple(skip or ()),
        engine=engine,
        handoff_dir=artifacts_dir(out, "solve") / f"{file.name or 'network'}.hashcat",
    )
    args = {"file": str(file), "hints": hints.describe(), "byte_orders": byte_orders, "alphabet": alphabet or "printable", "max_len": max_len, "resume": resume, "engine": engine}
    with record_run("net solve", args, ledger=ledger) as run:
        run.add_input("network", file, subject=True)
        for w in words or []:
            run.add_input(f"words:{w.name}", w)
        result = solve(file, config)
        run.outputs.update(
            verdict=result.verdict,
            function=result.function,
            target=result.target,
            preimage=result.preimage,
            found=result.found,
            verified=result.verified,
            stages={s.name: {"status": s.status, "seconds": s.seconds, "finding": s.finding} for s in result.stages},
        )
        run.decide("function", result.function)
    emit(result, as_json, lambda: render_solve(result))


def register(app: typer.Typer) -> None:
    """Add ``invert`` and ``solve`` to the ``dormant net`` app."""
    app.command("invert", help=INVERT_HELP)(invert_cmd)
    app.command("solve", help=SOLVE_HELP)(solve_cmd)
