"""Preimage search: find a string whose hash is a target digest, from hints about the string.

``invert(target, function, hints)`` builds the candidate space (``dormant.net.invert.candidates``),
splits it into numbered chunks, and hashes the chunks on every core (``multiprocessing``, one
process per core, each running ``fast_hashes.scan_product``). It stops at the first hit, or when the
space or the budget is spent.

Resumable: with a checkpoint file, every finished chunk is appended to it as it completes (one
JSON line each, flushed), so a run that is killed loses at most the chunks in flight. Running
again with ``resume=True`` skips the chunks already done. The file starts with a header holding a
digest of the space, the function, the targets and the chunk size; a checkpoint written for a
different search is refused rather than silently mixed.

Several targets can be searched at once for the price of one (the comparison is the cheap part):
``byte_order_variants`` gives the digest with its bytes reversed per 32-bit word and overall, for
targets read out of a network whose byte order is uncertain.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dormant.errors import DormantError
from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import Chunk, Hints, Space, build_space, decode


class InvertError(DormantError):
    """A preimage search that cannot start (bad target, mismatched checkpoint, ...)."""


@dataclass
class InvertConfig:
    workers: int | None = None  # processes; None: every core this process may use
    chunk_size: int = 1 << 20  # candidates per chunk (the unit of parallel work and of resume)
    checkpoint: Path | None = None  # state file of finished chunks; None: no checkpointing
    resume: bool = False  # skip the chunks the checkpoint lists as done
    max_chunks: int | None = None  # stop after this many chunks in this run
    max_candidates: int | None = None  # budget: stop once this many candidates are hashed
    backend: str = "auto"  # numba, numpy or auto
    stop_on_hit: bool = True  # False: exhaust the space, collecting every hit
    progress: bool = True  # Rich progress bar on stderr (shown only on a terminal)


@dataclass
class Hit:
    preimage: str
    preimage_hex: str
    index: int  # candidate number in the space (-1: found by hashcat, whose order differs)
    source: str  # label of the product it came from
    target: str  # the digest (hex) it matched


@dataclass
class InvertResult:
    function: str
    targets: list[str]
    found: bool
    preimage: str | None
    hits: list[Hit]
    status: str  # found, exhausted, budget, incomplete (hashcat: some candidates had no attack; ``notes`` says which)
    space_size: int
    candidates: int  # hashed in this run
    chunks_total: int
    chunks_resumed: int  # already done before this run (from the checkpoint)
    chunks_run: list[int]  # chunk numbers hashed in this run
    seconds: float
    rate: float  # candidates per second in this run
    workers: int
    backend: str
    stages: list[dict]
    hints: dict = field(default_factory=dict)
    checkpoint: str | None = None
    covered: dict[str, int] = field(default_factory=dict)  # family of candidates -> hashed in this run
    handoff: str | None = None  # folder of the same search as hashcat attacks (``invert.hashcat``)
    verified: bool | None = None  # the network fires on the preimage (None: no network to run)
    notes: list[str] = field(default_factory=list)  # what the search could not cover, and why

    @property
    def tried(self) -> str:
        return f"{self.candidates:,} candidates of {self.space_size:,}"

    @property
    def why_not_found(self) -> str:
        """Why the search ended without a preimage, in words (by ``status``)."""
        return {"exhausted": "space exhausted", "budget": "budget spent",
                "incomplete": "not every candidate was tried: " + "; ".join(self.notes)}.get(self.status, self.status)


def parse_digest(function: str, target: str) -> bytes:
    """A target digest from hex (spaces, colons and a 0x prefix allowed), checked for length."""
    try:
        name = fast_hashes.check_function(function)
    except ValueError as exc:
        raise InvertError(str(exc)) from None
    text = target.strip().lower().removeprefix("0x").replace(" ", "").replace(":", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvertError(f"target {target!r} is not a hexadecimal digest") from None
    want = 4 * fast_hashes.DIGEST_WORDS[name]
    if len(raw) != want:
        raise InvertError(f"a {name} digest has {want} bytes ({2 * want} hex digits); {target!r} has {len(raw)}")
    return raw


def check_backend(backend: str) -> str:
    """The hash engine ``backend`` names (auto: numba when installed), or ``InvertError``."""
    if backend not in ("auto", "numba", "numpy"):
        raise InvertError(f"unknown backend {backend!r}: use auto, numba or numpy")
    if backend == "numba" and not fast_hashes.HAVE_NUMBA:
        raise InvertError("backend numba needs the numba package (pip install numba); use numpy or auto")
    return fast_hashes.default_backend() if backend == "auto" else backend


def byte_order_variants(digest: bytes) -> list[bytes]:
    """The digest, then with bytes reversed inside each 32-bit word, then fully reversed."""
    words = [digest[i : i + 4] for i in range(0, len(digest), 4)]
    out = [digest, b"".join(w[::-1] for w in words), digest[::-1]]
    return list(dict.fromkeys(out))


def family_of(label: str) -> str:
    """A product's family: its label without the frequency-shell part (``... ranks 500-1000 a``)."""
    return label.split(" ranks ")[0]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Checkpoint file
