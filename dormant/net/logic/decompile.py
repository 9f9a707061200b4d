"""Decompile an integer ReLU network into a reduced boolean netlist, and export it.

Pipeline (each step is a plain function):

1. ``propagate`` (``bounds``) proves which neurons only take 0/1 values.
2. ``build_netlist`` (``netlist_builder``) walks the layers once. Every binary neuron becomes a
   *signal*: a constant, a primary input (0/1 network inputs, or the 8 bits of an integer input
   such as a character code), a gate given by its truth table over the signals it reads, or a
   *cut* (a bit computed from non-binary values that could not be written over at most
   ``max_vars`` bits: the netlist takes it as an input). While walking it applies the classic
   reductions:

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
   produces. ``check_netlist`` (``evaluate``) is the safety net for that and for every assumption.

3. ``live_cone`` (``netlist``) keeps only what the outputs depend on; ``to_aig`` (``aig``) turns
   the tables into an AND-inverter graph; ``write_aiger`` / ``write_dot`` / ``netlist_json``
   (``export``) write it out.

The netlist's outputs are the binary signals that leave the boolean region: the network's 0/1
outputs, and the bits read by non-binary neurons (for a hash network: the digest bits read by the
comparator). ``check_netlist`` evaluates the netlist next to the network and compares them.

Example::

    res = decompile(net)
    res.stages            # neurons -> copies removed -> duplicates merged -> ... -> AIG ANDs
    export.write_aiger(res.aig, "circuit.aag")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dormant.net.load.network import Network
from dormant.net.logic.aig import AIG, to_aig
from dormant.net.logic.bounds import Bounds, BoundsConfig, propagate
from dormant.net.logic.gates import Census, census, classify
from dormant.net.logic.netlist import MAX_VARS, Netlist, live_cone
from dormant.net.logic.netlist_builder import build_netlist


@dataclass
class DecompileConfig:
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    max_vars: int = MAX_VARS
    census_top: int = 20


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
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step, in pipeline order


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
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now - clock[0]
        clock[0] = now

    bounds = propagate(net, config.bounds)
    lap("bounds")
    gates = classify(net, bounds)
    cen = census(gates, config.census_top)
    ev = logic_evidence(net, bounds)
    lap("census")
    counts = bounds.counts()
    if ev["non_integer_weight_share"] > 0.01 or ev["binary_neuron_share"] < 0.5:
        verdict = (
            f"not a logic circuit: {ev['non_integer_weight_share']:.0%} of non-zero weights are not integers, "
            f"{ev['binary_neuron_share']:.0%} of neurons are proven 0/1 ({int(ev['non_binary_neurons'])} take other values)"
        )
        return DecompileResult(False, verdict, {"neurons": counts["neurons"], "binary": counts["binary"]}, cen, None, counts, ev, seconds=seconds)
    nl, st = build_netlist(net, bounds, config.max_vars)
    lap("netlist")
    live = live_cone(nl)
    lap("live cone")
    aig = to_aig(nl, live)
    lap("AIG")
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
    res = DecompileResult(True, verdict, stages, cen, nl, counts, ev, cuts=n_cuts, unresolved=st["unresolved"], stats=st, seconds=seconds)
    res.notes += bounds.notes
    res.aig = aig
    return res
