"""The netlist as an and-inverter graph (AIG), by Shannon decomposition of each live gate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dormant.net.logic.netlist import CONST0, CONST1, Netlist, live_cone


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
