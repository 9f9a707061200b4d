"""Read the target from the digest lanes, whatever the comparator: solve lanes -> output for 1.

Identification (``signature.identify``) locates the digest lanes: for each digest bit, the neurons
``(layer, index)`` that equal it on every probe (where it is made, its copies, a NOT folded away,
...). Everything that reads them on the way to the output is the comparator, of any construction
(hat neurons, XNOR into an AND tree, a count of matching bits, ...). Here that part is cut out as a
circuit of its own and solved:

1. **cone**: walking back from the output, a neuron equal to a digest bit is a leaf (an input of
   the comparator, bit ``j``); any other neuron is part of the comparator and its inputs are
   followed. The walk stops at the earliest digest neuron; whatever the comparator reads below that
   (it should read nothing else) is held at its value on a background message, and reported;
2. **cut**: a network whose inputs are the digest bits (one 0/1 input each), made of the cone's
   neurons only, the bits carried to each layer that reads them by pass-through neurons
   (``cut_network``). The hash computation that makes the digest is not in it, even where it
   shares neurons with the digest;
3. **solve**: SAT on the cut's netlist (``logic.circuit_search.sat_firing``) for output 1, twice
   over: one solution is the target, a second one would make it ambiguous;
4. **verify**: the target is injected at the cone's leaves in the *whole* network on several
   background messages (``inject``): the output must be 1 on each, and 0 with any one bit flipped.

Example::

    ident = identify(net)
    t = target_from_lanes(net, ident.digest_places, backgrounds, ident.digest_copies)
    t.hex, t.verified
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dormant.errors import DormantError
from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.net.logic.gates import rows
from dormant.net.logic.simulate import activate, affine


class LaneTargetError(DormantError):
    """The part after the digest lanes could not be cut out or solved."""


@dataclass
class LaneTarget:
    hex: str | None  # the target digest (digest byte order), None when not found
    unique: bool  # no other lane assignment fires
    verified: bool  # injected at the lanes, the whole network fires on every background (and not with a bit flipped)
    backgrounds: int
    notes: list[str] = field(default_factory=list)


@dataclass
class Cone:
    """The comparator: the neurons between the digest lanes and the output."""

    reads: list[tuple[int, int, int]]  # (layer, neuron, bit): the digest neurons the comparator reads
    computed: dict[int, list[int]]  # layer -> comparator neurons of that layer (sorted)
    start: int  # first layer with comparator neurons
    held: list[tuple[int, int]]  # neurons read that are neither digest bits nor comparator: held at background values
    n_bits: int

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.computed.values())


def lane_spots(places: list[tuple[int, int]], copies: list[list[tuple[int, int]]] | None = None) -> dict[tuple[int, int], int]:
    """``(layer, neuron) -> bit`` for every neuron equal to a digest bit: each bit's place and every
    neuron in ``copies[bit]``."""
    spots = {(int(layer), int(n)): j for j, (layer, n) in enumerate(places)}
    for j, extra in enumerate(copies or []):
        for layer, n in extra:
            spots.setdefault((int(layer), int(n)), j)
    return spots


def comparator_cone(net: Network, places: list[tuple[int, int]], copies: list[list[tuple[int, int]]] | None = None, max_neurons: int = 200_000) -> Cone:
    """Walk back from the output to the digest neurons (see the module docstring, step 1)."""
    spots = lane_spots(places, copies)
    if len(set(places)) != len(places):
        raise LaneTargetError("two digest bits share one neuron")
    floor = min(layer for layer, _ in spots)
    last = len(net.layers) - 1
    need = set(range(net.layers[last].out_features))
    computed: dict[int, list[int]] = {}
    reads: list[tuple[int, int, int]] = []
    held: list[tuple[int, int]] = []
    total = 0
    for i in range(last, -1, -1):
        mine = sorted(n for n in need if (i, n) not in spots)
        reads += [(i, n, spots[(i, n)]) for n in need if (i, n) in spots]
        if i < floor:
            held += [(i, n) for n in mine]
            break
        if not mine:
            break
        computed[i] = mine
        total += len(mine)
        if total > max_neurons:
            raise LaneTargetError(f"the part after the digest lanes exceeds {max_neurons:,} neurons: the output reads more than the digest")
        need = set()
        for idx, _ in rows(net.layers[i].weight, mine):
            need.update(int(c) for c in idx)
        if i == 0:
            held += [(-1, n) for n in sorted(need)]  # network inputs read directly
    if not reads:
        raise LaneTargetError("the output reads none of the digest lanes")
    return Cone(sorted(reads), computed, min(computed) if computed else last + 1, sorted(held), len(places))


def _background_values(net: Network, cone: Cone, background: np.ndarray) -> dict[int, np.ndarray]:
    """Post-activation values of the layers holding held neurons, on one background message."""
    from dormant.net.logic.simulate import forward

    layers = sorted({layer for layer, _ in cone.held if layer >= 0})
    x = np.asarray(background, dtype=np.float64)[None, :]
    vals = {-1: x[0]}
    if layers:
        _, acts = forward(net, x, record=layers, stop=layers[-1] + 1)
        vals.update({layer: acts[layer][0] for layer in layers})
    return vals


def cut_network(net: Network, places: list[tuple[int, int]], background: np.ndarray, copies: list[list[tuple[int, int]]] | None = None, cone: Cone | None = None) -> Network:
    """The comparator as a network whose inputs are the digest bits (see the module docstring).

    ``background`` is one input vector of ``net``: it fixes the neurons the comparator reads that
    are neither digest bits nor comparator neurons (normally none).
    """
    cone = cone or comparator_cone(net, places, copies)
    k = cone.n_bits
    last = len(net.layers) - 1
    if cone.start > last:
        raise LaneTargetError("the digest lanes sit in the last layer: nothing to cut")
    read_at = {(layer, n): j for layer, n, j in cone.reads}
    held = _background_values(net, cone, background)
    layers: list[Layer] = []
    prev_index: dict[int, int] = {}  # neuron of the previous original layer -> column in the cut
    for i in range(cone.start, last + 1):
        mine = cone.computed.get(i, [])
        layer = net.layers[i]
        bias0 = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        n_prev = len(prev_index)  # pass-through bits follow the previous layer's comparator neurons
        r_idx, c_idx, vals = [], [], []
        bias = np.zeros(len(mine) + (0 if i == last else k))
        for r, (idx, w) in enumerate(rows(layer.weight, mine)):
            bias[r] = bias0[mine[r]]
            for c, v in zip(idx.tolist(), w.tolist()):
                if c in prev_index:
                    r_idx.append(r), c_idx.append(prev_index[c]), vals.append(v)
                elif (i - 1, c) in read_at:
                    r_idx.append(r), c_idx.append(n_prev + read_at[(i - 1, c)]), vals.append(v)
                else:  # a held neuron (the walk stopped at its layer)
                    bias[r] += v * float(held[i - 1][c])
        if i != last:
            for j in range(k):
                r_idx.append(len(mine) + j), c_idx.append(n_prev + j), vals.append(1.0)
        n_rows = len(mine) + (0 if i == last else k)
        weight = sp.csr_matrix((vals, (r_idx, c_idx)), shape=(n_rows, n_prev + k))
        layers.append(Layer(weight=weight, bias=bias, activation=layer.activation, name=f"cut{i}"))
        prev_index = {n: r for r, n in enumerate(mine)}
    return Network(layers=layers, adapter=InputAdapter("binary", k, "digest bits, in digest order"), source=f"{net.source or 'network'} after the digest lanes", fmt="cut")


def inject(net: Network, places: list[tuple[int, int]], backgrounds: np.ndarray, bits: np.ndarray, copies: list[list[tuple[int, int]]] | None = None, cone: Cone | None = None) -> np.ndarray:
    """The network's output when each digest neuron the comparator reads is forced to its bit (rows
    of ``bits``, one per background)."""
    cone = cone or comparator_cone(net, places, copies)
    h = np.asarray(backgrounds, dtype=np.float64)
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), (len(h), cone.n_bits))
    at: dict[int, list[tuple[int, int]]] = {}
    for layer, n, j in cone.reads:
        at.setdefault(layer, []).append((j, n))
    for i, layer in enumerate(net.layers):
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
        for j, n in at.get(i, []):
            h[:, n] = bits[:, j]
    return h


def target_from_lanes(net: Network, places: list[tuple[int, int]], backgrounds: np.ndarray, copies: list[list[tuple[int, int]]] | None = None, threshold: float = 0.5) -> LaneTarget:
    """Solve the cut for output 1 and verify the target by injection (see the module docstring)."""
    from dormant.net.logic.circuit_search import SatConfig, sat_firing

    cone = comparator_cone(net, places, copies)
    notes = [f"comparator: {cone.size:,} neurons in layers {cone.start}-{len(net.layers) - 1}, reading {len(cone.reads)} digest neurons"]
    if cone.held:
        notes.append(f"the comparator also reads {len(cone.held)} neurons that are not digest bits: held at their values on a background message")
    cut = cut_network(net, places, backgrounds[0], copies, cone)
    res = sat_firing(cut, SatConfig(max_solutions=2))
    notes += list(res.notes)
    if res.status != "ok":
        raise LaneTargetError(f"SAT on the {len(cut.layers)} layers after the digest lanes: {res.status}: {'; '.join(res.notes)}")
    if not res.codes:
        return LaneTarget(None, True, False, 0, notes + ["no assignment of the digest lanes makes the network fire"])
    if any(v is None for v in res.codes[0]):
        notes.append("the output does not read every digest lane")
    vec = np.array([0 if v is None else v for v in res.codes[0]], dtype=np.uint8)
    unique = len(res.codes) == 1 and res.complete
    if not unique:
        notes.append("several assignments of the digest lanes fire: the target is not unique")
    out = inject(net, places, backgrounds, vec, cone=cone)[:, 0]
    fires = bool(np.all(out > threshold))
    flipped = np.tile(vec, (len(vec), 1)) ^ np.eye(len(vec), dtype=np.uint8)
    rows_bg = np.resize(np.arange(len(backgrounds)), len(vec))
    silent = bool(np.all(inject(net, places, backgrounds[rows_bg], flipped, cone=cone)[:, 0] <= threshold))
    verified = fires and silent
    notes.append(f"target injected at the lanes on {len(backgrounds)} background messages: fires on {int(np.sum(out > threshold))}; every single-bit flip silent: {silent}")
    return LaneTarget(np.packbits(vec, bitorder="little").tobytes().hex(), unique, verified, len(backgrounds), notes)
