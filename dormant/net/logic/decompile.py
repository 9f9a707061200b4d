"""Decompile an integer ReLU network into a reduced boolean netlist, and export it.

Pipeline (each step is a plain function):

1. ``propagate`` (``bounds``) proves which neurons only take 0/1 values.
2. ``build_netlist`` walks the layers once. Every binary neuron becomes a *signal*: a constant, a
   primary input (0/1 network inputs, or the 8 bits of an integer input such as a character
   code), a gate given by its truth table over the signals it reads, or a *cut* (a bit computed
   from non-binary values that could not be written over at most ``max_vars`` bits: the netlist
   takes it as an input). While walking it applies the classic reductions:

   * copy wires ``relu(a)`` become aliases of ``a`` (77% of the public puzzle's neurons);
   * constants are propagated into the truth tables that read them;
   * inputs a gate does not depend on are dropped;
   * duplicate gates (same table over the same signals) are merged (structural hashing);
   * folded XORs ``relu(a + b - 2c)``, not boolean over independent inputs, are expanded one level
     (``c = AND(a, b)``) and become an XOR of ``a`` and ``b``; full-adder sums read through their
     small integer neurons the same way;
   * a bit decoded from a character code is followed down to the code's bits (only the bits it
     depends on are kept), so the netlist starts from input bits where it can.

   A neuron proven (or, with probes, assumed) 0/1 whose table over independent inputs has values
   above 1 is written with those rows clipped to 1: they are input combinations the circuit never
   produces. ``check_netlist`` is the safety net for that and for every assumption.

3. ``live_cone`` keeps only what the outputs depend on; ``to_aig`` turns the tables into an
   AND-inverter graph; ``write_aiger`` / ``write_dot`` / ``netlist_json`` export it.

The netlist's outputs are the binary signals that leave the boolean region: the network's 0/1
outputs, and the bits read by non-binary neurons (for a hash network: the digest bits read by the
comparator). ``check_netlist`` evaluates the netlist next to the network and compares them.

Example::

    res = decompile(net)
    res.stages            # neurons -> copies removed -> duplicates merged -> ... -> AIG ANDs
    write_aiger(res.aig, "circuit.aag")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dormant.net.logic.bounds import Bounds, BoundsConfig, copy_rows, inputs_of, propagate
from dormant.net.logic.gates import Census, census, classify, rows
from dormant.net.load.network import Network
from dormant.net.logic.simulate import activate, forward

CONST0, CONST1 = 0, 1
MAX_VARS = 12  # widest truth table built for one gate


@dataclass
class DecompileConfig:
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    max_vars: int = MAX_VARS
    census_top: int = 20


@dataclass
class Netlist:
    """Signals 0 and 1 are the constants; every other signal is an input, a cut or a gate.

    ``int`` nodes are small non-binary integer neurons (a full adder's ``relu(a+b+c)``) that gates
    are evaluated through; they are not part of the boolean netlist itself.
    ``table[s]`` is the gate's truth table (uint8, length ``2**k``; row ``sum(bit_j << j)`` over
    ``fanins[s]``), ``origin[s]`` the (value index, neuron) that first produced it (value index 0 is
    the network input, ``i + 1`` the output of layer ``i``), ``signal_of[v][n]`` the signal of
    neuron ``n`` at value index ``v`` (-1: not boolean).
    """

    kind: list[str] = field(default_factory=lambda: ["const", "const"])
    fanins: list[tuple[int, ...]] = field(default_factory=lambda: [(), ()])
    table: list[np.ndarray | None] = field(default_factory=lambda: [None, None])
    origin: list[tuple[int, int]] = field(default_factory=lambda: [(-1, -1), (-1, -1)])
    affine: dict[int, tuple[np.ndarray, int]] = field(default_factory=dict)  # int nodes: weights, bias
    input_bit: dict[int, int] = field(default_factory=dict)  # input signal -> bit k of an integer input
    signal_of: list[np.ndarray] = field(default_factory=list)
    outputs: list[tuple[str, int]] = field(default_factory=list)  # (name, signal)

    def add(self, kind: str, fanins: tuple[int, ...], table: np.ndarray | None, origin: tuple[int, int]) -> int:
        self.kind.append(kind), self.fanins.append(fanins), self.table.append(table), self.origin.append(origin)
        return len(self.kind) - 1

    @property
    def inputs(self) -> list[int]:
        return [s for s, k in enumerate(self.kind) if k in ("input", "cut")]

    @property
    def gates(self) -> list[int]:
        return [s for s, k in enumerate(self.kind) if k == "gate"]

    def name(self, s: int) -> str:
        if s < 2:
            return str(s)
        v, n = self.origin[s]
        if s in self.input_bit:
            return f"x{n}.b{self.input_bit[s]}"
        return f"x{n}" if v == 0 else f"L{v - 1}.{n}"


@dataclass
class DecompileResult:
    is_logic: bool
    verdict: str
    stages: dict[str, int]  # name -> count, in pipeline order
    census: Census
    netlist: Netlist | None
    bounds_counts: dict[str, int]
    evidence: dict[str, float] = field(default_factory=dict)  # why (not) a logic circuit
    cuts: int = 0
    unresolved: int = 0  # binary neurons that could not be written as a gate (became cuts)
    notes: list[str] = field(default_factory=list)
    aig: "AIG | None" = None
    stats: dict[str, int] = field(default_factory=dict)  # counters of the netlist builder


# ----------------------------------------------------------------------------- truth tables


def _assignments(k: int) -> np.ndarray:
    """(2**k, k) matrix of 0/1: row r holds the bits of r, column j is bit j."""
    r = np.arange(1 << k)
    return ((r[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)


_ASSIGN = [_assignments(k) for k in range(MAX_VARS + 1)]


def _assign(k: int) -> np.ndarray:
    return _ASSIGN[k] if k < len(_ASSIGN) else _assignments(k)


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


def eval_signals(nl: Netlist, targets: list[int], frontier: list[int]) -> dict[int, np.ndarray] | None:
    """Values of ``targets`` on every assignment of ``frontier`` (2**len rows), or None when a
    target depends on an input outside the frontier."""
    cols = _ASSIGN[len(frontier)]
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
        memo[s] = _node_value(nl, s, vals, cols.shape[0])
        return memo[s]

    out = {}
    for t in targets:
        v = ev(t)
        if v is None:
            return None
        out[t] = v
    return out


def _node_value(nl: Netlist, s: int, vals: list[np.ndarray], n: int) -> np.ndarray:
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
        vals = np.maximum(_ASSIGN[uniq.size] @ wu + b, 0.0)
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


# ----------------------------------------------------------------------------- netlist


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

    cols = _assign(len(bits) + len(leaves))
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


def live_cone(nl: Netlist) -> set[int]:
    """Signals the outputs depend on."""
    live: set[int] = set()
    stack = [s for _, s in nl.outputs]
    while stack:
        s = stack.pop()
        if s in live:
            continue
        live.add(s)
        stack.extend(nl.fanins[s])
    return live


def evaluate(nl: Netlist, values: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Evaluate every gate on a batch, given arrays for the inputs and cuts (signal -> (batch,) 0/1)."""
    batch = len(next(iter(values.values()))) if values else 1
    val: list[np.ndarray | None] = [None] * len(nl.kind)
    val[CONST0], val[CONST1] = np.zeros(batch, np.int64), np.ones(batch, np.int64)
    for s, v in values.items():
        val[s] = np.asarray(v, dtype=np.int64)
    for s in range(2, len(nl.kind)):
        if nl.kind[s] in ("gate", "int"):
            val[s] = _node_value(nl, s, [val[f] for f in nl.fanins[s]], batch)
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


