"""Read the target from the digest lanes, whatever the comparator: solve lanes -> output for 1.

Identification (``signature.identify``) locates the digest lanes: for each digest bit, a neuron
``(layer, index)`` that equals it on every probe. Everything after them is the comparator, of any
construction (hat neurons, XNOR into an AND tree, a count of matching bits, ...). Here that part is
cut out as a circuit of its own and solved:

1. **cut**: a network whose inputs are the digest bits (one 0/1 input each) and whose layers are
   the original layers after the earliest lane; every other neuron of that earliest layer is held
   at its value on a background message, each later lane is replaced by a wire from its input
   (carried there by pass-through neurons);
2. **solve**: SAT on the cut's netlist (``logic.circuit_search.sat_firing``) for output 1, twice
   over: one solution is the target, a second one would make it ambiguous;
3. **verify**: the target is injected at the lanes of the *whole* network on several background
   messages (``inject``): the output must be 1 on each, and 0 with any one bit flipped.

Example::

    ident = identify(net)
    t = target_from_lanes(net, ident.digest_places)
    t.hex, t.verified
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dormant.errors import DormantError
from dormant.net.load.network import InputAdapter, Layer, Network
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


def _dense_rows(w) -> sp.csr_matrix:
    return sp.csr_matrix(w, dtype=np.float64)


def lane_spots(places: list[tuple[int, int]], copies: list[list[tuple[int, int]]] | None = None) -> list[tuple[int, int, int]]:
    """``(layer, neuron, bit)`` for every neuron injected: each bit's place, plus every other neuron
    that equals the same bit (``copies[bit]``) in a layer at or after the earliest place (a digest
    bit may be carried, or made twice; a comparator may read any of them)."""
    first = min(layer for layer, _ in places)
    spots = {(layer, n): j for j, (layer, n) in enumerate(places)}
    for j, extra in enumerate(copies or []):
        for layer, n in extra:
            if layer >= first:
                spots.setdefault((layer, n), j)
    return sorted((layer, n, j) for (layer, n), j in spots.items())


def cut_network(net: Network, places: list[tuple[int, int]], background: np.ndarray, copies: list[list[tuple[int, int]]] | None = None) -> Network:
    """The network from the lanes to the output, with the lanes as its 0/1 inputs (see module docstring).

    ``background`` is one input vector of ``net``: it fixes every neuron of the earliest lane layer
    that is not a lane.
    """
    from dormant.net.logic.simulate import forward

    k = len(places)
    if len(set(places)) != k:
        raise LaneTargetError("two digest bits share one neuron")
    first = min(layer for layer, _ in places)
    _, acts = forward(net, np.asarray(background, dtype=np.float64)[None, :], record=[first], stop=first + 1)
    h0 = acts[first][0].copy()
    at: dict[int, list[tuple[int, int]]] = {}  # layer -> [(bit, neuron)]
    for layer, n, j in lane_spots(places, copies):
        at.setdefault(layer, []).append((j, n))
    # input: the k bits; layer `first`'s lanes read them, its other neurons are constants
    layers: list[Layer] = []
    w_prev_in = k  # width of the current sub-network activations: [h (original), v (k pass-through)]
    for i in range(first + 1, len(net.layers)):
        layer = net.layers[i]
        w = _dense_rows(layer.weight)
        b = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64).copy()
        n_out = layer.out_features
        if i == first + 1:
            # pre = W h0' + b with h0' = h0 where lanes are replaced by the inputs
            lanes0 = at.get(first, [])
            h_fixed = h0.copy()
            for _, n in lanes0:
                h_fixed[n] = 0.0
            b = b + w @ h_fixed
            cols = np.zeros((w.shape[1], k))
            for j, n in lanes0:
                cols[n, j] = 1.0
            main = w @ sp.csr_matrix(cols)  # (n_out, k): the lanes' weights, read from the inputs
        else:
            main = sp.hstack([w, sp.csr_matrix((n_out, k))])  # reads h of the previous layer, not v
        main = sp.csr_matrix(main)
        main = main.tolil()
        for j, n in at.get(i, []):  # this layer's lanes become wires from their inputs
            main[n, :] = 0
            main[n, (0 if i == first + 1 else w.shape[1]) + j] = 1.0
            b[n] = 0.0
        main = sp.csr_matrix(main)
        last = i == len(net.layers) - 1
        if last:
            weight, bias = main, b
        else:  # append the k pass-through lanes
            off = 0 if i == first + 1 else w.shape[1]
            through = sp.csr_matrix((np.ones(k), (np.arange(k), off + np.arange(k))), shape=(k, main.shape[1]))
            weight, bias = sp.vstack([main, through]).tocsr(), np.concatenate([b, np.zeros(k)])
        layers.append(Layer(weight=weight, bias=bias, activation=layer.activation, name=f"cut{i}"))
        w_prev_in = weight.shape[0]
    del w_prev_in
    if not layers:
        raise LaneTargetError("the digest lanes sit in the last layer: nothing to cut")
    return Network(layers=layers, adapter=InputAdapter("binary", k, "digest bits, in digest order"), source=f"{net.source or 'network'} after the digest lanes", fmt="cut")


def inject(net: Network, places: list[tuple[int, int]], backgrounds: np.ndarray, bits: np.ndarray, copies: list[list[tuple[int, int]]] | None = None) -> np.ndarray:
    """The network's output when each lane (and its ``copies``) is forced to its bit (rows of
    ``bits``, one per background)."""
    h = np.asarray(backgrounds, dtype=np.float64)
    bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), (len(h), len(places)))
    at: dict[int, list[tuple[int, int]]] = {}
    for layer, n, j in lane_spots(places, copies):
        at.setdefault(layer, []).append((j, n))
    for i, layer in enumerate(net.layers):
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
        for j, n in at.get(i, []):
            h[:, n] = bits[:, j]
    return h


def target_from_lanes(net: Network, places: list[tuple[int, int]], backgrounds: np.ndarray, copies: list[list[tuple[int, int]]] | None = None, threshold: float = 0.5) -> LaneTarget:
    """Solve the cut for output 1 and verify the target by injection (see the module docstring)."""
    from dormant.net.logic.circuit_search import SatConfig, sat_firing

    cut = cut_network(net, places, backgrounds[0], copies)
    res = sat_firing(cut, SatConfig(max_solutions=2))
    notes = list(res.notes)
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
    out = inject(net, places, backgrounds, vec, copies)[:, 0]
    fires = bool(np.all(out > threshold))
    flipped = np.tile(vec, (len(vec), 1)) ^ np.eye(len(vec), dtype=np.uint8)
    rows = np.resize(np.arange(len(backgrounds)), len(vec))
    silent = bool(np.all(inject(net, places, backgrounds[rows], flipped, copies)[:, 0] <= threshold))
    verified = fires and silent
    notes.append(f"target injected at the lanes on {len(backgrounds)} background messages: fires on {int(np.sum(out > threshold))}; every single-bit flip silent: {silent}")
    return LaneTarget(np.packbits(vec, bitorder="little").tobytes().hex(), unique, verified, len(backgrounds), notes)
