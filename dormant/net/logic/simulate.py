"""Exact, batched evaluation of a ``Network`` with an explicit loop (no recursion, any depth).

Results are float64, exact for the integer circuits this package studies as long as every
intermediate stays below 2**53 (float32 is used inside only where it provably gives the same
numbers, see below).

Compiled circuits are mostly copy wires: a neuron ``relu(1 * x)`` that carries a value one layer
further (84% of the neurons of an MD5 net). ``forward`` therefore runs a *plan* instead of the
layers one by one:

* every distinct value gets a row ("slot") in one table ``V`` of shape (slots, batch); a slot is
  reused once its value is dead, so the table holds about one layer's width of rows and stays in
  cache;
* a copy wire (one weight 1, bias 0, identity activation or a ReLU reading a non-negative value)
  gets no slot of its own: it *is* its source, so it costs nothing;
* the remaining neurons of a layer are one CSR matrix whose columns are slots; a layer costs one
  sparse product over its real gates, written into free slots;
* mostly-dense layers (over 25% non-zero) are multiplied densely, with no aliasing;
* integer circuits run in float32 when that is provably exact: every weight, bias and input is an
  integer, activations keep integers (relu, identity, step), and every neuron's
  ``sum |w_j| * bound(input_j) + |b|`` stays below ``2**24`` (so no partial sum can round), where
  each table row carries a bound on its magnitudes (an estimate, or a measured maximum). A layer
  that fails the test switches the batch to float64 for the rest of the pass. float32 halves the
  memory traffic; results are identical;
* with numba installed, runs of sparse layers go through one compiled loop that accumulates each
  neuron in a small buffer and writes it straight into its row (``BACKEND``; small work stays on
  the numpy path to avoid compile time).

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

from dormant.net.load.network import Network

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
def _private_csr_matvecs():
    """scipy's compiled kernel behind ``csr_matrix @ dense`` (``Y += A @ X``), if it works here."""
    try:
        from scipy.sparse._sparsetools import csr_matvecs

        y = np.zeros((1, 2))
        csr_matvecs(1, 2, 2, np.array([0, 2], np.int32), np.array([0, 1], np.int32), np.array([2.0, -1.0]), np.array([1.0, 2.0, 3.0, 4.0]), y.ravel())
        return csr_matvecs if y.tolist() == [[-1.0, 0.0]] else None
    except Exception:  # pragma: no cover - another scipy layout: use the public operator
        return None


_csr_matvecs = _private_csr_matvecs()

F32_EXACT = float(2**24)  # integers up to this magnitude are exact in float32
_INTEGER_ACTS = {"relu", "identity", "step"}


@dataclass
class _Step:
    """One layer of a plan: compute its real neurons into the table rows ``new_slots``.

    Sparse steps hold CSR arrays (``indptr``, ``indices`` over table rows, ``data``); dense steps
    hold the full weight and the rows of the previous layer's lanes (``in_slots``).
    """

    lane_slots: np.ndarray  # table row of every output lane
    new_slots: np.ndarray  # table rows written by this layer (one per computed neuron)
    activation: str
    bias: np.ndarray  # (n_new,)
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    data: np.ndarray | None = None
    dense: np.ndarray | None = None
    in_slots: np.ndarray | None = None
    row_l1: float = 0.0  # max over computed rows of sum |w| + |b|: bounds |pre-activation| / max |input|
    _f32: tuple | None = None  # (data or dense, bias) in float32, made on first use

    @property
    def n_weights(self) -> int:
        return int(self.data.size if self.dense is None else self.dense.size)

    def compute(self, table: np.ndarray, f32: bool) -> np.ndarray:
        """Pre-activations ``W @ table + b`` of the computed neurons, shape (n_new, batch)."""
        if f32:
            if self._f32 is None:
                w = self.data if self.dense is None else self.dense
                self._f32 = (w.astype(np.float32), self.bias.astype(np.float32))
            w, bias = self._f32
        else:
            w, bias = (self.data if self.dense is None else self.dense), self.bias
        if self.dense is not None:
            return w @ table[self.in_slots] + bias[:, None]
        y = np.empty((len(self.new_slots), table.shape[1]), dtype=table.dtype)
        y[:] = bias[:, None]
        if _csr_matvecs is not None:
            _csr_matvecs(len(self.new_slots), table.shape[0], table.shape[1], self.indptr, self.indices, w, table.ravel(), y.ravel())
        else:  # pragma: no cover
            y += sp.csr_matrix((w, self.indices, self.indptr), shape=(len(self.new_slots), table.shape[0])) @ table
        return y