# ----------------------------------------------------------------------------- AIG and exports


@dataclass
class AIG:
    """An and-inverter graph: literal ``2*v + negated``; variables 1..I are inputs, then ANDs."""

    n_inputs: int
    ands: list[tuple[int, int]]  # for variable I+1+j: (rhs0, rhs1)
    outputs: list[int]
    input_names: list[str]
    output_names: list[str]


def to_aig(nl: Netlist, live: set[int] | None = None) -> AIG:
    """Shannon-decompose each live gate's truth table into ANDs, with structural hashing."""
    live = live_cone(nl) if live is None else live
    inputs = [s for s in nl.inputs if s in live]
    lit: dict[int, int] = {CONST0: 0, CONST1: 1}
    for j, s in enumerate(inputs):
        lit[s] = 2 * (j + 1)
    ands: list[tuple[int, int]] = []
    strash: dict[tuple[int, int], int] = {}

    def AND(a: int, b: int) -> int:
        if a == 0 or b == 0 or a == (b ^ 1):
            return 0
        if a == 1:
            return b
        if b == 1 or a == b:
            return a
        key = (min(a, b), max(a, b))
        if key not in strash:
            ands.append(key)
            strash[key] = 2 * (len(inputs) + len(ands))
        return strash[key]

    def OR(a: int, b: int) -> int:
        return AND(a ^ 1, b ^ 1) ^ 1

    memo: dict[tuple[int, tuple[int, ...]], int] = {}

    def shannon(t: int, fl: tuple[int, ...]) -> int:
        """AIG literal of the function whose truth table is the integer ``t`` over ``fl``."""
        k = len(fl)
        if t == 0:
            return 0
        if t == (1 << (1 << k)) - 1:
            return 1
        key = (t, fl)
        if key in memo:
            return memo[key]
        half = 1 << (k - 1)  # split on the last variable (the slowest-varying index bit)
        f0, f1 = shannon(t & ((1 << half) - 1), fl[:-1]), shannon(t >> half, fl[:-1])
        x = fl[-1]
        if f0 == f1:
            r = f0
        elif f0 == (f1 ^ 1):  # x xor f0
            r = OR(AND(x, f0 ^ 1), AND(x ^ 1, f0))
        else:
            r = OR(AND(x, f1), AND(x ^ 1, f0))
        memo[key] = r
        return r

    for s in sorted(live):
        if nl.kind[s] == "gate":
            t = int.from_bytes(np.packbits(nl.table[s], bitorder="little").tobytes(), "little")
            lit[s] = shannon(t, tuple(lit[f] for f in nl.fanins[s]))
    return AIG(len(inputs), ands, [lit[s] for _, s in nl.outputs], [nl.name(s) for s in inputs], [name for name, _ in nl.outputs])


