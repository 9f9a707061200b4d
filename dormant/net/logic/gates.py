"""The gate alphabet of an integer ReLU circuit, and a census of how often each gate occurs.

With 0/1 inputs a ReLU neuron ``relu(w . x + b)`` is a threshold gate, and the few patterns that
hand-built circuits use have names:

==========  =======================  ===============================
name        neuron                   meaning on bits
==========  =======================  ===============================
wire        relu(a)                  copy
NOT         relu(1 - a)              negation
AND         relu(a + b + ... - (k-1)) all inputs 1
NOR         relu(1 - a - b - ...)     all inputs 0
AND-NOT     relu(a - b)              a and not b (more generally: p ones, q zeros)
OR          relu(a + b)              or, when the inputs exclude each other
XOR-fold    relu(a + b - 2 c)        a xor b, with c = AND(a, b) (folded XOR)
threshold   relu(sum - (t-1))        at least t of k inputs (majority when t = (k+1)/2)
decoder     integer inputs -> 0/1    e.g. a bit of a character code
count       0/1 inputs -> integer    a sum that is not a bit (counters, hat comparators)
arith       integer -> integer       other integer arithmetic
const       no inputs                a constant (the bias)
float       non-integer weights      not a logic gate at all
==========  =======================  ===============================

Grouping neurons by their exact ``(weights, bias)`` gives the *alphabet*; the census counts both.

Example::

    g = classify(net, propagate(net))
    census(g).shares["wire"]     # 0.77 on the public puzzle
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dormant.net.load.network import Network
from dormant.net.logic.bounds import Bounds, copy_rows

KINDS = ("wire", "NOT", "AND", "NOR", "AND-NOT", "OR", "XOR-fold", "threshold", "decoder", "count", "arith", "const", "float")


@dataclass
class GateMap:
    """Per layer: the gate kind of every neuron and the key of its (weights, bias) pattern."""

    kinds: list[list[str]]
    keys: list[list[tuple]]  # (bias, sorted weights) per neuron


@dataclass
class AlphabetEntry:
    kind: str
    weights: tuple[float, ...]
    bias: float
    count: int


@dataclass
class Census:
    neurons: int
    counts: dict[str, int]
    shares: dict[str, float]
    alphabet: list[AlphabetEntry] = field(default_factory=list)  # most frequent patterns first
    per_layer: list[dict[str, int]] = field(default_factory=list)


def rows(w, which=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input indices, weights) of every row (or of the rows ``which``) of a dense or sparse matrix."""
    which = range(w.shape[0]) if which is None else which
    if sp.issparse(w):
        w = w.tocsr()
        w.sort_indices()
        ind, dat, ptr = w.indices, w.data, w.indptr
        return [(ind[ptr[r] : ptr[r + 1]], dat[ptr[r] : ptr[r + 1]]) for r in which]
    w = np.asarray(w, dtype=np.float64)
    out = []
    for r in which:
        nz = np.nonzero(w[r])[0]
        out.append((nz, w[r, nz]))
    return out


def name_gate(weights: np.ndarray, bias: float, in_binary: bool, in_integer: bool, out_binary: bool, out_integer: bool) -> str:
    """Name one neuron's gate from its weights, bias and what its inputs and output are proven to be."""
    k = len(weights)
    if not out_integer:
        return "float"
    if k == 0:
        return "const"
    if not in_binary:
        return "decoder" if out_binary else "arith"
    if not out_binary:
        return "count"
    w = weights
    pos, neg = int((w == 1).sum()), int((w == -1).sum())
    if k == 1:
        if w[0] == 1 and bias == 0:
            return "wire"
        if w[0] == -1 and bias == 1:
            return "NOT"
    if pos == k and bias == -(k - 1):
        return "AND"
    if neg == k and bias == 1:
        return "NOR"
    if pos + neg == k and pos >= 1 and neg >= 1 and bias == -(pos - 1):
        return "AND-NOT"
    if pos == k and bias == 0:
        return "OR"
    if (w == -2).any() and pos + neg + int((w == -2).sum()) == k:
        return "XOR-fold"
    return "threshold"


def classify(net: Network, bounds: Bounds) -> GateMap:
    """Name every neuron's gate; copy wires are found per layer at once, the rest row by row."""
    binary, integer = bounds.binary, bounds.integer
    kinds, keys = [], []
    for i, layer in enumerate(net.layers):
        b = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        in_bin, in_int = binary[i], integer[i]
        out_bin, out_int = binary[i + 1], integer[i + 1]
        copies, _ = copy_rows(layer)
        lk: list[str] = ["wire"] * layer.out_features
        lkeys: list[tuple] = [(0.0, (1.0,))] * layer.out_features
        sel = np.nonzero(~copies)[0]
        for r, (idx, w) in zip(sel, rows(layer.weight, sel)):
            lk[r] = name_gate(w, float(b[r]), bool(in_bin[idx].all()), bool(in_int[idx].all()), bool(out_bin[r]), bool(out_int[r]))
            lkeys[r] = (float(b[r]), tuple(sorted(w.tolist())))
        kinds.append(lk), keys.append(lkeys)
    return GateMap(kinds, keys)


def census(gates: GateMap, top: int = 20) -> Census:
    """Counts and shares of each gate kind, the most frequent exact patterns, per-layer counts."""
    counts: Counter = Counter()
    patterns: Counter = Counter()
    kind_of: dict[tuple, str] = {}
    per_layer = []
    for lk, lkeys in zip(gates.kinds, gates.keys):
        c = Counter(lk)
        per_layer.append(dict(c))
        counts.update(c)
        for kind, key in zip(lk, lkeys):
            patterns[key] += 1
            kind_of[key] = kind
    n = sum(counts.values())
    ordered = {k: counts[k] for k in sorted(counts, key=lambda k: -counts[k])}
    alphabet = [AlphabetEntry(kind_of[key], key[1], key[0], cnt) for key, cnt in patterns.most_common(top)]
    return Census(n, ordered, {k: v / n for k, v in ordered.items()} if n else {}, alphabet, per_layer)