@dataclass
class Plan:
    start: int
    stop: int
    n_in: int
    n_slots: int  # rows of the value table
    steps: list[_Step] = field(default_factory=list)
    key: tuple = ()
    integer: bool = False  # all weights and biases integers below 2**24, integer-preserving activations
    _flat: "_Flat | None" = None

    @property
    def flat(self) -> "_Flat":
        if self._flat is None:
            self._flat = _Flat.of(self)
        return self._flat

    @property
    def n_gate_weights(self) -> int:
        """Non-zero weights actually multiplied per input (copy wires excluded)."""
        return int(sum(s.n_weights for s in self.steps))


def _plan_key(net: Network, start: int, stop: int) -> tuple:
    """Identity of every layer's arrays plus one CRC over all their values (sees in-place edits)."""
    ids, crc = [], 0
    for layer in net.layers[start:stop]:
        w, b = layer.weight, layer.bias
        values = w.data if hasattr(w, "indptr") else w
        ids.append((id(w), id(b), id(values), layer.activation))
        for arr in (values, b):  # read-only arrays (memory maps) cannot change: identity suffices
            if arr is not None and arr.flags.writeable:
                crc = zlib.crc32(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr), crc)
    return tuple(ids), crc


def _small_integers(a: np.ndarray) -> bool:
    return bool(np.all(np.abs(a) < F32_EXACT) and np.array_equal(a, np.round(a)))