# --------------------------------------------------------------------------------------------


def _header(space_key: str, function: str, targets: list[bytes], chunk_size: int, chunks_total: int) -> dict:
    return {
        "dormant_invert": 1,
        "space": space_key,
        "function": function,
        "targets": [t.hex() for t in targets],
        "chunk_size": chunk_size,
        "chunks_total": chunks_total,
    }


def read_state_file(path: Path, header: dict) -> tuple[set[int], list[list[int]]]:
    """Finished chunk numbers and recorded hits ``[index, target number]`` of a matching state file."""
    lines = path.read_text().splitlines()
    try:
        head = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("dormant_invert") != 1:
        raise InvertError(f"checkpoint {path}: not a dormant invert state file")
    for key in ("space", "function", "targets", "chunk_size"):
        if head.get(key) != header[key]:
            raise InvertError(
                f"checkpoint {path} belongs to a different search ({key} differs); "
                "run without --resume to start afresh, or pass another --checkpoint"
            )
    done: set[int] = set()
    hits: list[list[int]] = []
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: that chunk is simply redone
        done.add(int(rec["chunk"]))
        hits.extend(rec.get("hits", []))
    return done, hits


def open_state_file(path: Path, header: dict, resume: bool) -> tuple[set[int], list[list[int]]]:
    """Resume from ``path`` (finished chunks, recorded hits) or start it afresh with ``header``."""
    if resume and path.exists():
        return read_state_file(path, header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(header) + "\n")
    return set(), []


def plan_chunks(chunks: list[Chunk], done: set[int], config: InvertConfig) -> list[Chunk]:
    """The chunks this run hashes: those not done, in order, cut to ``max_chunks``/``max_candidates``."""
    pending = [c for c in chunks if c.id not in done]
    if config.max_chunks is not None:
        pending = pending[: max(0, config.max_chunks)]
    if config.max_candidates is not None:
        budget, kept = config.max_candidates, []
        for c in pending:
            if budget <= 0:
                break
            kept.append(c)
            budget -= c.size
        pending = kept
    return pending


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------

_W: dict = {}


def _init_worker(function: str, space: Space, offsets: list[int], targets: np.ndarray, backend: str) -> None:
    _W.update(function=function, space=space, encoded={}, offsets=offsets, targets=targets, backend=backend)


def _encoded(product: int):
    """The product's arrays, built on first use in this process (each worker encodes what it scans)."""
    cache = _W["encoded"]
    if product not in cache:
        cache[product] = _W["space"].products[product].encode()
    return cache[product]


def _scan_chunk(job: tuple[int, int, int, int]) -> tuple[int, int, list[list[int]]]:
    """Hash one chunk in a worker; returns (chunk number, candidates hashed, hits)."""
    chunk_id, product, start, stop = job
    base = _W["offsets"][product]
    # the numpy backend materialises its batch: keep each slice to a few tens of MB
    step = 1 << 16 if _W["backend"] == "numpy" else max(1, stop - start)
    hits = []
    for s in range(start, stop, step):
        found = fast_hashes.scan_product(_W["function"], _encoded(product), s, min(s + step, stop), _W["targets"], backend=_W["backend"])
        hits.extend([base + int(i), int(t)] for i, t in found)
    return chunk_id, stop - start, hits


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


