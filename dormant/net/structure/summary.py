"""``inspect_network``: what an opaque network is made of, layer by layer, without trusting it.

The summary answers the first questions an analyst asks of a pickled circuit: how many layers and
of which widths; how many parameters and of which dtypes; whether every weight and bias is an
integer (hand-built circuits are), and which values occur (the puzzle's weights are all 0 or
+-2^k); how sparse each layer is; and whether outputs on random inputs are integers (random
printable strings when the input adapter turns text into character codes). The forward pass uses
``dormant.net.logic.simulate.forward``: an explicit loop, so depth never hits a recursion limit.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from dormant.net.load.network import InputAdapter, Network
from dormant.net.logic.simulate import forward
from dormant.report.console import track


@dataclass
class InspectConfig:
    samples: int = 32  # random inputs for the output-integrality check (0 skips the forward pass)
    seed: int = 0
    census_top: int = 8  # most frequent weight values kept per layer
    value_set_limit: int = 64  # report the full weight value set when it has at most this many values


@dataclass
class LayerSummary:
    index: int
    name: str
    in_features: int
    out_features: int
    activation: str
    dtype: str
    nonzero: int
    density: float  # nonzero weights / all weights
    integer_weights: bool
    integer_bias: bool
    bias_min: float | None
    bias_max: float | None
    census: list[tuple[float, int]]  # (weight value, count) for the most frequent non-zero values


@dataclass
class InspectResult:
    source: str
    fmt: str
    n_layers: int
    widths: list[int]
    n_params: int
    dtypes: dict[str, int]  # dtype -> parameter count
    integer_weights: bool
    integer_biases: bool
    weight_values: list[float] | None  # distinct non-zero weight values, when few
    weight_pattern: str  # e.g. "0, +-2^k (k = 0..7), -2^8"
    bias_range: tuple[float, float] | None
    zero_fraction: float  # of all weights
    layers: list[LayerSummary]
    activations: dict[str, int]
    adapter: InputAdapter
    forward_inputs: str  # what the random inputs were
    outputs_integral: bool | None
    output_values: list[float]  # distinct outputs seen (first few)
    refused_globals: list[str]
    callables: list[Any]
    warnings: list[str] = field(default_factory=list)


def _weight_values(w) -> np.ndarray:
    """The non-zero weight values of a dense or CSR weight (flattened)."""
    if sp.issparse(w):
        data = np.asarray(w.data)
        return data[data != 0]
    a = np.asarray(w)
    return a[a != 0]


def _is_integer(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))


def summarise_layer(i: int, layer, config: InspectConfig) -> tuple[LayerSummary, Counter]:
    w = layer.weight
    nz = _weight_values(w)
    total = int(np.prod(w.shape))
    values, counts = np.unique(nz, return_counts=True)
    census = Counter(dict(zip(values.tolist(), counts.tolist())))
    b = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    summary = LayerSummary(
        index=i, name=layer.name, in_features=layer.in_features, out_features=layer.out_features,
        activation=layer.activation, dtype=str(w.dtype), nonzero=int(nz.size), density=(nz.size / total) if total else 0.0,
        integer_weights=_is_integer(nz), integer_bias=True if b is None else _is_integer(b),
        bias_min=None if b is None or b.size == 0 else float(b.min()), bias_max=None if b is None or b.size == 0 else float(b.max()),
        census=[(float(v), int(c)) for v, c in census.most_common(config.census_top)],
    )
    return summary, census


def describe_values(values: list[float]) -> str:
    """Name a weight value set: powers of two get ``+-2^k (k = a..b)``, otherwise the sorted list."""
    if not values:
        return "all zero"
    pos = sorted({v for v in values if v > 0})
    neg = sorted({-v for v in values if v < 0})

    def pow2_exps(vals):
        exps = [math.log2(v) for v in vals]
        return exps if all(e == int(e) for e in exps) else None

    parts = ["0"]
    pe, ne = pow2_exps(pos), pow2_exps(neg)
    if pe is not None and ne is not None:
        both = sorted(set(int(e) for e in pe) & set(int(e) for e in ne))
        only_p = sorted(set(int(e) for e in pe) - set(both))
        only_n = sorted(set(int(e) for e in ne) - set(both))
        for sign, exps in (("+-", both), ("+", only_p), ("-", only_n)):
            if exps:
                parts.append(f"{sign}2^k (k = {_ranges(exps)})")
        return ", ".join(parts)
    shown = sorted(values)
    return ", ".join(["0"] + [f"{v:g}" for v in shown[:16]]) + (f", ... ({len(shown)} values)" if len(shown) > 16 else "")


def _ranges(ints: list[int]) -> str:
    """``[0,1,2,5,7,8]`` -> ``"0..2, 5, 7..8"``."""
    out, start = [], None
    for i, v in enumerate(ints):
        if start is None:
            start = v
        if i + 1 == len(ints) or ints[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}..{v}")
            start = None
    return ", ".join(out)


def _full_precision(net: Network) -> Network:
    """``net`` with half-precision weights widened to float32 (exact), for the forward pass."""
    if not any(getattr(layer.weight, "dtype", None) == np.float16 for layer in net.layers):
        return net
    layers = [replace(layer, weight=layer.weight.astype(np.float32)) if layer.weight.dtype == np.float16 else layer for layer in net.layers]
    return replace(net, layers=layers)


def random_inputs(net: Network, n: int, seed: int) -> tuple[np.ndarray, str]:
    """Random inputs for the integrality check: printable strings through a char_codes adapter,
    else random integer vectors in 0..255 (bytes)."""
    rng = np.random.default_rng(seed)
    width = net.layers[0].in_features
    if net.adapter.kind == "char_codes" and net.adapter.length:
        texts = ["".join(chr(c) for c in rng.integers(32, 127, size=int(rng.integers(0, net.adapter.length + 1)))) for _ in range(n)]
        x = np.stack([net.adapter.encode(t) for t in texts]) if texts else np.zeros((0, width))
        if x.shape[1] == width:
            return x, f"{n} random printable strings of length 0..{net.adapter.length} as character codes"
    return rng.integers(0, 256, size=(n, width)).astype(np.float64), f"{n} random integer vectors in 0..255"


def inspect_network(net: Network, config: InspectConfig | None = None) -> InspectResult:
    """Summarise ``net`` (see module docstring); reads every weight once, layer by layer."""
    config = config or InspectConfig()
    layers, all_values = [], Counter()
    dtypes: Counter = Counter()
    bias_lo, bias_hi = math.inf, -math.inf
    zeros = total = 0
    for i, layer in enumerate(track(net.layers, "census of layers")):
        summary, census = summarise_layer(i, layer, config)
        layers.append(summary)
        if len(all_values) <= 10_000:
            all_values.update(census)
        size = int(np.prod(layer.weight.shape))
        dtypes[summary.dtype] += size + (0 if layer.bias is None else layer.out_features)
        zeros += size - summary.nonzero
        total += size
        if summary.bias_min is not None:
            bias_lo, bias_hi = min(bias_lo, summary.bias_min), max(bias_hi, summary.bias_max)
    distinct = sorted(all_values)
    value_list = distinct if len(distinct) <= config.value_set_limit else None
    integral, out_values, inputs_text = None, [], "skipped"
    if config.samples > 0 and net.layers:
        x, inputs_text = random_inputs(net, config.samples, config.seed)
        y, _ = forward(_full_precision(net), x)
        integral = _is_integer(np.asarray(y))
        out_values = sorted(set(np.asarray(y).ravel().tolist()))[:16]
    return InspectResult(
        source=net.source, fmt=net.fmt, n_layers=len(net.layers), widths=net.widths, n_params=net.n_params, dtypes=dict(dtypes),
        integer_weights=all(s.integer_weights for s in layers), integer_biases=all(s.integer_bias for s in layers),
        weight_values=value_list, weight_pattern=describe_values(distinct) if value_list is not None else f"{len(distinct)}+ distinct values",
        bias_range=None if bias_lo == math.inf else (bias_lo, bias_hi), zero_fraction=(zeros / total) if total else 0.0,
        layers=layers, activations=dict(Counter(layer.activation for layer in net.layers)), adapter=net.adapter,
        forward_inputs=inputs_text, outputs_integral=integral, output_values=out_values,
        refused_globals=list(net.meta.get("refused_globals", [])), callables=list(net.meta.get("callables", [])), warnings=list(net.warnings),
    )