def build_plan(net: Network, start: int = 0, stop: int | None = None) -> Plan:
    """Map layers ``start..stop`` to table computations (see the module docstring)."""
    stop = len(net.layers) if stop is None else stop
    layers = net.layers[start:stop]
    n_in = layers[0].in_features if layers else 0
    prev_slots = np.arange(n_in, dtype=np.int64)
    nonneg = np.zeros(n_in + sum(l.out_features for l in layers), dtype=bool)  # per value: known to be >= 0
    n_values = n_in
    steps: list[_Step] = []
    for i, layer in enumerate(layers):
        out_f, in_f = layer.weight.shape
        if in_f != len(prev_slots):
            raise ValueError(f"layer {start + i} expects {in_f} inputs, previous layer gives {len(prev_slots)}")
        bias = np.zeros(out_f) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        w = layer.weight
        if not sp.issparse(w):  # dense (possibly a float16 memory map): find the non-zeros once
            w = np.asarray(w)
            nz_rows, nz_cols = np.nonzero(w)
        if not sp.issparse(w) and len(nz_rows) > DENSE_FRACTION * out_f * in_f:
            slots = np.arange(n_values, n_values + out_f, dtype=np.int64)
            dense = np.asarray(w, dtype=np.float64)
            steps.append(_Step(slots, slots, layer.activation, bias, dense=dense, in_slots=prev_slots, row_l1=float(np.max(np.abs(dense).sum(axis=1) + np.abs(bias), initial=0.0))))
            nonneg[n_values : n_values + out_f] = layer.activation in _NONNEG
            n_values += out_f
            prev_slots = slots
            continue
        if sp.issparse(w):
            csr = w.tocsr()
            indptr, indices, data = csr.indptr.astype(np.int64), csr.indices.astype(np.int64), np.asarray(csr.data, dtype=np.float64)
        else:  # np.nonzero lists entries row by row, columns ascending: already CSR order
            indptr = np.concatenate([[0], np.cumsum(np.bincount(nz_rows, minlength=out_f))]).astype(np.int64)
            indices, data = nz_cols.astype(np.int64), np.asarray(w[nz_rows, nz_cols], dtype=np.float64)
        row_nnz = np.diff(indptr)
        # copy wires: one weight 1, bias 0, and an activation that leaves the (non-negative) value as is
        one = row_nnz == 1
        head = indptr[:-1][one]
        src = np.full(out_f, -1, dtype=np.int64)
        src[one] = prev_slots[indices[head]]
        alias = one & (bias == 0.0)
        alias[one] &= data[head] == 1.0
        if layer.activation == "relu":
            alias[alias] &= nonneg[src[alias]]
        elif layer.activation != "identity":
            alias[:] = False
        compute = np.flatnonzero(~alias)
        lane_slots = np.empty(out_f, dtype=np.int64)
        lane_slots[alias] = src[alias]
        lane_slots[compute] = np.arange(n_values, n_values + len(compute))
        entry_rows = np.repeat(np.arange(out_f), row_nnz)
        keep = ~alias[entry_rows]
        sub_data = data[keep]
        pos = np.cumsum(~alias) - 1  # row -> index among computed rows
        l1 = np.bincount(pos[entry_rows[keep]], weights=np.abs(sub_data), minlength=len(compute)) + np.abs(bias[compute])
        steps.append(
            _Step(
                lane_slots, lane_slots[compute], layer.activation, bias[compute],
                indptr=np.concatenate([[0], np.cumsum(row_nnz[compute])]), indices=prev_slots[indices[keep]], data=sub_data,
                row_l1=float(np.max(l1, initial=0.0)),
            )
        )
        nonneg[n_values : n_values + len(compute)] = layer.activation in _NONNEG
        n_values += len(compute)
        prev_slots = lane_slots
    phys, n_rows = _allocate(steps, n_in, n_values)
    idx = np.int32 if n_rows < 2**31 - 1 else np.int64
    integer = True
    for step in steps:
        step.lane_slots, step.new_slots = phys[step.lane_slots], phys[step.new_slots]
        if step.dense is not None:
            step.in_slots = phys[step.in_slots]
        else:
            step.indptr, step.indices = step.indptr.astype(idx), phys[step.indices].astype(idx)
        weights = step.data if step.dense is None else step.dense.ravel()
        integer = integer and step.activation in _INTEGER_ACTS and _small_integers(weights) and _small_integers(step.bias)
    return Plan(start, stop, n_in, n_rows, steps, integer=bool(integer))


def _allocate(steps: list[_Step], n_in: int, n_values: int) -> tuple[np.ndarray, int]:
    """Give every value a table row, reusing rows of dead values (linear-scan allocation).

    A value is needed up to the step after the last layer it is a lane of. The rows of values whose
    last reader is step ``s`` are freed after step ``s`` has its own rows, so a step never writes a
    row it still reads (the compiled kernel writes each neuron as soon as it is computed).
    """
    last = np.zeros(n_values, dtype=np.int64)
    for j, step in enumerate(steps):
        last[step.lane_slots] = j + 1
    order = np.argsort(last, kind="stable")
    bounds = np.searchsorted(last[order], np.arange(len(steps) + 2))
    phys = np.full(n_values, -1, dtype=np.int64)
    phys[:n_in] = np.arange(n_in)
    free: list[int] = []
    n_rows = n_in
    for s, step in enumerate(steps):
        new = step.new_slots
        take = min(len(free), len(new))
        rows = [free.pop() for _ in range(take)]
        rows.extend(range(n_rows, n_rows + len(new) - take))
        n_rows += len(new) - take
        phys[new] = rows
        dying = order[bounds[s] : bounds[s + 1]]
        free.extend(int(r) for r in phys[dying] if r >= 0)
    return phys, n_rows


