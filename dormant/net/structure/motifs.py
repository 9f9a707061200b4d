"""Motifs of a layer-width sequence: a grammar that regenerates it, its period, and its blocks.

Layers of a hand-built circuit repeat: one block of layers per round of the algorithm. Three views:

1. **Grammar** (``build_grammar``): Re-Pair with run-length rules. Repeatedly replace the most
   frequent adjacent pair of symbols by a new rule symbol, and every run ``X X ... X`` by a run rule
   ``X^k``, until no pair occurs twice. The start sequence plus the rules expand back to the exact
   input (checked on every build), so the grammar is a lossless, hierarchical description.
2. **Period** (``detect_period``): the fraction of positions ``i`` with ``w[i] == w[i + p]``; the
   dominant period is the smallest ``p`` scoring within 5% of the best. ``approximate_period``
   does the same with the widths' autocorrelation, for steps that repeat in shape only.
3. **Segmentation** (``segment``): for each phase, cut the sequence into blocks of ``p`` layers,
   take the per-position majority as the consensus block, and keep the longest run of consecutive
   blocks that differ from the consensus in at most ``tolerance`` positions. Among phases, prefer
   more blocks, then fewer distinct block variants, then fewer mismatches: the cut that explains
   the blocks with the fewest exceptions (remaining ties: the cut whose blocks end on the width
   that enters them, a state-to-state step). What precedes the run is the head, what follows the tail.
   Consecutive identical blocks form groups (``[A(42)]x32``), and the positions where group
   variants differ are reported.

Widths are counted per Linear layer: a ``puzzle_widths.txt``-style list (input width first, then
each Linear's output width) is ``Network.widths``; the motif sequence is ``widths[1:]``, so the
head/block/tail lengths add up to the number of Linear layers.

With weights (``content_by_position``), a short hash of each layer's weights and biases tells the
layers that repeat exactly in every block ("ROM") from those that vary (per-step constants).
"""

from __future__ import annotations

import hashlib
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from dormant.errors import NetworkFileError
from dormant.net.load.network import Network

# --------------------------------------------------------------------------------------------
# Width files
# --------------------------------------------------------------------------------------------


