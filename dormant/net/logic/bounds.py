"""Interval bound propagation: which neurons can only be 0 or 1 (or only integers) on every input.

Starting from the input domain (character codes lie in [0, 255]; a user may give another range),
each layer's pre-activation interval is ``[W+ lo + W- hi + b, W+ hi + W- lo + b]`` and the
activation is applied to both ends. A neuron is *integer* when its weights, its bias and all the
inputs it reads are integers, and *binary* when it is integer and its interval lies in [0, 1].

Plain intervals forget correlations. A folded XOR ``relu(a + b - 2*AND(a, b))`` gets [0, 2] even
though it only takes 0 and 1. The refinement step fixes the common cases exactly: for a neuron
whose interval is wider than its inputs allow, it takes the neuron's cone a few layers back, and if
the cone's frontier is a handful of integer neurons, it enumerates every assignment of the frontier
and evaluates the cone. That is sound (the real joint values are among those enumerated) and tight
for the small gadgets (XOR, multiplexers, carry logic) that compiled circuits are made of.

Example::

    b = propagate(net)                 # char-code adapter -> inputs in [0, 255]
    b.binary[5].mean()                 # share of layer 5's outputs proven 0/1
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from dormant.net.load.network import Network
from dormant.net.logic.simulate import activate, affine


@dataclass
class BoundsConfig:
    input_low: float | None = None  # default: 0
    input_high: float | None = None  # default: 255 for char codes, 1 otherwise
    integer_inputs: bool = True  # inputs are integers (char codes, bits)
    refine: bool = True  # enumerate small cones to tighten integer neurons whose interval is loose
    probes: int = 256  # random inputs run alongside, to skip neurons whose interval is already tight
    seed: int = 0
    refine_depth: int = 2  # how many layers back a cone may reach (3 proves more, slower)
    max_combos: int = 1024  # largest number of frontier assignments enumerated per neuron
    assume_observed: bool = True  # a loose neuron seen only as 0/1 on every probe is assumed 0/1
    max_refine: int = 200_000  # cap on cone enumerations (the rest keep their intervals)


@dataclass
class Bounds:
    """Intervals of every value in the network: index 0 is the input, index ``i + 1`` layer ``i``'s output."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]
    integer: list[np.ndarray]
    assumed: list[np.ndarray] = field(default_factory=list)  # per value index: 0/1 assumed from probes, not proven
    refined: int = 0  # neurons whose interval the cone enumeration tightened
    attempted: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def binary(self) -> list[np.ndarray]:
        """Per value index: proven to take only 0 and 1."""
        return [i & (l >= 0) & (h <= 1) for l, h, i in zip(self.lo, self.hi, self.integer)]

    @property
    def constant(self) -> list[np.ndarray]:
        return [l == h for l, h in zip(self.lo, self.hi)]

    def counts(self) -> dict[str, int]:
        hidden = slice(1, len(self.lo))
        n = sum(a.size for a in self.lo[hidden])
        binary = sum(int(b.sum()) for b in self.binary[hidden])
        integer = sum(int(i.sum()) for i in self.integer[hidden])
        const = sum(int(c.sum()) for c in self.constant[hidden])
        assumed = sum(int(a.sum()) for a in self.assumed[hidden]) if self.assumed else 0
        return {"neurons": n, "binary": binary, "binary_proven": binary - assumed, "binary_assumed": assumed, "integer": integer, "constant": const, "refined": self.refined}


def input_domain(net: Network, config: BoundsConfig) -> tuple[np.ndarray, np.ndarray]:
    """The input interval: the user's range, else [0, 255] for char codes, else [0, 1]."""
    n = net.layers[0].in_features
    default_hi = 255.0 if net.adapter.kind == "char_codes" else 1.0
    lo = 0.0 if config.input_low is None else float(config.input_low)
    hi = default_hi if config.input_high is None else float(config.input_high)
    if hi < lo:
        raise ValueError(f"input range [{lo}, {hi}] is empty")
    return np.full(n, lo), np.full(n, hi)


def _split(w):
    """Positive and negative parts of a weight matrix (same storage kind)."""
    if sp.issparse(w):
        w = w.tocsr()
        return w.maximum(0), w.minimum(0)
    w = np.asarray(w, dtype=np.float64)
    return np.maximum(w, 0), np.minimum(w, 0)


def _matvec(w, x: np.ndarray) -> np.ndarray:
    return np.asarray(w @ x, dtype=np.float64).ravel()