# ----------------------------------------------------------------------------- compiled kernel
try:  # optional: a compiled loop over whole runs of sparse layers
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _numba = None

BACKEND = "auto"  # "auto": the kernel for large work when numba is installed; "numba"; "numpy"
MEASURE_AT = 256.0  # a row whose bound estimate reaches this gets its maximum measured
KERNEL_MIN_WORK = 2_000_000  # gate weights x batch below which the numpy loop is used (no JIT wait)
_ACT_CODE = {"identity": 0, "relu": 1, "step": 2}


def _run_steps_py(table, acc, est, rowmax, s0, s1, step_rows, row_ptr, cols, vals, absvals, bias, dst, act, check, measure_at):
    """Evaluate steps ``s0..s1`` in place; return the first step not done (``s1`` when all are).

    Each neuron is accumulated in ``acc`` (one batch-length row that stays in L1) and written to
    its table row at once: ``acc = b; acc += w_j * table[col_j]; table[dst] = act(acc)``.

    With ``check`` (float32 mode) every table row carries a bound ``rowmax`` on its magnitudes. A
    step runs only if every neuron's ``sum |w_j| rowmax[col_j] + |b|`` is below ``2**24`` (then no
    partial sum can round); otherwise the function returns that step and the caller continues in
    float64. A new row's bound is that estimate, or its measured maximum once the estimate passes
    ``2**20`` (estimates of chained gates grow geometrically; a measurement resets them).
    """
    batch = table.shape[1]
    for s in range(s0, s1):
        r0, r1 = step_rows[s], step_rows[s + 1]
        if check:
            for r in range(r0, r1):
                e = abs(bias[r])
                for jj in range(row_ptr[r], row_ptr[r + 1]):
                    e += absvals[jj] * rowmax[cols[jj]]
                if e >= 16777216.0:
                    return s
                est[r - r0] = e
        a = act[s]
        for r in range(r0, r1):
            b = bias[r]
            for k in range(batch):
                acc[k] = b
            for jj in range(row_ptr[r], row_ptr[r + 1]):
                w = vals[jj]
                src = table[cols[jj]]
                for k in range(batch):
                    acc[k] += w * src[k]
            d = dst[r]
            out = table[d]
            if a == 1:
                for k in range(batch):
                    v = acc[k]
                    out[k] = v if v > 0 else 0.0
            elif a == 2:
                for k in range(batch):
                    out[k] = 1.0 if acc[k] > 0 else 0.0
            else:
                for k in range(batch):
                    out[k] = acc[k]
            if check:
                e = est[r - r0]
                if e >= measure_at:
                    e = 0.0
                    for k in range(batch):
                        e = max(e, abs(out[k]))
                rowmax[d] = 1.0 if a == 2 else e
    return s1


_run_steps = _numba.njit(cache=True, nogil=True)(_run_steps_py) if _numba is not None else None


