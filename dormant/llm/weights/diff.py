"""Which base was this model fine-tuned from, and where did the weights change?

``diff_models(ft, [base1, base2, ...])`` compares a fine-tune against each candidate base,
tensor by tensor, streaming through memory maps (see ``checkpoint.py``):

1. tensors present in only one model are ``missing`` (in the fine-tune) or ``extra``; shapes that
   disagree are ``shape_mismatch``;
2. tensors stored with the same dtype are first compared as raw bytes (a memcmp of the mapped
   file ranges, no float maths): equal bytes -> ``identical``;
3. the rest are read in blocks of rows as float32 (FP8 dequantised) and reduced to the delta's
   Frobenius norm ``||W_ft - W_base||``, the relative norm ``||delta|| / ||W_base||`` and the
   largest absolute change; ``max_abs <= atol`` still counts as ``identical`` (useful when one
   side was re-saved in another dtype), anything else is ``modified``.

Tensors are processed by a thread pool (numpy and torch release the GIL), each in bounded row
blocks, so peak memory is a few blocks per worker whatever the model size.

The verdict ranks the candidates by the median relative change over the tensors they share with
the fine-tune (identical tensors count 0): the true base of a LoRA-style fine-tune has a median of
0 (most tensors byte-identical), of a full fine-tune about 1e-3; an unrelated model of the same
architecture scores about 1.4 (two independent random matrices). When even the best candidate has
a median above ``close_rel`` a warning says that the fine-tune may come from another base.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from dormant.errors import ArchitectureMismatch
from dormant.llm.checkpoint import FP8_BLOCK, Checkpoint, bytes_equal, open_checkpoint
from dormant.llm.weights.names import GROUP_ORDER, component_sort_key, parse_name

# Config keys that decide whether two checkpoints share one module structure.
CONFIG_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
               "num_attention_heads", "num_key_value_heads", "head_dim", "n_routed_experts", "moe_intermediate_size",
               "q_lora_rank", "kv_lora_rank", "tie_word_embeddings")
GLOBAL_ROW = "-"  # heatmap/table row of tensors without a layer index
DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))  # threads of diff and delta: one per core, at most 8


@dataclass
class DiffConfig:
    """Settings of ``diff_models``."""

    workers: int = DEFAULT_WORKERS  # threads comparing tensors in parallel
    atol: float = 0.0  # a tensor whose largest |change| is <= atol counts as identical
    chunk_elems: int = 1 << 22  # elements per row block read as float32 (bounds memory per worker)
    close_rel: float = 0.1  # median relative change above which no candidate is "close"


@dataclass
class TensorDiff:
    """One tensor's comparison against one base."""

    name: str
    status: str  # identical | modified | missing | extra | shape_mismatch
    component: str
    group: str
    layer: int | None
    shape: list[int] | None
    shape_base: list[int] | None = None
    dtype: str | None = None
    dtype_base: str | None = None
    byte_identical: bool = False
    delta_norm: float = 0.0
    base_norm: float = 0.0
    rel_norm: float = 0.0
    max_abs: float = 0.0


@dataclass
class Cell:
    """One (layer, component) cell of the per-layer table.

    ``rel_norm`` pools the cell's modified tensors (weights, biases, every expert):
    ``sqrt(sum ||delta||^2 / sum ||W_base||^2)``; ``modified`` of ``total`` tensors changed.
    """

    rel_norm: float
    modified: int
    total: int


@dataclass
class BaseComparison:
    """The fine-tune against one candidate base."""

    base: str
    path: str
    counts: dict[str, int]
    modified_by_group: dict[str, int]
    comparable: int  # tensors present in both with equal shapes
    median_rel: float  # median relative change over comparable tensors (identical = 0)
    total_delta_norm: float  # sqrt(sum ||delta||^2) over modified tensors
    total_rel_norm: float  # total_delta_norm / sqrt(sum ||W_base||^2) over comparable tensors
    findings: list[str]
    summary: str
    grid: dict[str, dict[str, Cell]]  # layer (str, or "-") -> component label -> Cell
    tensors: list[TensorDiff] = field(repr=False)

    @property
    def modified(self) -> list[TensorDiff]:
        return [t for t in self.tensors if t.status == "modified"]

    def rank_key(self) -> tuple:
        incomparable = self.comparable == 0
        frac = self.counts.get("modified", 0) / max(1, self.comparable)
        return (incomparable, self.median_rel, frac, self.total_rel_norm)


