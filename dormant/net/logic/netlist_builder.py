"""Building a reduced netlist from an integer ReLU network in one pass over its layers.

Every binary neuron becomes a signal: a constant, a primary input, a gate given by its truth table,
or a cut; copy wires, constants, unused inputs, duplicate gates, folded XORs and bits decoded from
character codes are reduced on the way (see ``decompile`` for the whole pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dormant.net.load.network import Network
from dormant.net.logic.bounds import Bounds, copy_rows, inputs_of
from dormant.net.logic.evaluate import eval_signals
from dormant.net.logic.gates import rows
from dormant.net.logic.netlist import ASSIGNMENTS, CONST0, MAX_VARS, Netlist, assignments


def _drop_unused(fanins: list[int], table: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Remove inputs the table does not depend on."""
    j = 0
    while j < len(fanins):
        t = table.reshape(-1, 2, 1 << j)
        if np.array_equal(t[:, 0, :], t[:, 1, :]):
            table = np.ascontiguousarray(t[:, 0, :]).ravel()
            fanins = fanins[:j] + fanins[j + 1 :]
        else:
            j += 1
    return fanins, table


def _gate_table(nl: Netlist, sigs: np.ndarray, w: np.ndarray, bias: float, max_vars: int) -> tuple[list[int], np.ndarray, bool] | None:
    """Truth table of ``relu(w . s + bias)`` over binary signals: (fanins, table, exact), or None.

    First over the distinct signals read, as independent variables; when that gives values other
    than 0/1 (a folded XOR reads ``a, b, AND(a, b)``; a full-adder sum reads integer counts), the
    frontier moves back: integer nodes are always replaced by their inputs, gates whose inputs
    are shared with the rest of the frontier too (up to two rounds). If no frontier makes the
    table boolean, the first usable one is taken with values above 1 clipped to 1 (``exact`` is
    False): those rows are input combinations the circuit never produces when the neuron is 0/1,
    as the bounds proved or the probes showed.
    """
    const = sigs < 2
    b = bias + float(w[const] @ sigs[const]) if const.any() else bias
    s_var, w_var = sigs[~const], w[~const]
    uniq, inv = np.unique(s_var, return_inverse=True)
    wu = np.bincount(inv, weights=w_var, minlength=uniq.size)
    keep = wu != 0
    uniq, wu = uniq[keep], wu[keep]
    targets = [int(s) for s in uniq]
    fallback = None
    if len(targets) <= max_vars and all(nl.kind[s] != "int" for s in targets):
        vals = np.maximum(ASSIGNMENTS[uniq.size] @ wu + b, 0.0)
        if np.all((vals == 0) | (vals == 1)):
            return targets, vals.astype(np.uint8), True
        fallback = (targets, np.minimum(vals, 1).astype(np.uint8), False)
    frontier = targets
    for _ in range(2):
        members = set(frontier)
        ints = [s for s in frontier if nl.kind[s] == "int"]
        gates = [s for s in frontier if nl.kind[s] == "gate"]
        below = {f for g in gates + ints for f in nl.fanins[g]}
        shared = [s for s in gates if set(nl.fanins[s]) & (members | (below - set(nl.fanins[s])))]
        expand = set(ints) | set(shared)  # unrelated gates: expanding them rarely makes a table boolean
        if not expand:
            break
        frontier = sorted((members - expand) | {f for s in expand for f in nl.fanins[s] if f >= 2})
        if any(nl.kind[s] == "int" for s in frontier):
            continue
        if len(frontier) > max_vars:
            break
        values = eval_signals(nl, targets, frontier)
        if values is None:
            break
        pre = sum(wu[j] * values[s] for j, s in enumerate(targets)) + b
        vals = np.maximum(pre, 0.0)
        if np.all((vals == 0) | (vals == 1)):
            return frontier, vals.astype(np.uint8), True
        if fallback is None:
            fallback = (frontier, np.minimum(vals, 1).astype(np.uint8), False)
    return fallback