def invert(
    target: str | bytes | list,
    function: str = "md5",
    hints: Hints | Space | None = None,
    config: InvertConfig | None = None,
    *,
    on_chunk: Callable[[int, int], None] | None = None,
) -> InvertResult:
    """Search ``hints`` for a preimage of ``target`` under ``function`` (md5, sha1, sha256).

    ``target`` is a hex digest, raw digest bytes, or a list of either (any one may match).
    ``hints`` is a ``Hints`` (default: English words and word pairs) or a ready ``Space``.
    ``on_chunk(done, total)`` is called after each chunk (for callers with their own progress).
    """
    config = config or InvertConfig()
    name = fast_hashes.check_function(function)
    raw_targets = target if isinstance(target, list) else [target]
    digests = [t if isinstance(t, bytes) else parse_digest(name, t) for t in raw_targets]
    if not digests:
        raise InvertError("no target digest given")
    space = hints if isinstance(hints, Space) else build_space(hints or Hints())
    hint_info = hints.describe() if isinstance(hints, Hints) else {}
    backend = check_backend(config.backend)
    workers = config.workers or default_workers()
    chunk_size = max(1, int(config.chunk_size))
    chunks = space.chunks(chunk_size)
    target_words = np.stack([fast_hashes.digest_to_words(name, d) for d in digests])

    header = _header(space.key(), name, digests, chunk_size, len(chunks))
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    done, prior_hits = open_state_file(ckpt, header, config.resume) if ckpt else (set(), [])
    pending = plan_chunks(chunks, done, config)
    budget_cut = len(pending) < len(chunks) - len(done)

    def hit_of(index: int, t: int) -> Hit:
        cand = space.candidate(index)
        return Hit(decode(cand), cand.hex(), index, space.products[space.locate(index)[0]].label, digests[t].hex())

    hits = [hit_of(i, t) for i, t in prior_hits]
    t0 = time.perf_counter()
    hashed = 0
    ran: list[int] = []
    covered: dict[str, int] = {}
    status = "found" if hits and config.stop_on_hit else None

    if status is None and pending:
        fast_hashes.warm_up(name, backend)  # compile once, before forking
        jobs = [(c.id, c.product, c.start, c.stop) for c in pending]
        offsets = [space.offset(k) for k in range(len(space.products))]
        init = (name, space, offsets, target_words, backend)
        log = ckpt.open("a") if ckpt is not None else None
        bar = _Progress(config.progress, f"{name} search", sum(c.size for c in pending))
        pool = None
        try:
            if workers > 1 and len(jobs) > 1:
                ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
                pool = ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=init)
                results = pool.imap_unordered(_scan_chunk, jobs)
            else:
                _init_worker(*init)
                results = map(_scan_chunk, jobs)
            for chunk_id, n, chunk_hits in results:
                hashed += n
                ran.append(chunk_id)
                family = family_of(space.products[chunks[chunk_id].product].label)
                covered[family] = covered.get(family, 0) + n
                if log is not None:
                    rec = {"chunk": chunk_id, "hits": chunk_hits} if chunk_hits else {"chunk": chunk_id}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                hits.extend(hit_of(i, t) for i, t in chunk_hits)
                bar.advance(n, time.perf_counter() - t0)
                if on_chunk is not None:
                    on_chunk(len(done) + len(ran), len(chunks))
                if hits and config.stop_on_hit:
                    status = "found"
                    break
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            if log is not None:
                log.close()
            bar.close()
    if status is None:
        status = "found" if hits else ("budget" if budget_cut else "exhausted")
    seconds = time.perf_counter() - t0
    hits.sort(key=lambda h: h.index)
    return InvertResult(
        function=name,
        targets=[d.hex() for d in digests],
        found=bool(hits),
        preimage=hits[0].preimage if hits else None,
        hits=hits,
        status=status,
        space_size=space.size,
        candidates=hashed,
        chunks_total=len(chunks),
        chunks_resumed=len(done),
        chunks_run=sorted(ran),
        seconds=seconds,
        rate=hashed / seconds if seconds > 0 else 0.0,
        workers=workers,
        backend=backend,
        stages=space.summary(),
        hints=hint_info,
        checkpoint=str(ckpt) if ckpt else None,
        covered=covered,
    )


class _Progress:
    """A Rich bar on stderr over candidates, with the rate in candidates/s."""

    def __init__(self, enabled: bool, description: str, total: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from dormant.report.console import err_console

        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not (enabled and err_console.is_terminal),
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, rate="")
        self.done = 0

    def advance(self, n: int, elapsed: float) -> None:
        self.done += n
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, advance=n, rate=f"{rate / 1e6:.2f} M cand/s")

    def close(self) -> None:
        self.progress.stop()
