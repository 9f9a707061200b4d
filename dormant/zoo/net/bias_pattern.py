"""Compare a network's non-zero-bias pattern with a published one (``puzzle_bias_bits.txt``).

The file has one line per Linear layer: a hexadecimal integer whose set bits mark the neurons with
a non-zero bias, then ``(len=W)`` and ``(layer=I)``. Which bit is neuron 0 was not documented, so
both orders are compared: ``"lsb"`` (bit ``i`` is neuron ``i``) and ``"msb"`` (bit ``W-1-i`` is
neuron ``i``). Per layer: the non-zero-bias counts of both, and the fraction of neurons whose flag
agrees under each order (over the neurons of the narrower layer).

Example::

    m = compare_bias_pattern(net, "tests/data/puzzle_bias_bits.txt")
    m.summary
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dormant.net.load.network import Network

_LINE = re.compile(r"0x([0-9a-fA-F]+)\s*\(len=\s*(\d+)\)")


def read_bias_bits(path: str | Path) -> list[tuple[int, int]]:
    """``(mask, width)`` per layer."""
    out = []
    for line in Path(path).read_text().splitlines():
        m = _LINE.search(line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2))))
    return out


def flags(mask: int, width: int, order: str) -> np.ndarray:
    """Neuron flags (non-zero bias) of one layer's mask under a bit order."""
    bits = np.array([(mask >> i) & 1 for i in range(width)], dtype=bool)
    return bits if order == "lsb" else bits[::-1]


@dataclass
class BiasMatch:
    layers: int
    counts_equal: int  # layers with as many non-zero biases as the reference
    ours: int  # non-zero biases in all
    theirs: int
    agree: dict[str, float]  # order -> fraction of neurons whose flag agrees
    exact: dict[str, int]  # order -> layers whose pattern agrees on every neuron
    per_layer: list[dict] = field(default_factory=list)

    @property
    def best_order(self) -> str:
        return max(self.agree, key=self.agree.get)

    @property
    def summary(self) -> str:
        o = self.best_order
        return (f"non-zero biases: {self.ours:,} built vs {self.theirs:,} published; equal counts in {self.counts_equal}/{self.layers} layers; "
                f"neuron flags agree {self.agree['lsb']:.1%} (bit i = neuron i) / {self.agree['msb']:.1%} (reversed); "
                f"layers identical: {self.exact['lsb']} / {self.exact['msb']}; best order: {o}")


def compare_bias_pattern(net: Network, path: str | Path) -> BiasMatch:
    ref = read_bias_bits(path)
    n = min(len(ref), len(net.layers))
    agree = {"lsb": 0, "msb": 0}
    exact = {"lsb": 0, "msb": 0}
    total = counts_equal = ours_all = theirs_all = 0
    per_layer = []
    for i in range(n):
        layer = net.layers[i]
        ours = np.zeros(layer.out_features, dtype=bool) if layer.bias is None else np.asarray(layer.bias) != 0
        mask, width = ref[i]
        k = min(width, len(ours))
        row = {"layer": i, "ours": int(ours.sum()), "theirs": int(bin(mask).count("1"))}
        for order in ("lsb", "msb"):
            f = flags(mask, width, order)
            same = int(np.sum(f[:k] == ours[:k]))
            agree[order] += same
            exact[order] += int(same == k and width == len(ours))
            row[order] = round(same / max(k, 1), 4)
        total += k
        counts_equal += int(row["ours"] == row["theirs"])
        ours_all += row["ours"]
        theirs_all += row["theirs"]
        per_layer.append(row)
    return BiasMatch(n, counts_equal, ours_all, theirs_all, {o: v / max(total, 1) for o, v in agree.items()}, exact, per_layer)