def build_netlist(net: Network, bounds: Bounds, max_vars: int = MAX_VARS, max_int_range: int = 16) -> tuple[Netlist, dict[str, int]]:
    """One pass over the layers turning neurons into signals (see the module docstring).

    Every neuron first gets a *value number*: a copy wire takes its input's number, and neurons
    with the same bias reading the same numbers with the same weights share one. That merges
    duplicates everywhere, also among non-binary neurons (a byte carried by copy wires and decoded
    again at every step decodes to the same cut each time). Then each new binary value becomes a
    constant, input, cut or gate, and each small non-binary integer value an ``int`` node that
    gates may read through.
    """
    nl = Netlist()
    binary, integer = bounds.binary, bounds.integer
    stats = {"copies": 0, "duplicates": 0, "constants": 0, "simplified": 0, "gate_duplicates": 0, "cuts": 0, "unresolved": 0, "clipped": 0, "int_nodes": 0}
    vn_table: dict[tuple, int] = {}
    vn_signal: dict[int, int] = {}
    seen: dict[tuple, int] = {}
    n0 = binary[0].size
    graph = _ValueGraph(n0, {}, vn_signal, {}, bounds.integer[0])
    vn_prev = np.arange(n0, dtype=np.int64)
    next_vn = n0
    sig0 = np.full(n0, -1, np.int64)
    for n in np.nonzero(binary[0])[0]:
        sig0[n] = CONST0 + int(bounds.hi[0][n]) if bounds.lo[0][n] == bounds.hi[0][n] else nl.add("input", (), None, (0, int(n)))
        vn_signal[int(n)] = int(sig0[n])
    nl.signal_of.append(sig0)
    for i, layer in enumerate(net.layers):
        prev = nl.signal_of[-1]
        bias = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        out = np.full(layer.out_features, -1, np.int64)
        vn_out = np.zeros(layer.out_features, np.int64)
        bin_out, int_out, lo, hi = binary[i + 1], integer[i + 1], bounds.lo[i + 1], bounds.hi[i + 1]
        copies, col = copy_rows(layer)
        copies &= bounds.lo[i][col] >= 0  # relu(x) == x only for x >= 0
        vn_out[copies], out[copies] = vn_prev[col[copies]], prev[col[copies]]
        stats["copies"] += int(copies.sum())
        sel = np.nonzero(~copies)[0]
        for r, (idx, w) in zip(sel, rows(layer.weight, sel)):
            vins = vn_prev[idx]
            key = (layer.activation, float(bias[r]), tuple(sorted(zip(vins.tolist(), w.tolist()))))
            vn = vn_table.get(key)
            if vn is not None:
                vn_out[r] = vn
                out[r] = vn_signal.get(vn, -1)
                stats["duplicates"] += 1
                continue
            vn = vn_table[key] = next_vn
            graph.key[vn] = key
            next_vn += 1
            vn_out[r] = vn
            sig = _new_signal(nl, prev[idx], w, float(bias[r]), bool(bin_out[r]), bool(int_out[r]), lo[r], hi[r], (i + 1, r), max_vars, max_int_range, seen, stats)
            if sig == -2:  # reads non-boolean values: try to write it over the bits of the integer inputs
                sig = _through_inputs(nl, graph, key, (i + 1, r), max_vars, seen, stats)
            if sig >= 0:
                vn_signal[vn] = sig
            out[r] = sig
        nl.signal_of.append(out)
        vn_prev = vn_out
    nl.outputs = _boundary_outputs(net, nl)
    return nl, stats


def _new_signal(nl: Netlist, sigs: np.ndarray, w: np.ndarray, bias: float, is_bin: bool, is_int: bool, lo: float, hi: float, origin: tuple[int, int], max_vars: int, max_int_range: int, seen: dict, stats: dict) -> int:
    """The signal of a neuron that computes a new value (-1 when it has none)."""
    if is_int and lo == hi:
        stats["constants"] += 1
        return CONST0 + int(hi) if is_bin else -1
    if not is_bin:
        if is_int and hi - lo <= max_int_range and (sigs >= 0).all():
            stats["int_nodes"] += 1
            s = nl.add("int", tuple(int(x) for x in sigs), None, origin)
            nl.affine[s] = (w.astype(np.int64), int(bias))
            return s
        return -1
    if (sigs < 0).any():
        return -2
    got = _gate_table(nl, sigs, w, bias, max_vars)
    if got is None:
        stats["unresolved"] += 1
        return nl.add("cut", (), None, origin)
    return _add_gate(nl, got[0], got[1], got[2], origin, seen, stats)


