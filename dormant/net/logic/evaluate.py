"""Evaluating a netlist: on every assignment of a frontier of signals, on a batch of inputs, and next
to the network it came from (``check_netlist``, the safety net of every reduction)."""

from __future__ import annotations

import numpy as np

from dormant.net.load.network import Network
from dormant.net.logic.netlist import ASSIGNMENTS, CONST0, CONST1, Netlist
from dormant.net.logic.simulate import forward


def eval_signals(nl: Netlist, targets: list[int], frontier: list[int]) -> dict[int, np.ndarray] | None:
    """Values of ``targets`` on every assignment of ``frontier`` (2**len rows), or None when a
    target depends on an input outside the frontier."""
    cols = ASSIGNMENTS[len(frontier)]
    memo: dict[int, np.ndarray] = {CONST0: np.zeros(cols.shape[0], np.int64), CONST1: np.ones(cols.shape[0], np.int64)}
    for j, s in enumerate(frontier):
        memo[s] = cols[:, j].astype(np.int64)

    def ev(s: int) -> np.ndarray | None:
        if s in memo:
            return memo[s]
        kind = nl.kind[s]
        if kind not in ("gate", "int"):
            return None
        vals = []
        for f in nl.fanins[s]:
            v = ev(f)
            if v is None:
                return None
            vals.append(v)
        memo[s] = node_value(nl, s, vals, cols.shape[0])
        return memo[s]

    out = {}
    for t in targets:
        v = ev(t)
        if v is None:
            return None
        out[t] = v
    return out


def node_value(nl: Netlist, s: int, vals: list[np.ndarray], n: int) -> np.ndarray:
    """A gate's (table look-up) or integer node's (affine + ReLU) value from its fanins' values."""
    if nl.kind[s] == "gate":
        idx = np.zeros(n, np.int64)
        for j, v in enumerate(vals):
            idx |= v << j
        return nl.table[s][idx].astype(np.int64)
    w, b = nl.affine[s]
    pre = np.full(n, b, dtype=np.int64)
    for wj, v in zip(w, vals):
        pre = pre + int(wj) * v
    return np.maximum(pre, 0)


def evaluate(nl: Netlist, values: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Evaluate every gate on a batch, given arrays for the inputs and cuts (signal -> (batch,) 0/1)."""
    batch = len(next(iter(values.values()))) if values else 1
    val: list[np.ndarray | None] = [None] * len(nl.kind)
    val[CONST0], val[CONST1] = np.zeros(batch, np.int64), np.ones(batch, np.int64)
    for s, v in values.items():
        val[s] = np.asarray(v, dtype=np.int64)
    for s in range(2, len(nl.kind)):
        if nl.kind[s] in ("gate", "int"):
            val[s] = node_value(nl, s, [val[f] for f in nl.fanins[s]], batch)
    return {s: v for s, v in enumerate(val) if v is not None}


def check_netlist(net: Network, nl: Netlist, x: np.ndarray) -> tuple[int, int]:
    """Run the network on a batch ``x`` and the netlist on the same cut/input values.

    Returns (number of signal-neuron pairs compared, number that disagree): every binary neuron
    of every layer is compared with the signal it was mapped to.
    """
    x = np.asarray(x, dtype=np.float64)
    _, acts = forward(net, x, record=True)
    vals_at = [x] + [acts[i] for i in range(len(net.layers))]
    given = {}
    for s in nl.inputs:
        v, n = nl.origin[s]
        given[s] = vals_at[v][:, n].astype(np.int64)
        if s in nl.input_bit:
            given[s] = (given[s] >> nl.input_bit[s]) & 1
    got = evaluate(nl, given)
    compared = bad = 0
    for v, sig in enumerate(nl.signal_of):
        for n in np.nonzero(sig >= 0)[0]:
            compared += 1
            bad += int(np.any(got[int(sig[n])] != vals_at[v][:, n]))
    return compared, bad
