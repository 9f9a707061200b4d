"""Builders shared by the network structure tests: small torch models and a deep periodic circuit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from dormant.net.load.network import InputAdapter, Layer, Network


@dataclass
class PeriodicCircuit:
    net: Network
    head: int
    period: int
    groups: list[int]  # blocks per group
    tail: int
    varying_bias_position: int
    varying_weight_position: int
    weight_variants: int
    distinct_constants: int


def _gate_layer(rng, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Random wires and 2-input ANDs on 0/1 values: outputs stay 0/1, weights 0/1, biases 0/-1."""
    w = np.zeros((n_out, n_in), dtype=np.float32)
    b = np.zeros(n_out, dtype=np.float32)
    for r in range(n_out):
        a = rng.integers(n_in)
        w[r, a] = 1
        if rng.random() < 0.5:
            c = (a + 1 + rng.integers(n_in - 1)) % n_in
            w[r, c] = 1
            b[r] = -1
    return w, b


def build_periodic_circuit(blocks_a: int = 200, blocks_b: int = 100, seed: int = 0) -> PeriodicCircuit:
    """A deep integer ReLU circuit: head(5), blocks of 7 layers in two groups, tail(4).

    Inside a block: position 3 ANDs its input with per-block constant bits (biases c - 1 vary per
    block), position 5 rotates its wires by ``block % 4`` (4 weight variants); group B blocks start
    with width 11 instead of 10. Everything else is the same layer in every block ("ROM").
    Inputs are 8 character codes; all values after the second layer are 0/1.
    """
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    # head: 8 codes -> 16 thresholds -> 16 NOTs (0/1) -> 12 -> 11 -> 8
    w0 = np.zeros((16, 8), np.float32)
    w0[np.arange(16), np.arange(16) % 8] = 1
    b0 = np.where(np.arange(16) < 8, -64, -96).astype(np.float32)
    layers.append(Layer(w0, b0, "relu", "head0"))
    layers.append(Layer(-np.eye(16, dtype=np.float32), np.ones(16, np.float32), "relu", "head1"))
    for n_in, n_out in ((16, 12), (12, 11), (11, 8)):
        w, b = _gate_layer(rng, n_in, n_out)
        layers.append(Layer(w, b, "relu", f"head{len(layers)}"))
    rom = {q: _gate_layer(rng, n_in, n_out) for q, (n_in, n_out) in {2: (12, 10), 4: (10, 9), 6: (9, 8)}.items()}
    first = {10: _gate_layer(rng, 8, 10), 11: _gate_layer(rng, 8, 11)}
    second = {10: _gate_layer(rng, 10, 12), 11: _gate_layer(rng, 11, 12)}
    constants = set()
    for j in range(blocks_a + blocks_b):
        wide = 10 if j < blocks_a else 11
        c = np.random.default_rng(1000 + j).integers(0, 2, size=10).astype(np.float32)
        constants.add(c.tobytes())
        block = [
            first[wide],
            second[wide],
            rom[2],
            (np.eye(10, dtype=np.float32), c - 1),
            rom[4],
            (np.roll(np.eye(9, dtype=np.float32), j % 4, axis=1), np.zeros(9, np.float32)),
            rom[6],
        ]
        for q, (w, b) in enumerate(block):
            layers.append(Layer(w, b, "relu", f"b{j}.{q}"))
    for n_in, n_out in ((8, 6), (6, 4), (4, 2), (2, 1)):
        w, b = _gate_layer(rng, n_in, n_out)
        layers.append(Layer(w, b, "relu", f"tail{len(layers)}"))
    net = Network(layers=layers, adapter=InputAdapter("char_codes", 8), source="synthetic", fmt="compiled")
    return PeriodicCircuit(net, 5, 7, [blocks_a, blocks_b], 4, 3, 5, 4, len(constants))


@pytest.fixture(scope="session")
def periodic_circuit() -> PeriodicCircuit:
    return build_periodic_circuit()


@pytest.fixture(scope="session")
def small_circuit() -> PeriodicCircuit:
    """The same design with 30 blocks (219 layers), for command-line round trips."""
    return build_periodic_circuit(blocks_a=20, blocks_b=10)


@pytest.fixture(scope="session")
def torch_mlp():
    """A small nn.Sequential with nesting and mixed activations, seeded."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(7, 4), torch.nn.Tanh()),
        torch.nn.Linear(4, 3), torch.nn.Sigmoid(),
        torch.nn.Linear(3, 2),
    )
