"""Read the target out of a network's comparator tail (the last two layers).

The public puzzle ends with ``Linear(192 -> 48)`` and ``Linear(48 -> 1)``: 16 groups of three
"hat" neurons, each group reading the 8 bits of one digest byte with weights 1, 2, ..., 128 and
biases ``-(t-1), -t, -(t+1)``; the last neuron adds each group's hats with weights +1, -2, +1 and
has bias ``-(n-1)``, so it is 1 only when every byte equals its ``t``. The target digest sits in
the penultimate biases.

Rather than trusting one algebraic form (signs, orders and carry-save bytes vary), the read-out
evaluates the tail: hats are grouped by the set of bit neurons they read; for each group every
assignment of its bits (or, for wide groups, every value of the weighted sum they share) is
pushed through the group's hats and the final weights, and the assignments that give the group
its largest contribution are the ones that fire. The output neuron is then checked to be a
conjunction (1 only when every group fires).

Example::

    t = read_target(net)
    t.hex                 # 'c7ef65233c40aa32c2b9ace37595fa7c' for the public puzzle
    t.groups[0].support   # the 8 bit-lanes of the penultimate input that byte 0 reads
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dormant.errors import DormantError
from dormant.net.load.network import Network
from dormant.net.logic.gates import rows
from dormant.net.logic.simulate import activate


class ComparatorError(DormantError):
    """The network's last layers are not a comparator that can be read."""


@dataclass
class ByteGroup:
    """One group of hat neurons and the bit lanes it compares."""

    index: int
    hats: list[int]  # neurons of the penultimate layer
    final_weights: list[float]
    support: list[int]  # lanes of the penultimate layer's input
    lane_weights: list[float]  # weight of each support lane in the compared sum (made positive)
    value: int | None  # the weighted sum that fires (the target byte for weights 1..128)
    firing_assignments: int  # bit assignments of the support that fire
    bits: list[int] | None  # the firing assignment of the support lanes, when unique
    ambiguous: bool = False


@dataclass
class Target:
    hex: str  # group values as bytes, in group order ('' when a value is not a byte)
    groups: list[ByteGroup]
    conjunctive: bool  # the output is 1 only when every group fires
    output_bias: float
    layer: int  # index of the penultimate layer (hats)
    notes: list[str] = field(default_factory=list)

    @property
    def lanes(self) -> dict[int, tuple[int, int]]:
        """Input lane of the hat layer -> (group, bit position by weight) for power-of-two weights."""
        out = {}
        for g in self.groups:
            for lane, w in zip(g.support, g.lane_weights):
                if w > 0 and float(w).is_integer() and (int(w) & (int(w) - 1)) == 0:
                    out[lane] = (g.index, int(w).bit_length() - 1)
        return out


def _group_contribution(hat_w: np.ndarray, hat_b: np.ndarray, fw: np.ndarray, x: np.ndarray, act: str) -> np.ndarray:
    """Sum over a group's hats of final weight * activation(hat), for a batch ``x`` of support values."""
    return activate(act, x @ hat_w.T + hat_b) @ fw


