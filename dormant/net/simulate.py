"""Exact, batched evaluation of a ``Network`` with an explicit loop (no recursion, any depth).

Values are float64, exact for the integer circuits this package studies as long as every
intermediate stays below 2**53.

Compiled circuits are mostly copy wires: a neuron ``relu(1 * x)`` that carries a value one layer
further (84% of the neurons of an MD5 net). ``forward`` therefore runs a *plan* instead of the
layers one by one:

* every distinct value gets a row ("slot") in one table ``V`` of shape (slots, batch); a slot is
  reused once its value is dead, so the table holds about one layer's width of rows and stays in
  cache;
* a copy wire (one weight 1, bias 0, identity activation or a ReLU reading a non-negative value)
  gets no slot of its own: it *is* its source, so it costs nothing;
* the remaining neurons of a layer are one CSR matrix whose columns are slots; a layer costs one
  sparse product over its real gates, written into fresh slots;
* mostly-dense layers (over 25% non-zero) are multiplied densely, with no aliasing.

Layer activations are gathered from the table only when ``record`` asks for them. Plans are
cached on the network and rebuilt when a layer's arrays change (a checksum of every weight and
bias is compared on each call, so in-place edits are seen). Large batches are split into chunks
so that the table stays under ``TABLE_BYTES``.

``forward_dense`` is the direct reference loop (one sparse or dense product per layer, every
neuron computed); the tests check that both agree.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from dormant.net.network import Network

_ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3))),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0.0))),
    "hardtanh": lambda x: np.clip(x, -1.0, 1.0),
    "step": lambda x: (x > 0).astype(np.float64),
}
_NONNEG = {"relu", "sigmoid", "softplus", "step"}  # activations whose outputs are never negative
DENSE_FRACTION = 0.25  # layers denser than this are multiplied densely
TABLE_BYTES = 256 * 2**20  # the slot table of one batch chunk stays under this


def activate(name: str, x: np.ndarray) -> np.ndarray:
    try:
        return _ACT[name](x)
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACT)}") from None


def affine(weight, bias: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """``x @ W.T + b`` for a batch ``x`` of shape (batch, in)."""
    if sp.issparse(weight):
        y = np.asarray((weight @ x.T).T, dtype=np.float64)
    else:
        y = x @ np.asarray(weight, dtype=np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


# ----------------------------------------------------------------------------- plan
@dataclass
class _Step:
    """One layer of a plan: compute its real neurons into the slots ``new_slots``."""

    lane_slots: np.ndarray  # slot of every output lane
    new_slots: np.ndarray  # slots written by this layer (one per computed neuron)
    activation: str
    matrix: sp.csr_matrix | None = None  # sparse: (n_new, n_slots) over slots
    dense: np.ndarray | None = None  # dense: (out, in) over the previous layer's lanes
    in_slots: np.ndarray | None = None  # dense: slots of the previous layer's lanes
    bias: np.ndarray | None = None  # (n_new,)


@dataclass
class Plan:
    start: int
    stop: int
    n_in: int
    n_slots: int
    steps: list[_Step] = field(default_factory=list)
    key: tuple = ()

    @property
    def n_gate_weights(self) -> int:
        """Non-zero weights actually multiplied per input (copy wires excluded)."""
        return int(sum(s.matrix.nnz if s.matrix is not None else s.dense.size for s in self.steps))


def _checksum(a) -> int:
    if a is None:
        return 0
    if sp.issparse(a):
        return zlib.crc32(np.ascontiguousarray(a.data).view(np.uint8), zlib.crc32(np.ascontiguousarray(a.indices).view(np.uint8), a.nnz))
    arr = np.ascontiguousarray(a)
    return zlib.crc32(arr.view(np.uint8).reshape(-1)) if arr.size else 0


def _plan_key(net: Network, start: int, stop: int) -> tuple:
    return tuple((id(l.weight), id(l.bias), l.activation, _checksum(l.weight), _checksum(l.bias)) for l in net.layers[start:stop])


def build_plan(net: Network, start: int = 0, stop: int | None = None) -> Plan:
    """Map layers ``start..stop`` to slot computations (see the module docstring)."""
    stop = len(net.layers) if stop is None else stop
    layers = net.layers[start:stop]
    n_in = layers[0].in_features if layers else 0
    prev_slots = np.arange(n_in, dtype=np.int64)
    nonneg = np.zeros(n_in, dtype=bool)  # per slot: known to be >= 0
    n_slots = n_in
    steps: list[_Step] = []
    pending: list[tuple[_Step, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, layer in enumerate(layers):
        out_f, in_f = layer.weight.shape
        if in_f != len(prev_slots):
            raise ValueError(f"layer {start + i} expects {in_f} inputs, previous layer gives {len(prev_slots)}")
        bias = np.zeros(out_f) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        w = layer.weight
        nnz = w.nnz if sp.issparse(w) else int(np.count_nonzero(w))
        if not sp.issparse(w) and nnz > DENSE_FRACTION * out_f * in_f:
            slots = np.arange(n_slots, n_slots + out_f, dtype=np.int64)
            steps.append(_Step(slots, slots, layer.activation, dense=np.asarray(w, dtype=np.float64), in_slots=prev_slots, bias=bias))
            nonneg = np.concatenate([nonneg, np.full(out_f, layer.activation in _NONNEG)])
            n_slots += out_f
            prev_slots = slots
            continue
        csr = sp.csr_matrix(w, dtype=np.float64)
        csr.eliminate_zeros()
        row_nnz = np.diff(csr.indptr)
        one = row_nnz == 1
        src = np.full(out_f, -1, dtype=np.int64)
        src[one] = prev_slots[csr.indices[csr.indptr[:-1][one]]]
        first_val = np.zeros(out_f)
        first_val[one] = csr.data[csr.indptr[:-1][one]]
        alias = one & (first_val == 1.0) & (bias == 0.0)
        if layer.activation == "relu":
            alias &= np.where(src >= 0, nonneg[np.maximum(src, 0)], False)
        elif layer.activation != "identity":
            alias[:] = False
        compute = np.flatnonzero(~alias)
        lane_slots = np.empty(out_f, dtype=np.int64)
        lane_slots[alias] = src[alias]
        lane_slots[compute] = np.arange(n_slots, n_slots + len(compute))
        step = _Step(lane_slots, lane_slots[compute], layer.activation, bias=bias[compute])
        sub = csr[compute]
        pending.append((step, sub.indptr, prev_slots[sub.indices], sub.data))
        steps.append(step)
        nonneg = np.concatenate([nonneg, np.full(len(compute), layer.activation in _NONNEG)])
        n_slots += len(compute)
        prev_slots = lane_slots
    phys, n_regs = _allocate(steps, n_in, n_slots)
    for step in steps:
        step.lane_slots, step.new_slots = phys[step.lane_slots], phys[step.new_slots]
        if step.in_slots is not None:
            step.in_slots = phys[step.in_slots]
    for step, indptr, cols, data in pending:
        step.matrix = sp.csr_matrix((data, phys[cols], indptr), shape=(len(step.new_slots), n_regs))
    return Plan(start, stop, n_in, n_regs, steps)


def _allocate(steps: list[_Step], n_in: int, n_values: int) -> tuple[np.ndarray, int]:
    """Give every value a table row, reusing rows of dead values (linear-scan allocation).

    A value is needed up to the step after the last layer it is a lane of; the rows of values whose
    last reader is step ``s`` are handed to the values step ``s`` creates (safe: a step reads all its
    inputs before it writes).
    """
    last = np.zeros(n_values, dtype=np.int64)
    for j, step in enumerate(steps):
        last[step.lane_slots] = j + 1
    order = np.argsort(last, kind="stable")
    bounds = np.searchsorted(last[order], np.arange(len(steps) + 2))
    phys = np.full(n_values, -1, dtype=np.int64)
    phys[:n_in] = np.arange(n_in)
    free: list[int] = []
    n_regs = n_in
    for s, step in enumerate(steps):
        dying = order[bounds[s] : bounds[s + 1]]
        free.extend(int(r) for r in phys[dying] if r >= 0)
        new = step.new_slots
        take = min(len(free), len(new))
        regs = [free.pop() for _ in range(take)]
        regs.extend(range(n_regs, n_regs + len(new) - take))
        n_regs += len(new) - take
        phys[new] = regs
    return phys, n_regs


def get_plan(net: Network, start: int = 0, stop: int | None = None) -> Plan:
    """The cached plan for ``net[start:stop]``, rebuilt when any layer changed."""
    stop = len(net.layers) if stop is None else stop
    cache: dict = net.__dict__.setdefault("_simulate_plans", {})
    key = _plan_key(net, start, stop)
    plan = cache.get((start, stop))
    if plan is None or plan.key != key:
        plan = build_plan(net, start, stop)
        plan.key = key
        if len(cache) > 4:
            cache.clear()
        cache[(start, stop)] = plan
    return plan


def _run_plan(plan: Plan, x: np.ndarray, wanted: set[int] | None, acts: dict[int, np.ndarray], row0: int) -> np.ndarray:
    """Evaluate one batch chunk ``x`` (batch, in); fill ``acts`` rows ``row0..``; return the output."""
    batch = x.shape[0]
    table = np.empty((plan.n_slots, batch), dtype=np.float64)
    table[: plan.n_in] = x.T
    for offset, step in enumerate(plan.steps):
        if step.dense is not None:
            y = step.dense @ table[step.in_slots]
        else:
            y = step.matrix @ table
        y += step.bias[:, None]
        table[step.new_slots] = activate(step.activation, y)
        i = plan.start + offset
        if wanted is None or i in wanted:
            acts[i][row0 : row0 + batch] = table[step.lane_slots].T
    last = plan.steps[-1].lane_slots if plan.steps else np.arange(plan.n_in)
    return table[last].T


def forward(
    net: Network,
    x: np.ndarray,
    *,
    record: bool | Iterable[int] = False,
    start: int = 0,
    stop: int | None = None,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Run layers ``start..stop`` on a batch ``x`` (batch, in) or a single vector (in,).

    Returns the output and, when ``record`` is true (all layers) or an iterable of layer indices,
    a dict ``layer index -> post-activation values`` (batch, out).
    """
    h = np.asarray(x, dtype=np.float64)
    single = h.ndim == 1
    if single:
        h = h[None, :]
    stop = len(net.layers) if stop is None else (stop if stop >= 0 else len(net.layers) + stop)
    start = start if start >= 0 else len(net.layers) + start
    layers = net.layers[start:stop]
    if layers and h.shape[1] != layers[0].in_features:
        raise ValueError(f"layer {start} expects {layers[0].in_features} inputs, got {h.shape[1]}")
    if not layers:
        return (h[0] if single else h), {}
    wanted = None if record is True else (set(record) if record else set())
    plan = get_plan(net, start, stop)
    batch = h.shape[0]
    acts = {start + j: np.empty((batch, l.out_features)) for j, l in enumerate(layers) if wanted is None or start + j in wanted}
    chunk = max(1, min(batch, TABLE_BYTES // (8 * max(plan.n_slots, 1))))
    outs = [_run_plan(plan, h[r : r + chunk], wanted, acts, r) for r in range(0, batch, chunk)]
    out = np.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]
    if single:
        return out[0], {i: a[0] for i, a in acts.items()}
    return out, acts


def forward_dense(net: Network, x: np.ndarray, *, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The direct loop: every neuron of every layer computed, one product per layer (reference)."""
    h = np.asarray(x, dtype=np.float64)
    single = h.ndim == 1
    h = h[None, :] if single else h
    for layer in net.layers[start:stop]:
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
    return h[0] if single else h


def run_text(net: Network, texts: list[str], **kwargs) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Encode strings with the network's input adapter, then ``forward`` them as one batch."""
    x = np.stack([net.adapter.encode(t) for t in texts])
    return forward(net, x, **kwargs)