def write_aiger(aig: AIG, path: str | Path) -> Path:
    """Write the AIG in AIGER ASCII format (``aag``) with a symbol table."""
    p = Path(path)
    m = aig.n_inputs + len(aig.ands)
    lines = [f"aag {m} {aig.n_inputs} 0 {len(aig.outputs)} {len(aig.ands)}"]
    lines += [str(2 * (j + 1)) for j in range(aig.n_inputs)]
    lines += [str(o) for o in aig.outputs]
    for j, (a, b) in enumerate(aig.ands):
        lines.append(f"{2 * (aig.n_inputs + 1 + j)} {max(a, b)} {min(a, b)}")
    lines += [f"i{j} {n}" for j, n in enumerate(aig.input_names)]
    lines += [f"o{j} {n}" for j, n in enumerate(aig.output_names)]
    lines.append("c\nwritten by dormant net decompile")
    p.write_text("\n".join(lines) + "\n")
    return p


def read_aiger_eval(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Evaluate an ``aag`` file on a batch of input bits (batch, I) -> outputs (batch, O)."""
    lines = Path(path).read_text().splitlines()
    _, m, i, _, o, a = lines[0].split()
    m, i, o, a = int(m), int(i), int(o), int(a)
    val = np.zeros((inputs.shape[0], 2 * (m + 1)), np.int64)
    val[:, 1] = 1
    for j in range(i):
        v = int(lines[1 + j])
        val[:, v], val[:, v + 1] = inputs[:, j], 1 - inputs[:, j]
    outs = [int(x) for x in lines[1 + i : 1 + i + o]]
    for line in lines[1 + i + o : 1 + i + o + a]:
        lhs, r0, r1 = (int(x) for x in line.split())
        val[:, lhs] = val[:, r0] & val[:, r1]
        val[:, lhs + 1] = 1 - val[:, lhs]
    return val[:, outs]


_TABLE_NAMES = {(2, "1000"): "AND", (2, "0001"): "NOR", (2, "0110"): "XOR", (2, "1001"): "XNOR", (2, "1110"): "OR", (2, "0111"): "NAND", (1, "01"): "NOT", (2, "0100"): "AND-NOT", (2, "0010"): "AND-NOT"}


def table_name(table: np.ndarray) -> str:
    k = int(np.log2(table.size))
    bits = "".join(str(int(b)) for b in table[::-1])
    return _TABLE_NAMES.get((k, bits), f"f{k}:{int(bits, 2):x}")


def netlist_json(nl: Netlist, live: set[int] | None = None) -> dict:
    live = live_cone(nl) if live is None else live
    sigs = sorted(s for s in live if s >= 2)
    return {
        "inputs": [{"id": s, "name": nl.name(s), "kind": nl.kind[s]} for s in sigs if nl.kind[s] != "gate"],
        "gates": [{"id": s, "op": table_name(nl.table[s]), "fanins": list(nl.fanins[s]), "table": "".join(str(int(b)) for b in nl.table[s]), "origin": nl.name(s)} for s in sigs if nl.kind[s] == "gate"],
        "outputs": [{"name": n, "id": s} for n, s in nl.outputs],
    }


def write_dot(nl: Netlist, path: str | Path, live: set[int] | None = None, max_nodes: int = 3000) -> Path | None:
    """Graphviz DOT of the live netlist (None when it has more than ``max_nodes`` signals)."""
    live = live_cone(nl) if live is None else live
    if len(live) > max_nodes:
        return None
    lines = ["digraph netlist {", "  rankdir=LR; node [fontsize=10];"]
    for s in sorted(live):
        if s < 2:
            lines.append(f'  s{s} [label="{s}", shape=plaintext];')
        elif nl.kind[s] == "gate":
            lines.append(f'  s{s} [label="{table_name(nl.table[s])}\\n{nl.name(s)}", shape=box];')
            lines += [f"  s{f} -> s{s};" for f in nl.fanins[s]]
        else:
            lines.append(f'  s{s} [label="{nl.name(s)}", shape=ellipse];')
    for j, (name, s) in enumerate(nl.outputs):
        lines.append(f'  o{j} [label="{name}", shape=doubleoctagon];  s{s} -> o{j};')
    lines.append("}")
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


# ----------------------------------------------------------------------------- the whole pipeline


def logic_evidence(net: Network, bounds: Bounds) -> dict[str, float]:
    """Numbers that say whether this is a logic circuit: non-integer weights and biases, binary share."""
    total = nonint = 0
    bias_total = bias_nonint = 0
    for layer in net.layers:
        w = layer.weight
        data = w.data if hasattr(w, "tocsr") else np.asarray(w).ravel()
        data = data[data != 0]
        total += data.size
        nonint += int((data != np.round(data)).sum())
        if layer.bias is not None:
            b = np.asarray(layer.bias)
            bias_total += b.size
            bias_nonint += int((b != np.round(b)).sum())
    c = bounds.counts()
    return {
        "nonzero_weights": float(total),
        "non_integer_weight_share": nonint / total if total else 0.0,
        "non_integer_bias_share": bias_nonint / bias_total if bias_total else 0.0,
        "binary_neuron_share": c["binary"] / c["neurons"] if c["neurons"] else 0.0,
        "integer_neuron_share": c["integer"] / c["neurons"] if c["neurons"] else 0.0,
        "non_binary_neurons": float(c["neurons"] - c["binary"]),
    }


def decompile(net: Network, config: DecompileConfig | None = None) -> DecompileResult:
    """Bounds, gate census, netlist with reductions, live cone and AIG; or a "not logic" verdict."""
    config = config or DecompileConfig()
    bounds = propagate(net, config.bounds)
    gates = classify(net, bounds)
    cen = census(gates, config.census_top)
    ev = logic_evidence(net, bounds)
    counts = bounds.counts()
    if ev["non_integer_weight_share"] > 0.01 or ev["binary_neuron_share"] < 0.5:
        verdict = (
            f"not a logic circuit: {ev['non_integer_weight_share']:.0%} of non-zero weights are not integers, "
            f"{ev['binary_neuron_share']:.0%} of neurons are proven 0/1 ({int(ev['non_binary_neurons'])} take other values)"
        )
        return DecompileResult(False, verdict, {"neurons": counts["neurons"], "binary": counts["binary"]}, cen, None, counts, ev)
    nl, st = build_netlist(net, bounds, config.max_vars)
    live = live_cone(nl)
    aig = to_aig(nl, live)
    n_gates = len(nl.gates)
    n = counts["neurons"]
    distinct = n - st["copies"] - st["duplicates"]
    stages = {
        "neurons": n,
        "after copy-wire removal": n - st["copies"],
        "after merging duplicate neurons": distinct,
        "after constants and simplification": distinct - st["constants"] - st["simplified"] - st["gate_duplicates"],
        "boolean gates": len(nl.gates),
        "live gates": sum(1 for s in live if nl.kind[s] == "gate"),
        "AIG ANDs": len(aig.ands),
    }
    n_cuts = sum(1 for k in nl.kind if k == "cut")
    verdict = f"logic circuit: {counts['binary']} of {n} neurons are 0/1; {stages['live gates']} live gates, {len(aig.ands)} AND nodes, {n_cuts} cut inputs"
    res = DecompileResult(True, verdict, stages, cen, nl, counts, ev, cuts=n_cuts, unresolved=st["unresolved"], stats=st)
    res.notes += bounds.notes
    res.aig = aig
    return res


def export_all(res: DecompileResult, folder: str | Path) -> dict[str, str]:
    """Write the netlist as AIGER ASCII, JSON and (when small) DOT; return name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if res.netlist is None:
        return {}
    live = live_cone(res.netlist)
    paths = {"aiger": str(write_aiger(res.aig or to_aig(res.netlist, live), out / "netlist.aag"))}
    (out / "netlist.json").write_text(json.dumps(netlist_json(res.netlist, live)))
    paths["json"] = str(out / "netlist.json")
    dot = write_dot(res.netlist, out / "netlist.dot", live)
    if dot is not None:
        paths["dot"] = str(dot)
    return paths
