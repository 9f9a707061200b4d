"""The in-memory form of an opaque feed-forward network, shared by every ``dormant.net`` module.

A ``Network`` is a flat list of affine layers, each followed by an elementwise activation
(``Linear`` + ``ReLU`` pairs in the puzzle's ``nn.Sequential``). Weights are ``(out, in)`` arrays:
numpy (possibly memory-mapped) or ``scipy.sparse`` CSR matrices for large, sparse circuits.
Nothing here executes code from a file; loaders build these objects from inert data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import scipy.sparse as sp

Weight = Union[np.ndarray, sp.csr_matrix]

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "gelu", "leaky_relu", "softplus", "silu", "elu", "hardtanh", "step")


@dataclass
class Layer:
    weight: Weight  # (out_features, in_features)
    bias: np.ndarray | None  # (out_features,)
    activation: str = "relu"  # applied after the affine map; "identity" when none follows
    name: str = ""  # where it came from, e.g. "5438" for Sequential index 5438

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class InputAdapter:
    """How the network's input vector is built from a user's input (e.g. a string).

    ``kind`` is ``"char_codes"`` (``ord`` of each character, NUL-padded/truncated to ``length``),
    ``"binary"`` (``length`` inputs, each 0 or 1; text is a string of ``0``/``1`` digits),
    ``"vector"`` (the input is a numeric vector already) or ``"unknown"`` (a pickled callable that
    was shown, never executed).
    """

    kind: str = "vector"
    length: int | None = None
    description: str = ""
    disassembly: str = ""

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "binary" and self.length is not None:
            if len(text) != self.length or set(text) - {"0", "1"}:
                raise ValueError(f"a binary input is {self.length} digits 0/1, got {text!r}")
            return np.asarray([int(ch) for ch in text], dtype=np.float64)
        if self.kind != "char_codes" or self.length is None:
            raise ValueError(f"input adapter {self.kind!r} cannot encode text")
        codes = [ord(c) for c in text[: self.length]]
        codes += [0] * (self.length - len(codes))
        return np.asarray(codes, dtype=np.float64)


@dataclass
class Network:
    layers: list[Layer]
    adapter: InputAdapter = field(default_factory=InputAdapter)
    source: str = ""  # file it was loaded from
    fmt: str = ""  # "torch-full-pickle", "state-dict", "safetensors", "npz", "compiled", ...
    warnings: list[str] = field(default_factory=list)  # e.g. globals refused by the inert loader
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        """Input width, then each layer's output width (the puzzle's ``puzzle_widths.txt`` form)."""
        if not self.layers:
            return []
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def n_params(self) -> int:
        total = 0
        for layer in self.layers:
            total += int(np.prod(layer.weight.shape))
            total += 0 if layer.bias is None else int(layer.bias.shape[0])
        return total

    def __len__(self) -> int:
        return len(self.layers)