@dataclass
class DiffResult:
    """The verdict over all candidate bases and each comparison's detail."""

    ft: str
    comparisons: list[BaseComparison]
    best: str | None
    evidence: str
    warnings: list[str]

    def comparison(self, base: str) -> BaseComparison:
        for c in self.comparisons:
            if c.base == base:
                return c
        raise KeyError(base)


def _bytes_equal_released(ft: Checkpoint, base: Checkpoint, a: str, b: str, window: int = 1 << 24) -> bool:
    """Compare two tensors' raw bytes window by window, releasing each window's pages after use."""
    x, y = ft.raw_bytes(a), base.raw_bytes(b)
    if x.nbytes != y.nbytes:
        return False
    try:
        for i in range(0, x.nbytes, window):
            if not bytes_equal(x[i : i + window], y[i : i + window]):
                return False
            ft.release(a, i, i + window)
            base.release(b, i, i + window)
        return True
    finally:
        x.release()
        y.release()


def _raw_equal(ft: Checkpoint, base: Checkpoint, name: str) -> bool:
    if ft.dtype(name) != base.dtype(name):
        return False
    sf, sb = ft.scale_name(name), base.scale_name(name)
    if (sf is None) != (sb is None):
        return False
    if not _bytes_equal_released(ft, base, name, name):
        return False
    return sf is None or _bytes_equal_released(ft, base, sf, sb)


def delta_stats(ft: Checkpoint, base: Checkpoint, name: str, chunk_elems: int = 1 << 22) -> tuple[float, float, float]:
    """``(||W_ft - W_base||, ||W_base||, max |W_ft - W_base|)`` computed in bounded row blocks."""
    shape = ft.shape(name)
    rows = shape[0] if shape else 1
    row_elems = math.prod(shape[1:]) if len(shape) > 1 else max(1, math.prod(shape))
    step = rows if len(shape) < 2 else max(FP8_BLOCK, chunk_elems // max(1, row_elems) // FP8_BLOCK * FP8_BLOCK)
    d2 = b2 = 0.0
    mx = 0.0
    for start in range(0, rows, step):
        a = ft.rows(name, start, start + step)
        b = base.rows(name, start, start + step)
        d = a.sub_(b)
        ft.release(name)
        base.release(name)
        d2 += float(torch.linalg.vector_norm(d)) ** 2
        b2 += float(torch.linalg.vector_norm(b)) ** 2
        if d.numel():
            dn = d.numpy()  # numpy's max/min are several times faster than torch's inf-norm on CPU
            hi, lo = float(dn.max()), float(dn.min())
            mx = math.nan if math.isnan(mx) or math.isnan(hi) or math.isnan(lo) else max(mx, hi, -lo)
    return math.sqrt(d2), math.sqrt(b2), mx


def compare_tensor(ft: Checkpoint, base: Checkpoint, name: str, config: DiffConfig) -> TensorDiff:
    """Compare one tensor present in both checkpoints (shape check, byte fast path, float stats)."""
    info = parse_name(name)
    td = TensorDiff(name, "identical", info.component, info.group, info.layer, list(ft.shape(name)),
                    list(base.shape(name)), ft.dtype(name), base.dtype(name))
    if ft.shape(name) != base.shape(name):
        td.status = "shape_mismatch"
        return td
    if _raw_equal(ft, base, name):
        td.byte_identical = True
        return td
    dn, bn, mx = delta_stats(ft, base, name, config.chunk_elems)
    td.delta_norm, td.base_norm, td.max_abs = dn, bn, mx
    td.rel_norm = dn / bn if bn > 0 else (0.0 if dn == 0 else math.inf)
    if not (mx <= config.atol):  # NaN counts as modified
        td.status = "modified"
    return td


def config_findings(ft: Checkpoint, base: Checkpoint) -> list[str]:
    """Differences in the architecture keys of the two config.json files."""
    out = []
    for key in CONFIG_KEYS:
        a, b = ft.config.get(key), base.config.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"config {key} differs: {a} (fine-tune) vs {b} (base)")
    return out


