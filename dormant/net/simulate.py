"""Exact, batched evaluation of a ``Network`` with an explicit loop (no recursion, any depth).

Values are float64, which is exact for the integer circuits this package studies as long as
every intermediate stays below 2**53. Sparse (CSR) weights are multiplied sparsely.
"""

from __future__ import annotations

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
    wanted = None if record is True else (set(record) if record else set())
    acts: dict[int, np.ndarray] = {}
    layers = net.layers[start:stop]
    for offset, layer in enumerate(layers):
        i = start + offset
        if h.shape[1] != layer.in_features:
            raise ValueError(f"layer {i} expects {layer.in_features} inputs, got {h.shape[1]}")
        h = activate(layer.activation, affine(layer.weight, layer.bias, h))
        if wanted is None or i in wanted:
            acts[i] = h[0] if single else h
    return (h[0] if single else h), acts


def run_text(net: Network, texts: list[str], **kwargs) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Encode strings with the network's input adapter, then ``forward`` them as one batch."""
    x = np.stack([net.adapter.encode(t) for t in texts])
    return forward(net, x, **kwargs)
