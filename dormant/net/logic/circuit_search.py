"""Find every input that makes a small (non-hash) circuit fire: exhaustive enumeration or SAT.

A hash network can only be inverted by guessing (``dormant.net.invert.preimage``). A small
circuit, one whose input domain is small or whose logic a SAT solver can handle, can be solved
completely:

* ``enumerate_firing`` runs the exact simulator (``dormant.net.logic.simulate.forward``) on every
  string over an alphabet, for each length in a range, in batches, and keeps those whose output
  fires (``> threshold``). Complete over its domain: it proves that nothing else in the domain
  fires. Cost: domain size x one forward pass, so keep ``alphabet ** max_len`` to a few million.
* ``sat_firing`` decompiles the network to an AND-inverter graph (``dormant.net.logic.decompile``),
  asks a SAT solver (python-sat) for an assignment of the circuit's inputs that sets the output
  to 1, blocks it, and repeats until unsatisfiable: all solutions, not just one. The inputs it
  understands are 0/1 network inputs, bits of character codes (the netlist's ``input_bit``), and
  *cut* bits that are a boolean function of one character (its truth table over the 256 codes is
  read by probing the network); anything else is reported as unsupported. Every solution is checked on the network itself.

* ``count_binary`` counts exactly when the inputs are 0/1 (``binary_inputs``) and there are at
  most ``2**24`` assignments: every assignment is simulated, in batches.

All return a ``CircuitSearchResult`` listing the firing inputs, how many fire (``count``: exact
when ``complete``, a lower bound otherwise) and whether the search stopped at a cap (``capped``).
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass, field

import numpy as np

from dormant.errors import DormantError
from dormant.net.load.network import Network
from dormant.net.logic.simulate import forward

PRINTABLE = string.digits + string.ascii_letters + " " + string.punctuation


class CircuitSearchError(DormantError):
    """A search that cannot start: empty alphabet, bad length range, a character without a one-byte code."""


@dataclass
class EnumerateConfig:
    alphabet: str = PRINTABLE  # characters tried at each position
    min_len: int = 1
    max_len: int = 3
    batch: int = 4096  # inputs per forward pass
    max_domain: int = 20_000_000  # refuse domains larger than this
    threshold: float = 0.5  # an output above this fires
    output: int = 0  # which output neuron


@dataclass
class SatConfig:
    max_solutions: int = 256  # stop after this many (the result then says it is incomplete)
    threshold: float = 0.5
    solver: str = "cadical153"  # any python-sat solver name; falls back to glucose4


@dataclass
class CircuitSearchResult:
    method: str  # enumeration or sat
    firing: list[str]  # firing inputs as text (or code vectors written as text)
    complete: bool  # True: no other input of the domain fires
    domain: str  # what was searched
    domain_size: int | None
    checked: int  # inputs simulated (enumeration) or solutions verified (sat)
    seconds: float
    status: str = "ok"  # ok, unsupported, too_large
    notes: list[str] = field(default_factory=list)
    codes: list[list[int | None]] = field(default_factory=list)  # per firing input: char codes (None: any)
    count: int = 0  # firing inputs of the domain: exact when complete, else a lower bound
    capped: bool = False  # the search stopped at its cap: more inputs may fire


def binary_inputs(net: Network) -> tuple[int | None, str]:
    """``(n, why)``: the number of 0/1 inputs when the network takes binary inputs, else ``None``.

    Binary means the adapter says so (``kind="binary"``), or the adapter is a plain vector and the
    first layer reads its inputs as logic gates do (integer weights in -1..1, integer biases).
    """
    n = net.layers[0].in_features
    kind = net.adapter.kind
    if kind == "binary":
        return (net.adapter.length or n), "the input adapter says 0/1 inputs"
    if kind != "vector":
        return None, f"input adapter {kind!r}"
    layer = net.layers[0]
    w = layer.weight.data if hasattr(layer.weight, "tocsr") else np.asarray(layer.weight)
    b = np.zeros(1) if layer.bias is None else np.asarray(layer.bias)
    if np.all(np.isin(w, (-1.0, 0.0, 1.0))) and np.all(b == np.round(b)):
        return n, "assumed 0/1: the first layer reads every input with weight -1, 0 or 1 and integer biases (logic gates)"
    return None, "the first layer's weights are not those of logic gates on 0/1 inputs"


def input_width(net: Network) -> int:
    return net.adapter.length if net.adapter.kind == "char_codes" and net.adapter.length else net.layers[0].in_features


# --------------------------------------------------------------------------------------------
# Exhaustive enumeration with the simulator
# --------------------------------------------------------------------------------------------


def alphabet_codes(alphabet: str) -> np.ndarray:
    """The distinct characters of ``alphabet``, in order, as one code each (``ord``, at most 255)."""
    unique = "".join(dict.fromkeys(alphabet))
    if not unique:
        raise CircuitSearchError("empty charset")
    try:
        return np.frombuffer(unique.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        raise CircuitSearchError(f"charset character {exc.object[exc.start]!r} cannot be encoded as latin-1") from None


def strings_of_length(codes: np.ndarray, length: int, start: int, stop: int) -> np.ndarray:
    """Strings ``start..stop`` of all ``len(codes) ** length`` strings over ``codes`` of that length
    (the last position varies fastest), as a (stop - start, length) matrix of codes."""
    index = np.arange(start, stop, dtype=np.int64)
    out = np.zeros((len(index), length), dtype=np.uint8)
    for pos in range(length - 1, -1, -1):
        index, digit = np.divmod(index, len(codes))
        out[:, pos] = codes[digit]
    return out


def enumerate_firing(net: Network, config: EnumerateConfig | None = None, *, on_batch=None) -> CircuitSearchResult:
    """Every string over ``config.alphabet`` with length in ``min_len..max_len`` that makes ``net`` fire."""
    config = config or EnumerateConfig()
    width = input_width(net)
    max_len = min(config.max_len, width)
    codes = alphabet_codes(config.alphabet)
    if config.min_len < 0 or max_len < config.min_len:
        raise CircuitSearchError(f"bad length range {config.min_len}-{max_len}")
    sizes = {length: len(codes) ** length for length in range(config.min_len, max_len + 1)}  # shortest first
    domain_size = sum(sizes.values())
    domain = f"{len(set(config.alphabet))} characters, lengths {config.min_len}-{max_len}"
    t0 = time.perf_counter()
    if domain_size > config.max_domain:
        return CircuitSearchResult(
            "enumeration", [], False, domain, domain_size, 0, 0.0, "too_large",
            [f"{domain_size:,} inputs exceed the limit of {config.max_domain:,}: shrink the alphabet or the length"],
        )
    firing: list[str] = []
    found: list[list[int | None]] = []
    checked = 0
    for length, size in sizes.items():
        for start in range(0, size, config.batch):
            stop = min(start + config.batch, size)
            strings = strings_of_length(codes, length, start, stop)
            x = np.zeros((stop - start, width), dtype=np.float64)
            x[:, :length] = strings
            y, _ = forward(net, x)
            y = np.asarray(y).reshape(len(x), -1)[:, config.output]
            for row in np.nonzero(y > config.threshold)[0]:
                raw = bytes(strings[row])
                firing.append(raw.decode("latin-1"))
                found.append(list(raw))
            checked += stop - start
            if on_batch is not None:
                on_batch(checked, domain_size)
    return CircuitSearchResult("enumeration", firing, True, domain, domain_size, checked, time.perf_counter() - t0, "ok", [], found, count=len(firing))


# --------------------------------------------------------------------------------------------
# Exact count over every 0/1 assignment
# --------------------------------------------------------------------------------------------

MAX_EXACT_BITS = 24


@dataclass
class CountConfig:
    max_bits: int = MAX_EXACT_BITS  # at most 2**max_bits assignments are simulated
    batch: int = 1 << 16
    keep: int = 256  # firing assignments listed (all are counted)
    threshold: float = 0.5
    output: int = 0


def assignments(n: int, start: int, stop: int) -> np.ndarray:
    """Assignments ``start..stop`` of ``n`` bits as rows (input ``i`` is bit ``n - 1 - i`` of the index)."""
    index = np.arange(start, stop, dtype=np.int64)
    return ((index[:, None] >> np.arange(n - 1, -1, -1, dtype=np.int64)[None, :]) & 1).astype(np.float64)


def count_binary(net: Network, n_inputs: int, config: CountConfig | None = None, *, on_batch=None) -> CircuitSearchResult:
    """How many of the ``2**n_inputs`` 0/1 assignments make ``net`` fire, by simulating every one."""
    config = config or CountConfig()
    t0 = time.perf_counter()
    size = 1 << n_inputs
    domain = f"all {size:,} assignments of {n_inputs} binary inputs"
    if n_inputs > config.max_bits:
        return CircuitSearchResult("exhaustive", [], False, domain, size, 0, 0.0, "too_large", [f"2^{n_inputs} assignments exceed the exact-count limit of 2^{config.max_bits}"])
    firing: list[str] = []
    codes: list[list[int | None]] = []
    count = 0
    for start in range(0, size, config.batch):
        stop = min(start + config.batch, size)
        x = assignments(n_inputs, start, stop)
        y, _ = forward(net, x)
        hits = np.nonzero(np.asarray(y).reshape(len(x), -1)[:, config.output] > config.threshold)[0]
        count += int(hits.size)
        for row in hits[: max(0, config.keep - len(firing))]:
            vec = [int(v) for v in x[row]]
            codes.append(vec)
            firing.append("".join(map(str, vec)))
        if on_batch is not None:
            on_batch(stop, size)
    return CircuitSearchResult("exhaustive", firing, True, domain, size, size, time.perf_counter() - t0, "ok", [], codes, count=count)


# --------------------------------------------------------------------------------------------
# SAT on the decompiled netlist
# --------------------------------------------------------------------------------------------


def cut_tables(net: Network, nl, signals: list[int], backgrounds: int = 6, seed: int = 0) -> dict[int, tuple[int, np.ndarray]] | str:
    """Each cut signal as a boolean function of one character: ``(position, table)`` where
    ``table[code]`` is the cut's value when that character has that code (position -1: constant).

    Found by running every code at every position over several backgrounds (all NUL, then random
    codes elsewhere): a cut qualifies only if the same one position explains it on every
    background. A cut that depends on several characters, or is not 0/1, gives a reason string.
    """
    width = input_width(net)
    rng = np.random.default_rng(seed)
    bgs = np.vstack([np.zeros((1, width)), rng.integers(1, 256, size=(backgrounds, width))]).astype(np.float64)
    # rows: background g, position p, code c
    x = np.repeat(bgs, width * 256, axis=0).reshape(len(bgs), width, 256, width)
    for pos in range(width):
        x[:, pos, :, pos] = np.arange(256)
    x = x.reshape(-1, width)
    deepest = max(nl.origin[s][0] for s in signals)
    _, acts = forward(net, x, record=True, stop=deepest)
    values = [x] + [acts[i] for i in range(deepest)]
    out: dict[int, tuple[int, np.ndarray]] = {}
    for s in signals:
        v, n = nl.origin[s]
        col = values[v][:, int(n)].reshape(len(bgs), width, 256)
        if not np.all((col == 0) | (col == 1)):
            return f"cut {nl.name(s)} is not a 0/1 function of the characters"
        varying = [p for p in range(width) if np.any(col[:, p, :] != col[:, p, :1])]
        if len(varying) > 1:
            return f"cut {nl.name(s)} depends on {len(varying)} characters (SAT here handles one per cut)"
        pos = varying[0] if varying else -1
        table = col[:, max(pos, 0), :]
        if np.any(table != table[0]):  # the other characters change it too
            return f"cut {nl.name(s)} depends on more than character {pos}"
        out[s] = (pos, table[0].astype(np.uint8))
    return out


def firing_condition(net: Network, nl, aig) -> list[int] | str:
    """AIG literals whose conjunction makes the network output 1, or why there are none.

    Either the output neuron is itself a signal of the netlist, or the network ends in a
    comparator (``dormant.net.identify.comparator``) whose target fixes each bit it reads: then every such
    bit, an output of the boolean region, must equal its target bit.
    """
    lit_of = {s: aig.outputs[i] for i, (_, s) in enumerate(nl.outputs)}
    out_signal = int(nl.signal_of[-1][0])
    if out_signal in lit_of:
        return [lit_of[out_signal]]
    try:
        from dormant.net.identify.comparator import read_target, target_bits
    except ImportError:
        return "the output is not a boolean signal of the netlist and no comparator reader is installed"
    try:
        target = read_target(net)
    except Exception as exc:  # noqa: BLE001 - any reason the tail is not a comparator
        return f"the output is not a boolean signal of the netlist, nor a readable comparator ({exc})"
    bits = target_bits(target)
    if not target.conjunctive or not bits:
        return "the comparator is not a plain conjunction of fixed bits"
    lanes = nl.signal_of[target.layer]  # signals of the hat layer's inputs
    goal = []
    for lane, bit in bits.items():
        s = int(lanes[lane])
        if s in (0, 1):
            if s != bit:
                return "the comparator asks for a bit that is constant otherwise: nothing fires"
            continue
        if s not in lit_of:
            return f"comparator lane {lane} is not a boolean signal of the netlist"
        goal.append(lit_of[s] ^ (0 if bit else 1))
    return goal


def sat_firing(net: Network, config: SatConfig | None = None, decompiled=None) -> CircuitSearchResult:
    """All inputs that set the network's output to 1, by SAT on its netlist's AIG (see module docstring).

    ``decompiled`` may pass a ``DecompileResult`` already computed (its netlist is reused). Returns ``status="unsupported"``
    with the reason when the output is not a boolean signal of the netlist or when some netlist
    input is neither a 0/1 network input nor one bit of one character code.
    """
    from pysat.solvers import Solver

    from dormant.net.logic.aig import to_aig
    from dormant.net.logic.bounds import propagate
    from dormant.net.logic.netlist import live_cone
    from dormant.net.logic.netlist_builder import build_netlist

    config = config or SatConfig()
    t0 = time.perf_counter()

    def unsupported(reason: str) -> CircuitSearchResult:
        return CircuitSearchResult("sat", [], False, "netlist", None, 0, time.perf_counter() - t0, "unsupported", [reason])

    if decompiled is not None and decompiled.netlist is not None and decompiled.aig is not None:
        nl, aig = decompiled.netlist, decompiled.aig
    else:
        # the netlist alone (no "is this mostly logic" verdict: small circuits spend most of their
        # neurons decoding character codes, which become cut bits here)
        nl, _ = build_netlist(net, propagate(net))
        aig = to_aig(nl, live_cone(nl))
    if net.layers[-1].out_features != 1:
        return unsupported("the network has more than one output")
    goal = firing_condition(net, nl, aig)  # AIG literals that must all be true
    if isinstance(goal, str):
        return unsupported(goal)
    live = live_cone(nl)
    inputs = [s for s in nl.inputs if s in live]  # the AIG's inputs, in its order
    cuts = [s for s in inputs if nl.kind[s] == "cut"]
    if cuts and net.adapter.kind == "binary":
        return unsupported(f"{len(cuts)} signals are not 0/1 functions of the binary inputs the netlist could resolve")
    tables = cut_tables(net, nl, cuts) if cuts else {}
    if isinstance(tables, str):
        return unsupported(tables)

    # SAT variables: 1..I the AIG inputs, then the ANDs (AIGER numbering), a constant-true
    # variable, then 8 bits for each character position that some cut reads
    n_aig = aig.n_inputs + len(aig.ands)
    true_var = n_aig + 1
    char_var: dict[tuple[int, int], int] = {}

    def lit(aig_lit: int) -> int:
        if aig_lit in (0, 1):  # the constants: false / true
            return true_var if aig_lit else -true_var
        v = aig_lit >> 1
        return -v if aig_lit & 1 else v

    clauses = [[true_var]]
    for j, (a, b) in enumerate(aig.ands):
        g = aig.n_inputs + 1 + j
        clauses += [[-g, lit(a)], [-g, lit(b)], [g, -lit(a), -lit(b)]]
    input_bit = getattr(nl, "input_bit", {})  # input signal -> bit k of a character code

    def char_bits(pos: int) -> list[int]:
        return [char_var.setdefault((pos, k), true_var + 1 + len(char_var)) for k in range(8)]

    binary_inputs: dict[int, int] = {}  # network input -> SAT variable, for 0/1 network inputs
    for j, s in enumerate(inputs):
        x = j + 1
        if nl.kind[s] == "input":
            pos = int(nl.origin[s][1])
            if s in input_bit:  # bit k of character `pos`
                cv = char_bits(pos)[input_bit[s]]
                clauses += [[-x, cv], [x, -cv]]
            else:
                binary_inputs[pos] = x
            continue
        pos, table = tables[s]
        if pos < 0:  # constant cut
            clauses.append([x if table[0] else -x])
            continue
        bits = char_bits(pos)
        for code in range(256):  # character == code  ->  cut == table[code]
            match = [-bv if (code >> k) & 1 else bv for k, bv in enumerate(bits)]
            clauses.append(match + [x if table[code] else -x])
    clauses += [[lit(g)] for g in goal]
    # distinct solutions differ in some character bit or 0/1 input (free positions stay free)
    decision = sorted(char_var.values()) + sorted(binary_inputs.values())

    firing: list[str] = []
    codes: list[list[int | None]] = []
    complete, capped, count = True, False, 0
    width = input_width(net)
    name = config.solver
    try:
        solver = Solver(name=name, bootstrap_with=clauses)
    except Exception:  # noqa: BLE001 - solver not built into this python-sat wheel
        solver = Solver(name="glucose4", bootstrap_with=clauses)
    with solver:
        while solver.solve():
            model = set(v for v in solver.get_model() if v > 0)
            vec: list[int | None] = [None] * width
            for (pos, bit), v in char_var.items():
                vec[pos] = (vec[pos] or 0) | ((1 << bit) if v in model else 0)
            for pos, v in binary_inputs.items():
                vec[pos] = int(v in model)
            codes.append(vec)
            firing.append(_show(vec, text=bool(char_var)))
            free = sum(v is None for v in vec)  # a free position stands for every value it can take
            count += (256 if char_var else 2) ** free
            solver.add_clause([-v if v in model else v for v in decision])
            if len(codes) >= config.max_solutions:
                complete = not solver.solve()
                capped = not complete
                break
    notes = [f"{len(aig.ands)} AND nodes, {aig.n_inputs} inputs ({len(cuts)} cuts read as functions of single characters, {len(char_var) // 8} characters)"]
    checked = _verify(net, codes, config.threshold)
    if checked < len(codes):
        notes.append(f"only {checked} of {len(codes)} SAT solutions fire on the network itself")
    if capped:
        notes.append(f"stopped at the cap of {config.max_solutions} solutions: at least {count:,} inputs fire, more do")
    return CircuitSearchResult("sat", firing, complete, "all inputs of the netlist", None, checked, time.perf_counter() - t0, "ok", notes, codes, count=count, capped=capped)


def _show(vec: list[int | None], text: bool) -> str:
    """A solution for people: text with trailing NULs dropped (``*`` marks a free position)."""
    if not text:
        return "".join("*" if v is None else str(v) for v in vec)
    end = len(vec)
    while end and vec[end - 1] == 0:
        end -= 1
    return "".join("*" if v is None else ("\\0" if v == 0 else chr(v)) for v in vec[:end])


def _verify(net: Network, codes: list[list[int | None]], threshold: float) -> int:
    """How many solutions fire on the network (free positions set to 0)."""
    if not codes:
        return 0
    x = np.asarray([[0 if v is None else v for v in vec] for vec in codes], dtype=np.float64)
    y, _ = forward(net, x)
    return int(np.sum(np.asarray(y).reshape(len(x), -1)[:, 0] > threshold))