@dataclass
class _Flat:
    """The sparse steps of a plan as concatenated arrays, for the kernel."""

    step_rows: np.ndarray
    row_ptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    bias: np.ndarray
    dst: np.ndarray
    act: np.ndarray
    ok: np.ndarray  # per step: the kernel can run it (sparse, identity/relu/step)
    _f32: tuple | None = None

    @staticmethod
    def of(plan: "Plan") -> "_Flat":
        ok = np.array([s.dense is None and s.activation in _ACT_CODE for s in plan.steps], dtype=bool)
        sparse = [s if k else _Step(s.lane_slots, s.new_slots[:0], "identity", s.bias[:0], indptr=np.zeros(1, np.int64), indices=np.zeros(0, np.int64), data=np.zeros(0)) for s, k in zip(plan.steps, ok)]
        rows_per = np.array([len(s.new_slots) for s in sparse], dtype=np.int64)
        nnz_per = np.array([len(s.data) for s in sparse], dtype=np.int64)
        nnz_off = np.concatenate([[0], np.cumsum(nnz_per)])
        row_ptr = np.concatenate([[0]] + [s.indptr[1:].astype(np.int64) + off for s, off in zip(sparse, nnz_off)])
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        return _Flat(
            step_rows=np.concatenate([[0], np.cumsum(rows_per)]).astype(np.int64),
            row_ptr=row_ptr.astype(np.int64),
            cols=cat([s.indices for s in sparse], np.int64),
            vals=cat([s.data for s in sparse], np.float64),
            bias=cat([s.bias for s in sparse], np.float64),
            dst=cat([s.new_slots for s in sparse], np.int64),
            act=np.array([_ACT_CODE.get(s.activation, 0) for s in sparse], dtype=np.int64),
            ok=ok,
        )

    @property
    def max_rows(self) -> int:
        return int(np.max(np.diff(self.step_rows), initial=1))

    def values(self, f32: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(weights, |weights|, biases)`` in the table's dtype (|weights| stay float64)."""
        if self._f32 is None:
            absvals = np.abs(self.vals)
            self._f32 = ((self.vals, absvals, self.bias), (self.vals.astype(np.float32), absvals, self.bias.astype(np.float32)))
        return self._f32[1 if f32 else 0]


def _use_kernel(plan: "Plan", batch: int) -> bool:
    if _run_steps is None or BACKEND == "numpy":
        return False
    return BACKEND == "numba" or plan.n_gate_weights * batch >= KERNEL_MIN_WORK


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
    f32 = plan.integer and _small_integers(x)
    table = np.zeros((plan.n_slots, batch), dtype=np.float32 if f32 else np.float64)
    table[: plan.n_in] = x.T
    rowmax = np.zeros(plan.n_slots)  # float32 mode: bound on |value| per table row
    rowmax[: plan.n_in] = np.max(np.abs(x), axis=0, initial=0.0)
    kernel = _use_kernel(plan, batch)
    flat = plan.flat if kernel else None
    if kernel:
        acc, est = np.empty(batch, dtype=table.dtype), np.empty(flat.max_rows)
    n_steps, s = len(plan.steps), 0
    while s < n_steps:
        step, first = plan.steps[s], s
        if kernel and flat.ok[s]:
            end = s + 1
            while end < n_steps and flat.ok[end] and not (wanted is None or plan.start + end - 1 in wanted):
                end += 1
            vals, absvals, bias = flat.values(f32)
            s = _run_steps(table, acc, est, rowmax, s, end, flat.step_rows, flat.row_ptr, flat.cols, vals, absvals, bias, flat.dst, flat.act, f32, MEASURE_AT)
            if s < end:  # float32 could round from here on
                f32, table = False, table.astype(np.float64)
                acc = acc.astype(np.float64)
        else:
            if f32 and step.row_l1 * max(float(rowmax.max()), 1.0) >= F32_EXACT:
                f32, table = False, table.astype(np.float64)
                if kernel:
                    acc = acc.astype(np.float64)
            y = step.compute(table, f32)
            if step.activation == "relu":
                np.maximum(y, 0.0, out=y)
            else:
                y = activate(step.activation, y)
            table[step.new_slots] = y
            if f32:
                rowmax[step.new_slots] = np.max(np.abs(y), axis=1, initial=0.0)
            s += 1
        i = plan.start + s - 1
        if s > first and (wanted is None or i in wanted):
            acts[i][row0 : row0 + batch] = table[plan.steps[s - 1].lane_slots].T
    last = plan.steps[-1].lane_slots if plan.steps else np.arange(plan.n_in)
    return table[last].T.astype(np.float64)


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
    a dict ``layer index -> post-activation values`` (batch, out). Everything returned is float64.

    Example::

        y, acts = forward(net, x, record=[len(net.layers) - 3])   # output and the digest layer
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
    out = np.concatenate(outs, axis=0) if outs else np.empty((0, layers[-1].out_features))
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
