"""Word-level structure of a hash circuit: 32-bit lanes, adders and rotation amounts.

Three views, from cheapest to most informed:

* **adders from widths**: a parallel-prefix (Kogge-Stone) adder on ``n``-bit words leaves a
  fingerprint in the layer widths: above a floor they rise by ``n-1, n-2, n-4, ..., n/2`` (31, 30,
  28, 24, 16 for 32 bits), possibly with floor layers in between. ``kogge_stone_adders`` finds it.
* **lanes**: once ``signature.identify`` has matched neurons with reference words, each word's 32 bits sit
  in some layer; ``word_lanes`` reports where, and whether bit ``i`` is lane ``start + i``
  (LSB first), ``start - i`` (MSB first) or scattered.
* **rotations**: copy wires are followed back to the neuron that made each value; a gate that
  reads bit ``p`` of word X and bit ``q`` of word Y combines them at offset ``p - q``. A pair of
  words combined at one dominant offset is a rotation (MD5 step ``i``: the new state word is
  ``B + rotl(T, s_i)``, so the adder reads ``B`` bit ``p`` with ``T`` bit ``p - s_i``).

Example::

    wl = recover_words(net, "md5")
    [r.rotl for r in wl.rotations if r.a[0] == "T"][:4]    # 12, 17, 22, 7: MD5's shifts of steps 1-4
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dormant.net.identify.reference_hashes import TRACERS
from dormant.net.identify.signature import IdentifyConfig, encode, probe_matches, random_messages, reference_index
from dormant.net.load.network import Network
from dormant.net.logic.bounds import copy_rows
from dormant.net.logic.gates import rows


@dataclass
class Adder:
    start: int  # first layer of the width pattern
    layers: list[int]  # layers carrying the rises
    rises: list[int]
    bits: int


@dataclass
class WordLane:
    label: str
    step: int
    layer: int  # first layer where a bit of the word appears
    layers: list[int]  # layer of bit 0..31 (where each bit first appears)
    neurons: list[int]  # neuron of bit 0..31 in that layer
    order: str  # "lsb-first", "msb-first", "scattered", or "split" (bits made in several layers)


@dataclass
class Rotation:
    a: tuple[str, int]  # (label, step) of the word read at bit p
    b: tuple[str, int]  # (label, step) of the word read at bit p - offset
    offset: int  # bit of a minus bit of b, mod 32, for the gates that read both
    support: int  # gates reading the pair at this offset
    share: float  # fraction of the pair's gates at this offset

    @property
    def rotl(self) -> int:
        """``rotl(a, rotl)`` is bit-aligned with ``b`` (0: the words are combined bit by bit)."""
        return (-self.offset) % 32


@dataclass
class WordLevel:
    function: str | None
    adders: list[Adder]
    lanes: list[WordLane] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def kogge_stone_adders(widths: list[int], bits: int = 32) -> list[Adder]:
    """Find the width fingerprint ``n-1, n-2, n-4, ..., n/2`` above a floor (floor layers may interleave).

    The floor is the width just before or just after the first rise. Indices are positions in
    ``widths`` (0 is the input width, ``i`` the output of layer ``i - 1``).
    """
    rises = [bits - d for d in (1 << k for k in range(bits.bit_length() - 1))]
    out, j = [], 1
    w = list(widths)
    while j < len(w) - 1:
        hit = None
        for floor in {w[j - 1], w[j + 1]}:
            if w[j] - floor != rises[0]:
                continue
            k, seen, layers = j, [], []
            while k < len(w) and len(seen) < len(rises):
                if w[k] != floor:
                    seen.append(w[k] - floor)
                    layers.append(k)
                    if seen[-1] != rises[len(seen) - 1]:
                        break
                k += 1
            if seen == rises:
                hit = Adder(j, layers, rises, bits)
                break
        if hit:
            out.append(hit)
            j = hit.layers[-1] + 1
        else:
            j += 1
    return out


def _origins(net: Network) -> list[np.ndarray]:
    """For every value index, the (flattened) id of the neuron that made each value: copy wires
    inherit their input's origin. Ids are ``offset[v] + n``."""
    sizes = [net.layers[0].in_features] + [layer.out_features for layer in net.layers]
    offset = np.concatenate([[0], np.cumsum(sizes)])
    orig = [np.arange(sizes[0], dtype=np.int64)]
    for i, layer in enumerate(net.layers):
        o = offset[i + 1] + np.arange(layer.out_features, dtype=np.int64)
        copies, col = copy_rows(layer)
        o[copies] = orig[i][col[copies]]
        orig.append(o)
    return orig