def _grid(tensors: list[TensorDiff]) -> dict[str, dict[str, Cell]]:
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    for t in tensors:
        if t.status not in ("identical", "modified"):
            continue
        key = (GLOBAL_ROW if t.layer is None else str(t.layer), t.component)
        cell = acc[key]
        cell[0] += t.delta_norm**2
        cell[1] += t.base_norm**2 if t.status == "modified" else 0.0
        cell[2] += t.status == "modified"
        cell[3] += 1
    grid: dict[str, dict[str, Cell]] = defaultdict(dict)
    for (row, col), (d2, b2, nmod, tot) in acc.items():
        grid[row][col] = Cell(math.sqrt(d2 / b2) if b2 > 0 else 0.0, int(nmod), int(tot))
    order = sorted(grid, key=lambda r: (r == GLOBAL_ROW, int(r) if r != GLOBAL_ROW else 0))
    return {r: dict(sorted(grid[r].items(), key=lambda kv: component_sort_key(kv[0]))) for r in order}


def _group_phrase(by_group: dict[str, int], n_mod: int) -> str:
    if n_mod == 0:
        return "nothing modified"
    if len(by_group) == 1:
        return f"all {next(iter(by_group))}"
    return ", ".join(f"{g} {n}" for g, n in by_group.items())


def compare_base(ft: Checkpoint, base: Checkpoint, label: str, config: DiffConfig,
                 on_tensor: Callable[[], None] | None = None) -> BaseComparison:
    """Compare ``ft`` against one candidate ``base`` (see the module docstring)."""
    tensors: list[TensorDiff] = []
    shared = [n for n in ft.names if n in base]
    for n in ft.names:
        if n not in base:
            i = parse_name(n)
            tensors.append(TensorDiff(n, "extra", i.component, i.group, i.layer, list(ft.shape(n)), dtype=ft.dtype(n)))
    for n in base.names:
        if n not in ft:
            i = parse_name(n)
            tensors.append(TensorDiff(n, "missing", i.component, i.group, i.layer, None, list(base.shape(n)), dtype_base=base.dtype(n)))
    # largest first keeps the pool busy to the end
    shared.sort(key=lambda n: -ft.info(n).nbytes)

    def work(name: str) -> TensorDiff:
        td = compare_tensor(ft, base, name, config)
        if on_tensor:
            on_tensor()
        return td

    if config.workers > 1 and len(shared) > 1:
        with ThreadPoolExecutor(config.workers) as pool:
            tensors.extend(pool.map(work, shared))
    else:
        tensors.extend(map(work, shared))
    order = {n: i for i, n in enumerate(ft.names + [n for n in base.names if n not in ft])}
    tensors.sort(key=lambda t: order.get(t.name, len(order)))

    counts = Counter(t.status for t in tensors)
    comparable = [t for t in tensors if t.status in ("identical", "modified")]
    modified = [t for t in comparable if t.status == "modified"]
    by_group_c = Counter(t.group for t in modified)
    by_group = {g: by_group_c[g] for g in GROUP_ORDER if by_group_c.get(g)}
    # a change that is not a number (NaN or inf in a tensor) counts as the largest: the median stays an order statistic
    median_rel = statistics.median([t.rel_norm if math.isfinite(t.rel_norm) else math.inf for t in comparable]) if comparable else math.inf
    total = math.sqrt(sum(t.delta_norm**2 for t in modified))
    base_total = math.sqrt(sum((t.base_norm if t.status == "modified" else 0.0) ** 2 for t in comparable))
    findings = config_findings(ft, base)
    for status, what in (("missing", "tensors of the base are missing from the fine-tune"), ("extra", "tensors of the fine-tune are not in the base"),
                         ("shape_mismatch", "tensors have different shapes")):
        if counts.get(status):
            example = next(t for t in tensors if t.status == status)
            extra = f" ({example.shape} vs {example.shape_base})" if status == "shape_mismatch" else ""
            findings.append(f"{counts[status]} {what}, e.g. {example.name}{extra}")
    broken = [t for t in comparable if not math.isfinite(t.rel_norm)]
    if broken:
        findings.append(f"{len(broken)} tensors change by a non-finite amount (NaN or inf in the weights), e.g. {broken[0].name}: "
                        "counted as the largest changes")
    dtype_pairs = {(t.dtype, t.dtype_base) for t in comparable if t.dtype != t.dtype_base}
    if dtype_pairs:
        findings.append("stored dtypes differ (" + ", ".join(f"{a} vs {b}" for a, b in sorted(dtype_pairs)) + "): rounding alone changes values; consider --atol")
    if not comparable:
        findings.append("no tensor is comparable (no shared name with the same shape): a different architecture")
    summary = f"{len(modified)}/{len(comparable)} tensors modified ({_group_phrase(by_group, len(modified))})"
    if comparable:
        summary += f", median relative change {median_rel:.3g}"
    return BaseComparison(
        base=label, path=str(base.path), counts={k: counts.get(k, 0) for k in ("identical", "modified", "missing", "extra", "shape_mismatch")},
        modified_by_group=by_group, comparable=len(comparable), median_rel=median_rel, total_delta_norm=total,
        total_rel_norm=total / base_total if base_total > 0 else 0.0, findings=findings, summary=summary,
        grid=_grid(tensors), tensors=tensors,
    )