def _add_gate(nl: Netlist, fanins: list[int], table: np.ndarray, exact: bool, origin: tuple[int, int], seen: dict, stats: dict) -> int:
    """Simplify a truth table (unused inputs, constants, plain wires), merge duplicates, add it."""
    fan, table = _drop_unused(fanins, table)
    if not exact:
        stats["clipped"] += 1
    if not fan:
        stats["constants"] += 1
        return CONST0 + int(table[0])
    if len(fan) == 1 and table[0] == 0 and table[1] == 1:
        stats["simplified"] += 1
        return fan[0]
    key = (tuple(fan), table.tobytes())
    if key in seen:
        stats["gate_duplicates"] += 1
        return seen[key]
    seen[key] = nl.add("gate", tuple(fan), table, origin)
    return seen[key]


@dataclass
class _ValueGraph:
    """Value numbers of the neurons built so far: ``key[vn] = (activation, bias, ((vn_in, w), ...))``;
    value numbers below ``n_inputs`` are the network inputs."""

    n_inputs: int
    key: dict[int, tuple]
    signal: dict[int, int]
    bits: dict[tuple[int, int], int]  # (input, bit) -> input signal
    integer_inputs: np.ndarray
    deps: dict[int, tuple | None] = field(default_factory=dict)  # vn -> (input bits, leaves) it depends on


def _cone_leaves(nl: Netlist, g: _ValueGraph, start: list[int], max_nodes: int) -> tuple[set[int], set[int]] | None:
    """Integer network inputs and boolean-signal value numbers under ``start`` (through
    non-boolean neurons), or None when the cone is too big or reaches a non-integer input."""
    leaves: set[int] = set()
    chars: set[int] = set()
    stack, visited, inner = list(start), set(), 0
    while stack:
        v = stack.pop()
        if v in visited:
            continue
        visited.add(v)
        s = g.signal.get(v, -1)
        if s >= 0 and nl.kind[s] != "int":
            leaves.add(v)
        elif v < g.n_inputs:
            if not g.integer_inputs[v]:
                return None
            chars.add(v)
        elif v in g.key and inner < max_nodes:
            inner += 1
            stack.extend(u for u, _ in g.key[v][2])
        else:
            return None
    return chars, leaves


def _cone_values(nl: Netlist, g: _ValueGraph, terms, bias: float, act: str, bits: list[tuple[int, int]], leaves: list[int]) -> np.ndarray:
    """``act(bias + sum w * value(u))`` on every assignment of the listed input bits and leaf
    signals (input bits not listed are 0)."""
    from dormant.net.logic.simulate import activate

    cols = assignments(len(bits) + len(leaves))
    memo: dict[int, np.ndarray] = {}
    for j, (v, b) in enumerate(bits):
        memo[v] = memo.get(v, 0.0) + cols[:, j] * 2.0**b
    for j, v in enumerate(leaves):
        s = g.signal[v]
        memo[v] = np.full(cols.shape[0], float(s)) if s < 2 else cols[:, len(bits) + j]

    def value(v: int) -> np.ndarray:
        if v not in memo:
            s = g.signal.get(v, -1)
            if v < g.n_inputs or (s >= 0 and nl.kind[s] != "int"):  # an input or leaf not listed: unused
                return np.full(cols.shape[0], float(s) if 0 <= s < 2 else 0.0)
            a, b, ts = g.key[v]
            memo[v] = activate(a, b + sum(w * value(u) for u, w in ts))
        return memo[v]

    return activate(act, bias + sum(w * value(u) for u, w in terms))


def _used(table: np.ndarray, k: int) -> list[int]:
    """Variables (0..k-1) a real-valued table depends on."""
    out = []
    for j in range(k):
        t = table.reshape(-1, 2, 1 << j)
        if not np.array_equal(t[:, 0, :], t[:, 1, :]):
            out.append(j)
    return out


