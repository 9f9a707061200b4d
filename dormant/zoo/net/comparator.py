"""Comparator tails: the puzzle's "hat" comparator and a bitwise XNOR into an AND tree.

The hat comparator: 1.0 exactly when every digest byte equals its target.

For a byte with bits ``b_0..b_7`` (neurons of the previous layer) its value is
``v = sum 2^k b_k``. Three neurons read ``v`` with weights ``1, 2, ..., 128``::

    relu(v - t + 1) - 2 relu(v - t) + relu(v - t - 1)  ==  1 if v == t else 0

(the biases are ``-(t-1)``, ``-t``, ``-(t+1)``: the target byte sits in the penultimate biases).
The last layer adds the hats of all ``n`` bytes with weights ``+1, -2, +1`` and bias ``-(n - 1)``
and its ReLU leaves 1 only when all ``n`` hats are 1. Its gradient is zero almost everywhere.

``xnor_and_tree`` compares bit by bit: bit XNOR target bit (the bit itself or a NOT neuron), then
ANDs of up to four, ``relu(a + b + c + d - 3)``, level by level down to one neuron.
"""

from __future__ import annotations

from typing import Sequence

from dormant.zoo.net.circuit import Circuit, Expr


def hat_comparator(c: Circuit, digest_bytes: Sequence[Sequence[Expr]], target: bytes) -> Expr:
    """Append the comparator for ``digest_bytes`` (each 8 bits, LSB first) against ``target``."""
    if len(digest_bytes) != len(target):
        raise ValueError(f"digest has {len(digest_bytes)} bytes, target has {len(target)}")
    total: Expr = Expr({}, -(len(target) - 1))
    for bits, t in zip(digest_bytes, target):
        v = sum((2**k * b for k, b in enumerate(bits)), Expr())
        total = total + c.neuron(v - t + 1) - 2 * c.neuron(v - t) + c.neuron(v - t - 1)
    return c.neuron(total)


def xnor_and_tree(c: Circuit, bits: Sequence[Expr], target: bytes, fan_in: int = 4) -> Expr:
    """1 exactly when ``bits`` (byte by byte, each least significant first) spell ``target``."""
    want = [(byte >> k) & 1 for byte in target for k in range(8)]
    if len(bits) != len(want):
        raise ValueError(f"{len(bits)} digest bits, target has {len(want)}")
    level = [b if t else c.not_(b) for b, t in zip(bits, want)]
    while len(level) > 1:
        level = [c.neuron(sum(group[1:], group[0]) - (len(group) - 1)) if len(group) > 1 else group[0] for group in (level[i : i + fan_in] for i in range(0, len(level), fan_in))]
    return c.wire(level[0]) if level[0].single_node() is None else level[0]