def word_lanes(found: dict, function: str) -> list[WordLane]:
    """Where each fully matched reference word of ``function`` first sits, and its bit order."""
    per: dict[tuple[str, int], dict[int, dict[int, int]]] = {}
    for (fn, label, step, bit), places in found.items():
        if fn != function or label == "digest":
            continue
        for layer, n in places:
            per.setdefault((label, step), {}).setdefault(layer, {}).setdefault(bit, n)
    lanes = []
    for (label, step), layers in sorted(per.items()):
        first: dict[int, tuple[int, int]] = {}
        for layer in sorted(layers):
            for bit, n in layers[layer].items():
                first.setdefault(bit, (layer, n))
        if len(first) < 32:
            continue
        where = [first[b] for b in range(32)]
        bit_layers, neurons = [w[0] for w in where], [w[1] for w in where]
        d = np.diff(neurons)
        if len(set(bit_layers)) > 1:
            order = "split"
        else:
            order = "lsb-first" if np.all(d == 1) else "msb-first" if np.all(d == -1) else "scattered"
        lanes.append(WordLane(label, step, min(bit_layers), bit_layers, neurons, order))
    return lanes


def rotations(net: Network, lanes: list[WordLane], window: int = 12, min_share: float = 0.75) -> list[Rotation]:
    """Pairs of words read together by gates at one dominant bit offset (see the module docstring)."""
    orig = _origins(net)
    bit_of: dict[int, tuple[tuple[str, int], int]] = {}
    for lane in lanes:
        for b, (layer, n) in enumerate(zip(lane.layers, lane.neurons)):
            bit_of.setdefault(int(orig[layer + 1][n]), ((lane.label, lane.step), b))
    if not bit_of:
        return []
    first = min(lane.layer for lane in lanes)
    last = min(len(net.layers), max(lane.layer for lane in lanes) + window)
    offsets: dict[tuple, Counter] = {}
    for i in range(first + 1, last):
        o_in = orig[i]
        copies, _ = copy_rows(net.layers[i])
        sel = np.nonzero(~copies)[0]
        for r, (idx, _) in zip(sel, rows(net.layers[i].weight, sel)):
            words = [bit_of[int(o)] for o in o_in[idx] if int(o) in bit_of]
            for x in range(len(words)):
                for y in range(x + 1, len(words)):
                    (wa, pa), (wb, pb) = words[x], words[y]
                    if wa == wb:
                        continue
                    if wa > wb:
                        (wa, pa), (wb, pb) = (wb, pb), (wa, pa)
                    offsets.setdefault((wa, wb), Counter())[(pa - pb) % 32] += 1
    out = []
    for (wa, wb), cnt in offsets.items():
        off, n = cnt.most_common(1)[0]
        total = sum(cnt.values())
        if n >= 8 and n / total >= min_share:
            out.append(Rotation(wa, wb, off, n, n / total))
    out.sort(key=lambda r: (r.a[1], r.a[0], r.b[1], r.b[0]))
    return out


def recover_words(net: Network, function: str | None = None, config: IdentifyConfig | None = None, with_rotations: bool = True) -> WordLevel:
    """Adders from widths; with a named function, lanes of its words and rotations between them."""
    wl = WordLevel(function, kogge_stone_adders(net.widths))
    if function is None:
        return wl
    config = config or IdentifyConfig()
    if function not in TRACERS:
        raise ValueError(f"unknown function {function!r}; known: {', '.join(TRACERS)}")
    width = net.layers[0].in_features
    msgs = random_messages(config.probes, width, config, config.seed)
    found, _ = probe_matches(net, encode(msgs, width), reference_index({function: TRACERS[function](msgs)}))
    wl.lanes = word_lanes(found, function)
    if with_rotations and wl.lanes:
        wl.rotations = rotations(net, wl.lanes)
    return wl
