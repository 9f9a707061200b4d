"""Compile a ``Circuit`` into integer ``Linear`` + ``ReLU`` layers (a ``Network`` with CSR weights).

Layering is by depth. Each live node gets a level (inputs are level 0, the input vector):

* nodes built under ``Circuit.asap()`` sit at their earliest level (``1 + max(source levels)``);
* every other node sits as late as possible (``min(consumer levels) - 1``), so a value that is
  needed much later is carried in its compact form (a byte) rather than its expanded form;
* a group (the 32 constant lanes of one word) shares the earliest of its members' levels;
* the outputs sit on the last level.

A value that is read ``k`` levels after it is made is carried by ``k - 1`` *copy wires*
(identity neurons ``relu(x)``, exact because every carried value is non-negative). Lanes inside a
layer are ordered by node id, so words keep their bits together and constant lanes of one word
(a K table entry, an IV word) are adjacent with their bits in the biases.

Example::

    result = compile_circuit(circuit, adapter=InputAdapter("char_codes", 55))
    result.network.widths[:5], result.positions[node_id]   # -> (layer index, lane)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.zoo.net.circuit import Circuit


@dataclass
class CompileResult:
    network: Network
    levels: np.ndarray  # node id -> level (-1 when dead)
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # tapped node -> (layer index, lane)
    n_live: int = 0
    n_copies: int = 0


def _schedule(c: Circuit) -> tuple[np.ndarray, np.ndarray, int]:
    """Levels and last-use levels of every node (``-1`` for dead nodes), and the depth."""
    n = len(c.nodes)
    if not c.outputs:
        raise ValueError("circuit has no outputs; call set_outputs()")
    live = np.zeros(n, dtype=bool)
    stack = list(c.outputs)
    while stack:
        i = stack.pop()
        if live[i]:
            continue
        live[i] = True
        stack.extend(s for s in c.nodes[i].srcs if not live[s])
    asap = np.zeros(n, dtype=np.int64)
    for i, node in enumerate(c.nodes):
        if node.kind != "input" and live[i]:
            asap[i] = 1 + max((asap[s] for s in node.srcs), default=0)
    depth = int(max(asap[o] for o in c.outputs))
    level = np.full(n, -1, dtype=np.int64)
    first_use = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last_use = np.full(n, -1, dtype=np.int64)
    outs = set(c.outputs)
    for i in outs:
        first_use[i] = depth + 1
        last_use[i] = depth + 1
    for i in range(n - 1, -1, -1):
        if not live[i]:
            continue
        node = c.nodes[i]
        if node.kind == "input":
            level[i] = 0
        elif node.asap:
            level[i] = asap[i]
        elif node.group >= 0:
            if level[i] < 0:  # the group's last member: every consumer of the group is placed
                members = [m for m in c.groups[node.group] if live[m]]
                level[members] = min(first_use[m] for m in members) - 1
        else:
            level[i] = first_use[i] - 1
        for s in node.srcs:
            first_use[s] = min(first_use[s], level[i])
            last_use[s] = max(last_use[s], level[i])
    return level, last_use, depth


def compile_circuit(c: Circuit, adapter: InputAdapter | None = None, meta: dict | None = None) -> CompileResult:
    """Lay out ``c`` as a ``Network``: one ``Linear`` + ``ReLU`` per level, copy wires in between."""
    level, last_use, depth = _schedule(c)
    lanes: list[list[int]] = [[] for _ in range(depth + 1)]
    lanes[0] = list(range(c.n_inputs))
    for i in np.flatnonzero(level >= 0):
        for L in range(max(int(level[i]), 1), int(last_use[i])):
            lanes[L].append(int(i))
    layers: list[Layer] = []
    prev = np.asarray(lanes[0], dtype=np.int64)
    for L in range(1, depth + 1):
        ids = np.asarray(lanes[L], dtype=np.int64)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        bias = np.zeros(len(ids), dtype=np.float64)
        made_here = level[ids] == L
        copy_lanes = np.flatnonzero(~made_here)
        rows.append(copy_lanes)
        cols.append(np.searchsorted(prev, ids[copy_lanes]))
        vals.append(np.ones(len(copy_lanes)))
        g_rows, g_cols, g_vals = [], [], []
        for lane in np.flatnonzero(made_here):
            node = c.nodes[int(ids[lane])]
            bias[lane] = node.bias
            g_rows.extend([lane] * len(node.srcs))
            g_cols.extend(node.srcs)
            g_vals.extend(node.coefs)
        if g_rows:
            rows.append(np.asarray(g_rows, dtype=np.int64))
            cols.append(np.searchsorted(prev, np.asarray(g_cols, dtype=np.int64)))
            vals.append(np.asarray(g_vals, dtype=np.float64))
        r, k, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        w = sp.csr_matrix((v, (r, k)), shape=(len(ids), len(prev)))
        w.sort_indices()
        layers.append(Layer(weight=w, bias=bias, activation="relu", name=str(2 * (L - 1))))
        prev = ids
    # a tapped node may be carried across several layers: report the layer where it is made
    positions: dict[int, tuple[int, int]] = {}
    for i in {i for ids in c.taps.values() for i in ids}:
        L = max(int(level[i]), 1)
        if level[i] >= 0 and L < len(lanes) and i in lanes[L]:
            positions[i] = (L - 1, lanes[L].index(i))
    net = Network(layers=layers, adapter=adapter or InputAdapter(), fmt="compiled", meta=dict(meta or {}))
    copies = sum(len(lanes[L]) for L in range(1, depth + 1)) - int(np.sum(level >= 1))
    return CompileResult(network=net, levels=level, positions=positions, n_live=int(np.sum(level >= 0)), n_copies=copies)


def gate_census(net: Network) -> dict[str, int]:
    """Count neurons by gate shape: wire, NOT, AND, NOR, AND-NOT, threshold, const, other.

    A neuron's shape is its sorted input weights and its bias: wire ``(1,) b=0``, NOT ``(-1,) b=1``,
    AND ``(1,1) b=-1``, NOR ``(-1,-1) b=1``, AND-NOT ``(-1,1) b=0``, threshold ``(1,) b!=0``.
    "other" are neurons that read folded expressions (XORs, adder sums, comparator sums).
    """
    counts = dict.fromkeys(["wire", "other", "and", "const", "and-not", "nor", "not", "threshold"], 0)
    for layer in net.layers:
        w = sp.csr_matrix(layer.weight)
        bias = np.zeros(w.shape[0]) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        nnz = np.diff(w.indptr)
        first = np.where(nnz > 0, w.data[np.minimum(w.indptr[:-1], max(w.nnz - 1, 0))] if w.nnz else 0.0, 0.0)
        second = np.where(nnz > 1, w.data[np.minimum(w.indptr[:-1] + 1, max(w.nnz - 1, 0))] if w.nnz else 0.0, 0.0)
        lo, hi = np.minimum(first, second), np.maximum(first, second)
        one, two = nnz == 1, nnz == 2
        kinds = {
            "const": nnz == 0,
            "wire": one & (first == 1) & (bias == 0),
            "not": one & (first == -1) & (bias == 1),
            "threshold": one & (first == 1) & (bias != 0),
            "and": two & (lo == 1) & (hi == 1) & (bias == -1),
            "nor": two & (lo == -1) & (hi == -1) & (bias == 1),
            "and-not": two & (lo == -1) & (hi == 1) & (bias == 0),
        }
        named = np.zeros(len(nnz), dtype=bool)
        for name, mask in kinds.items():
            counts[name] += int(mask.sum())
            named |= mask
        counts["other"] += int((~named).sum())
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: -kv[1]))