def verdict(comparisons: list[BaseComparison], close_rel: float) -> tuple[str | None, str, list[str]]:
    """Pick the most likely base and phrase the evidence; warn when no candidate is close."""
    warnings: list[str] = []
    ranked = sorted(comparisons, key=BaseComparison.rank_key)
    best = ranked[0]
    if best.comparable == 0:
        raise ArchitectureMismatch(
            "no candidate base shares any tensor (same name and shape) with the fine-tune: "
            + "; ".join(f"{c.base}: {c.findings[0] if c.findings else 'nothing comparable'}" for c in comparisons)
        )
    evidence = f"{best.base}: {best.summary}"
    for other in ranked[1:]:
        evidence += f"; vs {other.base}: {other.summary}" if other.comparable else f"; vs {other.base}: not comparable"
    if best.median_rel > close_rel:
        warnings.append(
            f"no candidate is close: even {best.base} changes the median tensor by {best.median_rel:.3g} of its norm "
            f"(a fine-tune moves weights by ~1e-3..1e-2); the fine-tune may be of another base"
        )
    if len(ranked) > 1 and ranked[1].comparable and ranked[1].rank_key()[1:3] == best.rank_key()[1:3]:
        warnings.append(f"{best.base} and {ranked[1].base} fit equally well (same tensors modified)")
    wider = max(ranked, key=lambda c: c.comparable)
    if wider.comparable > best.comparable:  # the ranking compares what each shares: a partial copy can look closer
        warnings.append(f"{best.base} is ranked on the {best.comparable} tensors it shares with the fine-tune, {wider.base} on "
                        f"{wider.comparable}: a candidate that shares fewer can look closer than the base it was cut from")
    for f in best.findings:
        warnings.append(f"{best.base}: {f}")
    return best.base, evidence, warnings


def diff_models(ft: str | Path | Checkpoint, bases: list[str | Path | Checkpoint], config: DiffConfig | None = None,
                on_tensor: Callable[[], None] | None = None) -> DiffResult:
    """Compare a fine-tune with each candidate base and pick the most likely one.

    ``ft`` and ``bases`` are folders, files, locally cached Hub ids or opened ``Checkpoint``s; each
    is labelled as it was named (``Checkpoint.source``). ``on_tensor`` is called after each tensor
    (for progress bars).
    """
    config = config or DiffConfig()
    if not bases:
        raise ValueError("diff_models needs at least one candidate base")
    ft_ck = ft if isinstance(ft, Checkpoint) else open_checkpoint(ft)
    comparisons = []
    for b in bases:
        b_ck = b if isinstance(b, Checkpoint) else open_checkpoint(b)
        comparisons.append(compare_base(ft_ck, b_ck, b_ck.source, config, on_tensor))
    best, evidence, warnings = verdict(comparisons, config.close_rel)
    return DiffResult(ft_ck.source, comparisons, best, evidence, warnings)