def _row_integer(w, col_integer: np.ndarray) -> np.ndarray:
    """Rows whose every non-zero weight is an integer and reads an integer input."""
    if sp.issparse(w):
        w = w.tocsr()
        bad_entry = (w.data != np.round(w.data)) | ~col_integer[w.indices]
        row_of = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        return np.bincount(row_of, weights=bad_entry, minlength=w.shape[0]) == 0
    w = np.asarray(w, dtype=np.float64)
    nz = w != 0
    bad = nz & ((w != np.round(w)) | ~col_integer[None, :])
    return ~bad.any(axis=1)


def _apply_activation(name: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if name in ("gelu", "silu"):  # not monotone: they dip below zero
        a, b = activate(name, lo), activate(name, hi)
        return np.minimum(np.minimum(a, b), -0.3), np.maximum(a, b)
    return activate(name, lo), activate(name, hi)


_INTEGER_ACTS = ("relu", "identity", "step", "hardtanh")


def probe_inputs(net: Network, lo: np.ndarray, hi: np.ndarray, n: int, seed: int = 0, integer: bool = True) -> np.ndarray:
    """Random inputs from the domain: half uniform, half "strings" (a random prefix, zeros after)."""
    rng = np.random.default_rng(seed)
    if integer:
        x = rng.integers(lo.astype(np.int64), hi.astype(np.int64) + 1, size=(n, lo.size)).astype(np.float64)
    else:
        x = rng.uniform(lo, hi, size=(n, lo.size))
    lengths = rng.integers(0, lo.size + 1, size=n // 2)
    for j, L in enumerate(lengths):
        x[j, L:] = np.clip(0.0, lo[L:], hi[L:])
    return x


def copy_rows(layer) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are copy wires ``relu(x)`` (one weight 1, bias 0) and the column each copies."""
    w = layer.weight
    b = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    if sp.issparse(w):
        w = w.tocsr()
        nnz = np.diff(w.indptr)
        first = np.minimum(w.indptr[:-1], max(w.nnz - 1, 0))
        val = w.data[first] if w.nnz else np.zeros(w.shape[0])
        col = w.indices[first] if w.nnz else np.zeros(w.shape[0], np.int64)
    else:
        wd = np.asarray(w)
        nz = wd != 0
        nnz = nz.sum(axis=1)
        col = nz.argmax(axis=1)
        val = wd[np.arange(wd.shape[0]), col]
    mask = (nnz == 1) & (val == 1) & (b == 0) & (layer.activation in ("relu", "identity"))
    return mask, np.asarray(col, dtype=np.int64)


def propagate(net: Network, config: BoundsConfig | None = None) -> Bounds:
    """Propagate intervals through every layer (vectorised per layer), refining small cones.

    Refinement is tried only where it can help: on integer neurons that are not copy wires and
    whose interval is wider than the values seen on ``probes`` random inputs.
    """
    config = config or BoundsConfig()
    lo0, hi0 = input_domain(net, config)
    lo, hi = [lo0], [hi0]
    integer = [np.full(lo0.shape, config.integer_inputs)]
    bounds = Bounds(lo, hi, integer)
    bounds.assumed.append(np.zeros(lo0.shape, bool))
    budget = config.max_refine
    h = probe_inputs(net, lo0, hi0, config.probes, config.seed, config.integer_inputs) if config.refine and config.probes else None
    for i, layer in enumerate(net.layers):
        wp, wn = _split(layer.weight)
        b = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        pre_lo = _matvec(wp, lo[i]) + _matvec(wn, hi[i]) + b
        pre_hi = _matvec(wp, hi[i]) + _matvec(wn, lo[i]) + b
        is_int = _row_integer(layer.weight, integer[i]) & (b == np.round(b)) & (layer.activation in _INTEGER_ACTS)
        post_lo, post_hi = _apply_activation(layer.activation, pre_lo, pre_hi)
        lo.append(post_lo), hi.append(post_hi), integer.append(is_int)
        assumed = np.zeros(layer.out_features, bool)
        bounds.assumed.append(assumed)
        if not config.refine:
            continue
        copies, col = copy_rows(layer)
        loose = is_int & ~copies & (post_hi > post_lo)
        if h is not None:
            h = activate(layer.activation, affine(layer.weight, layer.bias, h))
            loose &= (h.min(axis=0) > post_lo) | (h.max(axis=0) < post_hi)
        else:
            loose &= (post_hi > 1) & (post_lo >= 0)
        cand = np.nonzero(loose)[0][: max(budget, 0)]
        budget -= cand.size
        for n in cand:
            bounds.attempted += 1
            r = cone_range(net, bounds, i, int(n), config, goal=(float(h[:, n].min()), float(h[:, n].max())) if h is not None else None)
            if r is not None and (r[0] > post_lo[n] or r[1] < post_hi[n]):
                post_lo[n], post_hi[n] = max(r[0], post_lo[n]), min(r[1], post_hi[n])
                bounds.refined += 1
        if h is not None and config.assume_observed:
            seen01 = ((h == 0) | (h == 1)).all(axis=0)
            assume = is_int & seen01 & ((post_lo < 0) | (post_hi > 1))
            post_lo[assume], post_hi[assume] = 0.0, 1.0
            assumed |= assume
        copies_of = copies & bounds.assumed[i][np.minimum(col, bounds.assumed[i].size - 1)] if copies.any() else copies
        assumed |= copies_of
    if config.refine and budget <= 0:
        bounds.notes.append(f"cone refinement stopped after {config.max_refine} neurons")
    return bounds


def inputs_of(w, rows: np.ndarray) -> np.ndarray:
    """Sorted indices of the inputs that any of ``rows`` reads."""
    if sp.issparse(w):
        w = w if w.format == "csr" else w.tocsr()
        ptr, ind = w.indptr, w.indices
        parts = [ind[ptr[r] : ptr[r + 1]] for r in rows]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return np.nonzero(np.any(np.asarray(w)[rows] != 0, axis=0))[0]


def _sub(w, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Dense ``w[rows][:, cols]`` (``cols`` sorted and holding every input the rows read)."""
    if sp.issparse(w):
        w = w if w.format == "csr" else w.tocsr()
        out = np.zeros((len(rows), len(cols)))
        ptr, ind, dat = w.indptr, w.indices, w.data
        for j, r in enumerate(rows):
            sl = slice(ptr[r], ptr[r + 1])
            out[j, np.searchsorted(cols, ind[sl])] = dat[sl]
        return out
    return np.asarray(w, dtype=np.float64)[np.ix_(rows, cols)]


def cone_range(net: Network, bounds: Bounds, layer: int, neuron: int, config: BoundsConfig, goal: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """Exact range of one neuron's output over all assignments of a small integer frontier.

    The cone grows back one layer at a time (depth 2 .. ``refine_depth``); at each depth, if every
    frontier value is an integer with a known interval and their joint assignments number at most
    ``max_combos``, the cone is evaluated on all of them. Returns the tightest (lo, hi) found, or None.
    ``goal`` (the range seen on probes) stops the search early: no sound bound can be tighter.
    """
    levels = [np.array([neuron])]  # levels[d] = indices of values at value index layer + 1 - d
    best = None
    for depth in range(1, config.refine_depth + 1):
        li = layer - depth + 1  # layer whose weights connect levels[depth - 1] to levels[depth]
        if li < 0:
            break
        levels.append(inputs_of(net.layers[li].weight, levels[-1]))
        v = li  # value index of the frontier
        front = levels[-1]
        if depth < 2:
            continue
        if not bounds.integer[v][front].all():
            break
        flo, fhi = bounds.lo[v][front], bounds.hi[v][front]
        span = fhi - flo + 1
        if not np.all(np.isfinite(span)) or np.sum(np.log2(span)) > np.log2(config.max_combos):
            continue  # a deeper frontier may hold fewer values (bits instead of a byte)
        sizes = span.astype(np.int64)
        total = int(np.prod(sizes)) if sizes.size else 1
        vals = (np.stack(np.unravel_index(np.arange(total), sizes), axis=1) + flo).astype(np.float64) if sizes.size else np.zeros((1, 0))
        for d in range(depth, 0, -1):  # evaluate from the frontier up to the neuron
            lj = layer - d + 1
            lay = net.layers[lj]
            w = _sub(lay.weight, levels[d - 1], levels[d])
            bias = 0.0 if lay.bias is None else np.asarray(lay.bias, dtype=np.float64)[levels[d - 1]]
            vals = activate(lay.activation, vals @ w.T + bias)
        r = (float(vals.min()), float(vals.max()))
        best = r if best is None else (max(best[0], r[0]), min(best[1], r[1]))
        if best[1] <= 1 or best == goal:
            break
    return best