def read_widths(path: str | Path) -> list[int]:
    """Read comma- or whitespace-separated integer widths (input width first)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"{p}: cannot read widths ({exc})") from None
    tokens = [t for t in text.replace(",", " ").split() if t]
    widths = []
    for t in tokens:
        try:
            widths.append(int(t))
        except ValueError:
            raise NetworkFileError(f"{p}: width {t!r:.20} is not an integer; a widths file holds positive integers separated by commas or spaces") from None
    bad = next((i for i, w in enumerate(widths) if w <= 0), None)
    if bad is not None:
        raise NetworkFileError(f"{p}: width {widths[bad]} (entry {bad + 1}) is not positive; a widths file holds positive integers (input width, then layer widths)")
    if len(widths) < 2:
        raise NetworkFileError(f"{p}: a widths file needs at least two positive integers (input width, then layer widths)")
    return widths


# --------------------------------------------------------------------------------------------
# Grammar: Re-Pair with run-length rules
# --------------------------------------------------------------------------------------------


@dataclass
class Rule:
    kind: str  # "pair" (a b) or "run" (a repeated count times)
    a: int
    b: int  # second symbol of a pair, or the repeat count of a run


@dataclass
class Grammar:
    """Symbols ``< len(alphabet)`` are terminals (``alphabet[s]``); larger ones are rules."""

    alphabet: list[int]
    rules: dict[int, Rule]
    start: list[int]

    def is_terminal(self, s: int) -> bool:
        return s < len(self.alphabet)

    def length(self, s: int, _memo: dict[int, int] | None = None) -> int:
        """Number of terminals a symbol expands to."""
        memo = _memo if _memo is not None else {}
        order = [s]
        while order:  # iterative post-order (rules can nest deeply)
            cur = order[-1]
            if cur in memo or self.is_terminal(cur):
                memo.setdefault(cur, 1)
                order.pop()
                continue
            r = self.rules[cur]
            kids = [r.a] if r.kind == "run" else [r.a, r.b]
            todo = [k for k in kids if k not in memo and not self.is_terminal(k)]
            if todo:
                order.extend(todo)
                continue
            memo[cur] = memo.get(r.a, 1) * r.b if r.kind == "run" else memo.get(r.a, 1) + memo.get(r.b, 1)
            order.pop()
        return memo[s]

    def expand(self, s: int) -> list[int]:
        """The terminal values a symbol stands for (explicit stack, no recursion)."""
        out, stack = [], [s]
        while stack:
            cur = stack.pop()
            if self.is_terminal(cur):
                out.append(self.alphabet[cur])
                continue
            r = self.rules[cur]
            stack.extend([r.a] * r.b if r.kind == "run" else [r.b, r.a])
        return out

    def expand_all(self) -> list[int]:
        return [v for s in self.start for v in self.expand(s)]

    def uses(self) -> Counter:
        """How many times each rule occurs in the fully unfolded derivation."""
        counts: Counter = Counter()
        stack = [(s, 1) for s in self.start]
        while stack:
            s, mult = stack.pop()
            if self.is_terminal(s):
                continue
            counts[s] += mult
            r = self.rules[s]
            if r.kind == "run":
                stack.append((r.a, mult * r.b))
            else:
                stack.extend([(r.a, mult), (r.b, mult)])
        return counts


def _collapse_runs(seq: list[int], cut: list[bool], runs: dict[tuple[int, int], int], rules: dict[int, Rule], next_sym: int) -> tuple[list[int], list[bool], int]:
    """Replace runs ``X X X...`` (3 or more) by run rules; a run may cross segment cuts only when
    each of its elements is a whole segment."""
    out, out_cut, i, n = [], [], 0, len(seq)
    while i < n:
        j = i
        while j + 1 < n and seq[j + 1] == seq[i]:
            j += 1
        inner_cuts = [cut[t] for t in range(i + 1, j + 1)]
        whole_segments = all(inner_cuts) and cut[i] and (j + 1 == n or cut[j + 1])
        k = j - i + 1
        if k >= 3 and (not any(inner_cuts) or whole_segments):
            key = (seq[i], k)
            if key not in runs:
                runs[key] = next_sym
                rules[next_sym] = Rule("run", seq[i], k)
                next_sym += 1
            out.append(runs[key])
            out_cut.append(cut[i])
            i = j + 1
        else:
            out.append(seq[i])
            out_cut.append(cut[i])
            i += 1
    return out, out_cut, next_sym


def _pair_counts(seq: list[int], cut: list[bool]) -> tuple[Counter, dict[tuple[int, int], int]]:
    """Non-overlapping pair counts (``a a a`` holds one ``(a, a)``) and first positions; pairs
    never straddle a segment cut."""
    counts: Counter = Counter()
    first: dict[tuple[int, int], int] = {}
    last_end: dict[tuple[int, int], int] = {}
    for i in range(len(seq) - 1):
        if cut[i + 1]:
            continue
        pair = (seq[i], seq[i + 1])
        if last_end.get(pair, -1) > i:
            continue
        counts[pair] += 1
        first.setdefault(pair, i)
        last_end[pair] = i + 2
    return counts, first


def build_grammar(values: list[int], cuts: list[int] | None = None) -> Grammar:
    """Re-Pair with run-length rules over ``values``; raises if the grammar fails to round-trip.

    ``cuts`` are positions where a segment starts (e.g. block boundaries): no pair rule spans
    one, so rules align with segments and identical blocks become one symbol (then a run).
    """
    alphabet = sorted(set(values))
    index = {v: i for i, v in enumerate(alphabet)}
    seq = [index[v] for v in values]
    cut_set = set(cuts or ())
    cut = [i in cut_set for i in range(len(seq))]
    rules: dict[int, Rule] = {}
    runs: dict[tuple[int, int], int] = {}
    next_sym = len(alphabet)
    while True:
        seq, cut, next_sym = _collapse_runs(seq, cut, runs, rules, next_sym)
        counts, first = _pair_counts(seq, cut)
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -first[p]))
        if counts[best] < 2:
            break
        sym, next_sym = next_sym, next_sym + 1
        rules[sym] = Rule("pair", *best)
        out, out_cut, i = [], [], 0
        while i < len(seq):
            if i + 1 < len(seq) and not cut[i + 1] and (seq[i], seq[i + 1]) == best:
                out.append(sym)
                i += 2
            else:
                out.append(seq[i])
                i += 1
            out_cut.append(cut[i - 1] if out[-1] != sym else cut[i - 2])
        seq, cut = out, out_cut
    grammar = Grammar(alphabet=alphabet, rules=rules, start=seq)
    if grammar.expand_all() != list(values):
        raise RuntimeError("grammar does not reproduce its input (bug)")
    return grammar


def format_grammar(g: Grammar, max_rules: int = 20) -> list[str]:
    """Readable lines: the start sequence (runs as ``[R]xk``), then the largest rules with counts."""
    names = {s: f"R{i}" for i, s in enumerate(sorted(g.rules, key=lambda s: -g.length(s)))}
    memo: dict[int, int] = {}

    def show(s: int) -> str:
        if g.is_terminal(s):
            return str(g.alphabet[s])
        r = g.rules[s]
        return f"[{show(r.a)}]x{r.b}" if r.kind == "run" else names[s]

    uses = g.uses()
    lines = ["start: " + " ".join(show(s) for s in g.start)]
    for s in sorted(g.rules, key=lambda s: -g.length(s, memo))[:max_rules]:
        r = g.rules[s]
        body = f"[{show(r.a)}]x{r.b}" if r.kind == "run" else f"{show(r.a)} {show(r.b)}"
        lines.append(f"{names[s]} = {body}   ({g.length(s, memo)} layers, used {uses[s]}x)")
    if len(g.rules) > max_rules:
        lines.append(f"... {len(g.rules) - max_rules} smaller rules")
    return lines


# --------------------------------------------------------------------------------------------
# Period and segmentation
# --------------------------------------------------------------------------------------------


def period_scores(seq: list[int], max_period: int | None = None) -> dict[int, float]:
    """``p -> fraction of i with seq[i] == seq[i + p]`` for periods that fit at least 3 times."""
    a = np.asarray(seq)
    n = len(a)
    top = max_period or n // 3
    return {p: float(np.mean(a[:-p] == a[p:])) for p in range(2, max(2, top) + 1) if n - p > 0}


def detect_period(seq: list[int], max_period: int | None = None) -> tuple[int | None, float]:
    """The dominant period (smallest within 5% of the best score) and its score."""
    scores = period_scores(seq, max_period)
    if not scores:
        return None, 0.0
    best = max(scores.values())
    if best < 0.25:
        return None, best
    p = min(q for q, s in scores.items() if s >= 0.95 * best)
    return p, scores[p]


def approximate_period(seq: list[int], max_period: int | None = None) -> tuple[int | None, float]:
    """The period of widths that repeat in shape but not exactly: the smallest lag whose Pearson
    autocorrelation is within 5% of the best (e.g. hash steps whose widths drift with constant
    folding). Returns (None, best) when nothing correlates above 0.5."""
    a = np.asarray(seq, dtype=np.float64)
    n = len(a)
    top = max_period or n // 3
    corr = {}
    for p in range(2, max(2, top) + 1):
        x, y = a[:-p], a[p:]
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            corr[p] = float(np.corrcoef(x, y)[0, 1])
    if not corr:
        return None, 0.0
    best = max(corr.values())
    if best < 0.5:
        return None, best
    p = min(q for q, c in corr.items() if c >= 0.95 * best)
    return p, corr[p]


@dataclass
class BlockGroup:
    label: str  # "A", "B", ...
    variant: int  # index into Segmentation.variants
    start_block: int
    count: int


@dataclass
class PhaseCandidate:
    """One way to cut the blocks (a phase), with the numbers that ranked it."""

    head: int
    n_blocks: int
    variants: int
    mismatches: int
    closed: bool
    _key: tuple = ()


@dataclass
class Segmentation:
    period: int
    head: int  # layers before the first block
    n_blocks: int
    tail: int  # layers after the last block
    consensus: list[int]
    variants: list[list[int]]  # distinct blocks, in order of first appearance
    groups: list[BlockGroup]
    differ_at: list[int]  # positions in the period where variants differ
    mismatches: int  # total block-vs-consensus mismatches
    alternatives: list[PhaseCandidate] = field(default_factory=list)  # the next-best cuts, best first

    @property
    def layers(self) -> int:
        return self.head + self.n_blocks * self.period + self.tail

    def block_start(self, j: int) -> int:
        return self.head + j * self.period


def segment(seq: list[int], period: int, tolerance: int | None = None, input_width: int | None = None) -> Segmentation | None:
    """Head / blocks / tail of ``seq`` for ``period`` (see module docstring for the choice of phase).

    ``input_width`` (the network's input width) breaks ties between equally good phases: the cut
    whose blocks map the width entering them onto itself wins.
    """
    n = len(seq)
    tol = max(1, (3 * period) // 10) if tolerance is None else tolerance
    best_key, best = None, None
    candidates: list[PhaseCandidate] = []
    for phase in range(period):
        k = (n - phase) // period
        if k < 2:
            continue
        blocks = np.asarray([seq[phase + j * period : phase + (j + 1) * period] for j in range(k)])
        consensus = np.asarray([Counter(col.tolist()).most_common(1)[0][0] for col in blocks.T])
        mism = (blocks != consensus).sum(axis=1)
        ok = mism <= tol
        run_start, run_len, cur_start = 0, 0, None
        for j in range(k + 1):
            if j < k and ok[j]:
                cur_start = j if cur_start is None else cur_start
            elif cur_start is not None:
                if j - cur_start > run_len:
                    run_start, run_len = cur_start, j - cur_start
                cur_start = None
        if run_len < 2:
            continue
        chosen = blocks[run_start : run_start + run_len]
        n_variants = len({tuple(b) for b in chosen.tolist()})
        head = phase + run_start * period
        entering = seq[head - 1] if head > 0 else input_width
        closed = entering == int(consensus[-1])  # the block maps the width handed to it onto itself
        key = (run_len, -n_variants, -int(mism[run_start : run_start + run_len].sum()), closed, -phase)
        candidates.append(PhaseCandidate(head=head, n_blocks=run_len, variants=n_variants, mismatches=-key[2], closed=closed, _key=key))
        if best_key is None or key > best_key:
            best_key, best = key, (phase + run_start * period, chosen, consensus, int(mism[run_start : run_start + run_len].sum()))
    if best is None:
        return None
    head, chosen, consensus, total_mism = best
    variants: list[list[int]] = []
    index: dict[tuple, int] = {}
    groups: list[BlockGroup] = []
    for j, block in enumerate(chosen.tolist()):
        key = tuple(block)
        if key not in index:
            index[key] = len(variants)
            variants.append(block)
        v = index[key]
        if groups and groups[-1].variant == v:
            groups[-1].count += 1
        else:
            groups.append(BlockGroup(label="", variant=v, start_block=j, count=1))
    for g in groups:
        g.label = _label(g.variant)
    differ = [q for q in range(period) if len({v[q] for v in variants}) > 1]
    n_blocks = len(chosen)
    candidates.sort(key=lambda c: c._key, reverse=True)
    return Segmentation(
        period=period, head=head, n_blocks=n_blocks, tail=n - head - n_blocks * period, consensus=[int(c) for c in consensus],
        variants=variants, groups=groups, differ_at=differ, mismatches=total_mism, alternatives=candidates[1:4],
    )


def _label(i: int) -> str:
    letters = string.ascii_uppercase
    return letters[i] if i < 26 else f"V{i}"


def describe_segmentation(seg: Segmentation) -> str:
    """``head(17) [A(42)]x32 [B(42)]x16 [C(42)]x15 tail(58)``."""
    parts = [f"head({seg.head})"] if seg.head else []
    parts += [f"[{g.label}({seg.period})]x{g.count}" for g in seg.groups]
    if seg.tail:
        parts.append(f"tail({seg.tail})")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Layer contents by position in the period
# --------------------------------------------------------------------------------------------


def _digest(a: np.ndarray | None) -> str:
    if a is None:
        return "none"
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    return hashlib.blake2b(str(arr.shape).encode() + arr.tobytes(), digest_size=8).hexdigest()


def layer_hashes(net: Network) -> list[tuple[str, str]]:
    """(weight hash, bias hash) per layer; equal hashes mean equal contents (as float64)."""
    from dormant.report.console import track

    out = []
    for layer in track(net.layers, "hashing layers"):
        w = layer.weight
        if sp.issparse(w):
            csr = sp.csr_matrix(w)
            csr.sum_duplicates()
            csr.sort_indices()
            csr.eliminate_zeros()
            wh = _digest(np.concatenate([[float(s) for s in csr.shape], csr.indptr.astype(np.float64), csr.indices.astype(np.float64), csr.data.astype(np.float64)]))
        else:
            wh = _digest(w)
        out.append((wh, _digest(layer.bias)))
    return out


@dataclass
class PositionContent:
    position: int  # within the period
    width: int  # consensus width at this position
    distinct_weights: int  # across blocks
    distinct_biases: int
    kind: str  # "ROM", "biases vary", "weights vary", "both vary"


def content_by_position(hashes: list[tuple[str, str]], seg: Segmentation) -> list[PositionContent]:
    """For each position in the period: how many different weight/bias contents the blocks hold."""
    rows = []
    for q in range(seg.period):
        idx = [seg.block_start(j) + q for j in range(seg.n_blocks)]
        dw = len({hashes[i][0] for i in idx})
        db = len({hashes[i][1] for i in idx})
        kind = "ROM" if dw == db == 1 else "both vary" if dw > 1 and db > 1 else "weights vary" if dw > 1 else "biases vary"
        rows.append(PositionContent(position=q, width=seg.consensus[q], distinct_weights=dw, distinct_biases=db, kind=kind))
    return rows


# --------------------------------------------------------------------------------------------
# The whole analysis
# --------------------------------------------------------------------------------------------


@dataclass
class MotifsConfig:
    max_period: int | None = None  # largest period tried (default: a third of the layers)
    tolerance: int | None = None  # mismatching positions allowed per block (default 30% of the period, at least 1)
    max_rules: int = 20  # grammar rules printed


@dataclass
class MotifsResult:
    n_layers: int
    input_width: int | None
    summary: str  # head(17) [A(42)]x32 ... tail(58)
    period: int | None
    period_score: float
    segmentation: Segmentation | None
    grammar_rules: int
    grammar_start_length: int
    grammar_lines: list[str]
    round_trip: bool
    covers_all_layers: bool
    coverage: float = 0.0  # fraction of layers inside the blocks
    approx_period: int | None = None  # period of the widths' shape (autocorrelation), exact or not
    approx_score: float = 0.0
    explanation: list[str] = field(default_factory=list)
    positions: list[PositionContent] | None = None  # per-position contents (when weights are given)


def analyse_motifs(widths: list[int], config: MotifsConfig | None = None, net: Network | None = None) -> MotifsResult:
    """Grammar, period and segmentation of ``widths`` (input width first), plus layer contents of ``net``."""
    config = config or MotifsConfig()
    seq = list(widths[1:])
    period, score = detect_period(seq, config.max_period)
    seg = segment(seq, period, config.tolerance, input_width=widths[0]) if period else None
    cuts = [seg.block_start(j) for j in range(seg.n_blocks + 1)] if seg else None
    grammar = build_grammar(seq, cuts)
    round_trip = grammar.expand_all() == seq
    summary = describe_segmentation(seg) if seg else f"no dominant period; grammar of {len(grammar.rules)} rules"
    explanation = [f"{len(widths)} widths = input width {widths[0]} + {len(seq)} layer output widths; segments count layers."]
    if seg:
        explanation.append(
            f"head = layers 1-{seg.head}, {seg.n_blocks} blocks of {seg.period} = layers {seg.head + 1}-{seg.head + seg.n_blocks * seg.period}, "
            f"tail = layers {seg.head + seg.n_blocks * seg.period + 1}-{len(seq)}: {seg.head} + {seg.n_blocks}x{seg.period} + {seg.tail} = {seg.layers}."
        )
        if seg.alternatives:
            alts = "; ".join(f"head {a.head}: {a.n_blocks} blocks, {a.variants} variants, {a.mismatches} mismatches" for a in seg.alternatives)
            explanation.append(f"cut chosen: {seg.n_blocks} blocks with {len(seg.variants)} variants and {seg.mismatches} mismatching widths; next best cuts: {alts}.")
        coverage = seg.n_blocks * seg.period / len(seq)
        if coverage < 0.5:
            explanation.append(
                f"the blocks cover only {coverage:.0%} of the layers: the widths are only partly periodic "
                f"(period score {score:.2f}); the grammar's repeated rules show the other motifs."
            )
        if len(seg.variants) > 1:
            for q in seg.differ_at:
                values = ", ".join(f"{_label(i)}={v[q]}" for i, v in enumerate(seg.variants))
                explanation.append(f"position {q} of the block differs between variants: {values}")
    approx, approx_score = approximate_period(seq, config.max_period)
    if approx is not None and approx != period:
        explanation.append(f"the widths' shape repeats every {approx} layers (autocorrelation {approx_score:.2f}), though not exactly: steps whose widths drift.")
    positions = content_by_position(layer_hashes(net), seg) if (net is not None and seg is not None) else None
    return MotifsResult(
        n_layers=len(seq), input_width=widths[0] if widths else None, summary=summary, period=period, period_score=score,
        segmentation=seg, grammar_rules=len(grammar.rules), grammar_start_length=len(grammar.start),
        grammar_lines=format_grammar(grammar, config.max_rules), round_trip=round_trip,
        covers_all_layers=(seg.layers == len(seq)) if seg else round_trip, explanation=explanation, positions=positions,
        coverage=(seg.n_blocks * seg.period / len(seq)) if seg and seq else 0.0, approx_period=approx, approx_score=approx_score,
    )