def _term_deps(nl: Netlist, g: _ValueGraph, u: int, max_nodes: int, max_term_vars: int) -> tuple | None:
    """The input bits and boolean leaves value ``u`` really depends on (memoised), or None."""
    if u in g.deps:
        return g.deps[u]
    got = _cone_leaves(nl, g, [u], max_nodes)
    res = None
    if got is not None:
        tb = [(c, b) for c in sorted(got[0]) for b in range(8)]
        tl = sorted(got[1])
        if len(tb) + len(tl) <= max_term_vars:
            used = _used(_cone_values(nl, g, [(u, 1.0)], 0.0, "identity", tb, tl), len(tb) + len(tl))
            res = ({tb[j] for j in used if j < len(tb)}, {tl[j - len(tb)] for j in used if j >= len(tb)})
    g.deps[u] = res
    return res


def _through_inputs(nl: Netlist, g: _ValueGraph, key: tuple, origin: tuple[int, int], max_vars: int, seen: dict, stats: dict, max_nodes: int = 48, max_term_vars: int = 12) -> int:
    """A 0/1 neuron that reads non-boolean values (a bit decoded from a character code, a sum
    reading such bits): follow each input's cone through the non-boolean neurons down to the
    integer network inputs (8 bits each) and boolean signals, keep the bits each input really
    depends on, and if the neuron then depends on at most ``max_vars`` bits, write it as a gate
    over them. Otherwise it becomes a cut (a netlist input)."""
    act, bias, terms = key
    bits: set[tuple[int, int]] = set()
    leaves: set[int] = set()
    for u, _ in terms:
        got = _term_deps(nl, g, u, max_nodes, max_term_vars)
        if got is None:
            break
        bits |= got[0]
        leaves |= got[1]
        if len(bits) + len(leaves) > max_vars:
            break
    else:
        sb, sl = sorted(bits), sorted(leaves)
        out = _cone_values(nl, g, terms, bias, act, sb, sl)
        if np.all((out == 0) | (out == 1)):
            fan = []
            for v, b in sb:
                if (v, b) not in g.bits:
                    g.bits[(v, b)] = nl.add("input", (), None, (0, v))
                    nl.input_bit[g.bits[(v, b)]] = b
                fan.append(g.bits[(v, b)])
            fan += [g.signal[v] for v in sl]
            order = sorted(range(len(fan)), key=lambda i: fan[i])
            return _add_gate(nl, [fan[i] for i in order], _permute(out.astype(np.uint8), order), True, origin, seen, stats)
    stats["cuts"] += 1
    return nl.add("cut", (), None, origin)


def _permute(table: np.ndarray, order: list[int]) -> np.ndarray:
    """The table over the variables ``[old[order[0]], old[order[1]], ...]``."""
    k = len(order)
    if k <= 1 or order == sorted(order):
        return table
    t = table.reshape((2,) * k)  # axis a holds variable k - 1 - a
    return np.ascontiguousarray(t.transpose([k - 1 - order[k - 1 - a] for a in range(k)])).ravel()


def _boundary_outputs(net: Network, nl: Netlist) -> list[tuple[str, int]]:
    """Signals leaving the boolean region: the last layer's bits, and bits read by neurons that
    are not boolean (through integer nodes) or that became cuts."""
    outs: dict[int, str] = {}
    for n, s in enumerate(nl.signal_of[-1]):
        if s >= 2 and nl.kind[s] in ("gate", "input"):
            outs.setdefault(int(s), f"out{n}")
    cuts = np.array([s for s in nl.inputs if nl.kind[s] == "cut"], dtype=np.int64)
    for i, layer in enumerate(net.layers):
        prev, cur = nl.signal_of[i], nl.signal_of[i + 1]
        consumers = np.nonzero((cur < 0) | np.isin(cur, cuts))[0]
        if consumers.size == 0:
            continue
        stack = [int(prev[n]) for n in inputs_of(layer.weight, consumers)]
        while stack:
            s = stack.pop()
            if s >= 2 and nl.kind[s] in ("gate", "input"):
                outs.setdefault(s, nl.name(s))
            elif s >= 2 and nl.kind[s] == "int":
                stack.extend(nl.fanins[s])
    return [(name, s) for s, name in outs.items()]
