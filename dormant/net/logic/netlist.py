"""The netlist that a decompiled circuit becomes: signals, gates with truth tables, and its live cone.

Signals 0 and 1 are the constants; every other signal is a primary input, a *cut* (a bit the
netlist takes as an input), a gate given by its truth table over the signals it reads, or an
``int`` node (a small integer neuron that gates are evaluated through). ``netlist_builder`` builds
it from a network, ``evaluate`` runs it, ``aig`` and ``export`` turn it into files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONST0, CONST1 = 0, 1
MAX_VARS = 12  # widest truth table built for one gate


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


def _assignments(k: int) -> np.ndarray:
    """(2**k, k) matrix of 0/1: row r holds the bits of r, column j is bit j."""
    r = np.arange(1 << k)
    return ((r[:, None] >> np.arange(k)[None, :]) & 1).astype(np.float64)


ASSIGNMENTS = [_assignments(k) for k in range(MAX_VARS + 1)]


def assignments(k: int) -> np.ndarray:
    return ASSIGNMENTS[k] if k < len(ASSIGNMENTS) else _assignments(k)


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