def read_target(net: Network, max_bits: int = 16) -> Target:
    """Decode the comparator of ``net``'s last two layers (see the module docstring)."""
    if len(net.layers) < 2:
        raise ComparatorError(f"{net.source or 'network'}: needs at least two layers to hold a comparator")
    last, hat_layer = net.layers[-1], net.layers[-2]
    if last.out_features != 1:
        raise ComparatorError(f"{net.source or 'network'}: the last layer has {last.out_features} outputs; a comparator ends in one")
    (f_idx, f_w), = rows(last.weight)
    f_bias = 0.0 if last.bias is None else float(np.asarray(last.bias)[0])
    hb = np.zeros(hat_layer.out_features) if hat_layer.bias is None else np.asarray(hat_layer.bias, dtype=np.float64)
    hat_rows = rows(hat_layer.weight)
    groups_by_support: dict[tuple[int, ...], list[int]] = {}
    for h in f_idx:
        support = tuple(int(c) for c in hat_rows[h][0])
        groups_by_support.setdefault(support, []).append(int(h))
    fw_of = dict(zip(f_idx.tolist(), f_w.tolist()))
    groups, notes = [], []
    maxima, gaps = [], []
    for gi, (support, hats) in enumerate(sorted(groups_by_support.items(), key=lambda kv: min(kv[1]))):
        cols = np.array(support)
        W = np.zeros((len(hats), len(cols)))
        for j, h in enumerate(hats):
            idx, w = hat_rows[h]
            W[j, np.searchsorted(cols, idx)] = w
        fw = np.array([fw_of[h] for h in hats])
        raw = W[0] if len(hats) else np.zeros(len(cols))
        shared = all(np.allclose(W[j], raw) for j in range(len(hats)))
        sign = -1.0 if np.all(raw <= 0) else 1.0  # hats may read -v (biases then carry the sign)
        lane_w = sign * raw
        value, bits, n_fire, ambiguous = None, None, 0, False
        if len(cols) <= max_bits:
            X = ((np.arange(1 << len(cols))[:, None] >> np.arange(len(cols))[None, :]) & 1).astype(np.float64)
            c = _group_contribution(W, hb[hats], fw, X, hat_layer.activation)
            top = c.max()
            fire = np.nonzero(c == top)[0]
            n_fire = int(fire.size)
            rest = np.sort(np.unique(c))[::-1]
            gaps.append(top - rest[1] if rest.size > 1 else np.inf)
            if n_fire == 1:
                bits = X[fire[0]].astype(int).tolist()
            sums = np.unique(X[fire] @ lane_w) if shared else np.array([])
            if sums.size == 1:
                value = int(sums[0]) if float(sums[0]).is_integer() else None
            else:
                ambiguous = True
        elif shared:  # too many lanes to enumerate: scan the shared weighted sum instead
            lo = int(np.minimum(lane_w, 0).sum())
            hi = int(np.maximum(lane_w, 0).sum())
            v = np.arange(lo, hi + 1, dtype=np.float64)
            c = activate(hat_layer.activation, sign * v[:, None] + hb[hats][None, :]) @ fw
            top = c.max()
            fire = v[c == top]
            n_fire = -1  # unknown in bit space
            rest = np.sort(np.unique(c))[::-1]
            gaps.append(top - rest[1] if rest.size > 1 else np.inf)
            if fire.size == 1:
                value = int(fire[0])
            else:
                ambiguous = True
        else:
            raise ComparatorError(f"{net.source or 'network'}: hat group {gi} reads {len(cols)} lanes with different weights per hat; cannot read it")
        maxima.append(top)
        groups.append(ByteGroup(gi, hats, fw.tolist(), list(support), lane_w.tolist(), value, n_fire, bits, ambiguous))
    total = sum(maxima) + f_bias
    conj = bool(total > 0 and all(total - g <= 0 for g in gaps))
    if not conj:
        notes.append("the output neuron is not a plain conjunction of the groups")
    if any(g.ambiguous for g in groups):
        notes.append("some groups fire on several values (carry-save or redundant lanes)")
    byte_values = [g.value for g in groups]
    if any(v is not None and v >= 256 for v in byte_values):  # a carry-save byte compares x + y, a 9-bit sum
        notes.append("some groups compare a sum of two bytes; their target byte is that sum modulo 256")
    hexs = bytes(v & 0xFF for v in byte_values).hex() if all(v is not None and v >= 0 for v in byte_values) else ""
    return Target(hexs, groups, conj, f_bias, len(net.layers) - 2, notes)


def target_bits(target: Target) -> dict[int, int]:
    """Hat-layer input lane -> the bit it must hold for the output to fire (unique assignments only)."""
    out = {}
    for g in target.groups:
        if g.bits is not None:
            out.update(dict(zip(g.support, g.bits)))
        elif g.value is not None:
            for lane, w in zip(g.support, g.lane_weights):
                if w > 0 and float(w).is_integer() and (int(w) & (int(w) - 1)) == 0:
                    out[lane] = (g.value >> (int(w).bit_length() - 1)) & 1
    return out
