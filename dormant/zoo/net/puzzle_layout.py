"""Lay a compiled network out on a given width profile: the public puzzle's 2722 widths.

The compiler (``compile.compile_circuit``) gives a network whose layers are as narrow and as few as
the circuit allows. ``fit_widths`` stretches and pads it onto a target profile ``widths`` (input
width, then each layer's output width), keeping the function:

* **stretch**: each compiled layer ``j`` is placed at a target layer ``p(j)``, increasing, the last
  at the last; a target layer between two placed ones is a layer of copy wires ``relu(x) = x``
  carrying the previous layer's lanes (exact: every carried value is non-negative). The placement
  minimises, by dynamic programming over (compiled layer, target layer), first the number of target
  layers the carried lanes do not fit in, then by how many lanes;
* **pad**: a layer narrower than its target gets *filler* neurons at its end: no weights, bias 0,
  constant 0, read by nobody. Their count is reported (``FitReport.filler``).

Example::

    fitted, report = fit_widths(result.network, puzzle_widths())
    fitted.widths == puzzle_widths()     # when report.over_layers == 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from dormant.net.load.network import Layer, Network

PUZZLE_WIDTHS = Path(__file__).with_name("data") / "puzzle_widths.txt"


def puzzle_widths(path: str | Path = PUZZLE_WIDTHS) -> list[int]:
    """The public puzzle's widths: input width, then each Linear layer's output width."""
    return [int(x) for x in Path(path).read_text().replace("\n", ",").split(",") if x.strip()]


@dataclass
class FitReport:
    placed: list[int]  # compiled layer j (0-based) -> target layer index (0-based)
    over_layers: int  # target layers whose lanes exceed the target width
    over_lanes: int  # by how many lanes in all
    filler: int  # filler neurons added
    copy_layers: int  # target layers of copy wires inserted
    matched: int  # target layers whose width equals the target
    mismatches: list[tuple[int, int, int]] = field(default_factory=list)  # (layer, width, target width)


def _place(natural: list[int], target: list[int]) -> list[int]:
    """Target position of each compiled layer (see the module docstring)."""
    n, t = len(natural) - 1, len(target) - 1  # layers
    if n > t:
        raise ValueError(f"{n} compiled layers do not fit in {t} target layers")
    tw = np.asarray(target[1:], dtype=np.int64)
    big = 1 << 20

    def cost(width: int) -> np.ndarray:  # per target layer: carrying `width` lanes there
        over = np.maximum(width - tw, 0)
        return np.where(over > 0, big + over, 0)

    inf = np.iinfo(np.int64).max // 4
    back = np.zeros((n, t), dtype=np.int32)
    # f[t]: best cost with compiled layer j at target t (layers before carried as copies)
    c_prev = np.concatenate([[0], np.cumsum(cost(natural[0]))])  # copies of the input before layer 0
    f = np.full(t, inf, dtype=np.int64)
    f[: t - n + 1] = cost(natural[1])[: t - n + 1] + c_prev[: t - n + 1]
    back[0] = -1
    for j in range(1, n):
        cj = np.concatenate([[0], np.cumsum(cost(natural[j]))])  # copies of compiled layer j-1 ... as carried width natural[j]
        # placing layer j (0-based, output width natural[j+1]) at s: previous layer j-1 at s' < s,
        # target layers s'+1..s-1 carry natural[j] lanes (layer j-1's output)
        g = f - cj[1:]  # f[s'] - C(s'), C(x) = sum of cost over target layers 0..x
        best = np.minimum.accumulate(g)
        run = np.where(g == best, np.arange(t), 0)
        arg = np.maximum.accumulate(run)  # latest argmin so far
        new = np.full(t, inf, dtype=np.int64)
        new[1:] = cost(natural[j + 1])[1:] + cj[1:t] + best[:-1]
        new[: j] = inf  # at least j layers before
        back[j, 1:] = arg[:-1]
        f = new
    pos = [t - 1]
    for j in range(n - 1, 0, -1):
        pos.append(int(back[j, pos[-1]]))
    return pos[::-1]


def _pad(weight: sp.csr_matrix, bias: np.ndarray, rows: int, cols: int) -> tuple[sp.csr_matrix, np.ndarray]:
    w = sp.csr_matrix((weight.data, weight.indices, weight.indptr), shape=(weight.shape[0], cols))
    if rows > w.shape[0]:
        w = sp.vstack([w, sp.csr_matrix((rows - w.shape[0], cols))]).tocsr()
        bias = np.concatenate([bias, np.zeros(rows - len(bias))])
    return w, bias


def fit_widths(net: Network, widths: list[int]) -> tuple[Network, FitReport]:
    """``net`` stretched and padded onto ``widths`` (see the module docstring)."""
    natural = net.widths
    if natural[0] != widths[0]:
        raise ValueError(f"input width {natural[0]} differs from the target's {widths[0]}")
    placed = _place(natural, widths)
    layers: list[Layer] = []
    cur = natural[0]  # lanes carried (the compiled layer's output width)
    prev_w = widths[0]
    j = 0
    report = FitReport(placed, 0, 0, 0, 0, 0)
    for t in range(len(widths) - 1):
        if j < len(placed) and placed[j] == t:
            src = net.layers[j]
            w = sp.csr_matrix(src.weight, dtype=np.float64)
            b = np.zeros(src.out_features) if src.bias is None else np.asarray(src.bias, dtype=np.float64)
            act, name = src.activation, src.name
            cur = src.out_features
            j += 1
        else:  # copy wires carrying the previous layer's lanes
            w = sp.identity(cur, format="csr", dtype=np.float64)
            b, act, name = np.zeros(cur), "relu", f"copy{t}"
            report.copy_layers += 1
        out = max(cur, widths[t + 1])
        w, b = _pad(w, b, out, prev_w)
        report.filler += out - cur
        if cur > widths[t + 1]:
            report.over_layers += 1
            report.over_lanes += cur - widths[t + 1]
            report.mismatches.append((t, cur, widths[t + 1]))
        else:
            report.matched += 1
        layers.append(Layer(weight=w, bias=b, activation=act, name=name or str(2 * t)))
        prev_w = out
    fitted = Network(layers=layers, adapter=net.adapter, source=net.source, fmt=net.fmt, meta=dict(net.meta or {}))
    return fitted, report
