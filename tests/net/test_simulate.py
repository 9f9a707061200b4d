"""Exact simulation: the planned forward (copy wires aliased, reused value table) equals a direct loop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.net.logic import simulate
from dormant.net.logic.simulate import build_plan, forward, forward_dense, get_plan, run_text


@pytest.fixture(params=["numpy", "numba"])
def backend(request, monkeypatch):
    """Run a test with the numpy loop and with the compiled kernel (when numba is installed)."""
    if request.param == "numba" and simulate._run_steps is None:
        pytest.skip("numba not installed")
    monkeypatch.setattr(simulate, "BACKEND", request.param)
    return request.param


def reference(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's activations, computed the obvious way with dense float64 matrices."""
    h, out = np.asarray(x, dtype=np.float64), []
    for layer in net.layers:
        w = layer.weight.toarray() if sp.issparse(layer.weight) else np.asarray(layer.weight, dtype=np.float64)
        z = h @ w.T + (0.0 if layer.bias is None else layer.bias)
        h = simulate.activate(layer.activation, z)
        out.append(h)
    return out


def copy_heavy_net(rng, depth: int = 12, width: int = 9, n_in: int = 5, sparse: bool = True) -> Network:
    """Integer layers mixing copy wires (weight 1, bias 0), gates and negative weights/biases."""
    layers, n_prev = [], n_in
    acts = ["relu", "identity", "relu", "relu", "step", "relu"]
    for i in range(depth):
        w = np.zeros((width, n_prev))
        b = np.zeros(width)
        for r in range(width):
            kind = rng.integers(4)
            if kind < 2:  # a copy wire
                w[r, rng.integers(n_prev)] = 1.0
            else:
                cols = rng.choice(n_prev, size=min(3, n_prev), replace=False)
                w[r, cols] = rng.choice([-2.0, -1.0, 1.0, 2.0, 4.0], size=len(cols))
                b[r] = rng.integers(-3, 3)
        layers.append(Layer(weight=sp.csr_matrix(w) if sparse else w, bias=b, activation=acts[i % len(acts)], name=str(2 * i)))
        n_prev = width
    return Network(layers=layers)


def test_float16_and_memory_mapped_dense_weights(tmp_path, backend):
    rng = np.random.default_rng(5)
    net = copy_heavy_net(rng, sparse=False)
    for i, layer in enumerate(net.layers):  # what an inert loader returns for a float16 pickle
        path = tmp_path / f"w{i}.npy"
        np.save(path, np.asarray(layer.weight, dtype=np.float16))
        layer.weight = np.load(path, mmap_mode="r")
    x = rng.integers(0, 5, size=(9, 5)).astype(np.float64)
    ref = reference(net, x)
    y, acts = forward(net, x, record=True)
    assert np.array_equal(y, ref[-1]) and all(np.array_equal(acts[i], ref[i]) for i in acts)


@pytest.mark.parametrize("sparse", [True, False])
def test_forward_matches_reference_on_random_integer_nets(sparse, backend):
    rng = np.random.default_rng(1)
    for trial in range(6):
        net = copy_heavy_net(rng, sparse=sparse)
        x = rng.integers(-4, 6, size=(17, 5)).astype(np.float64)  # negative inputs: first-layer copies must still apply ReLU
        ref = reference(net, x)
        y, acts = forward(net, x, record=True)
        assert np.array_equal(y, ref[-1])
        for i, a in acts.items():
            assert np.array_equal(a, ref[i]), f"trial {trial} layer {i}"
        assert np.array_equal(forward_dense(net, x), ref[-1])


def test_copy_wires_are_aliased_and_the_table_is_reused(backend):
    # 40 layers that copy 6 lanes forward and make one AND each: only the ANDs are computed
    n, depth = 6, 40
    layers = []
    for _ in range(depth):
        w = np.zeros((n + 1, n))
        w[np.arange(n), np.arange(n)] = 1.0
        w[n, [0, 1]] = 1.0
        b = np.zeros(n + 1)
        b[n] = -1.0
        layers.append(Layer(sp.csr_matrix(w), b))
        n += 1
    net = Network(layers)
    plan = build_plan(net)
    # the first layer copies raw inputs (sign unknown) so it is computed; every later copy is free
    assert plan.n_gate_weights == 6 + 2 + 2 * (depth - 1)
    x = np.array([[1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 0]], dtype=float)
    y, _ = forward(net, x)
    assert np.array_equal(y, reference(net, x)[-1])
    assert np.array_equal(y[:, -depth:], np.repeat(x[:, :1] * x[:, 1:2], depth, axis=1))


def test_dead_values_free_their_rows(backend):
    # a chain where each layer consumes the previous one: the table needs about one layer's rows
    rng = np.random.default_rng(2)
    layers = []
    for _ in range(200):  # AND relu(a+b-1) and AND-NOT relu(a-b) of the previous layer: values stay 0/1
        w, bias = np.zeros((8, 8)), np.zeros(8)
        for r in range(8):
            i, j = rng.choice(8, size=2, replace=False)
            w[r, i], w[r, j] = (1.0, 1.0) if r % 2 else (1.0, -1.0)
            bias[r] = -1.0 if r % 2 else 0.0
        layers.append(Layer(sp.csr_matrix(w), bias))
    net = Network(layers)
    plan = build_plan(net)
    assert plan.n_slots <= 3 * 8
    x = rng.integers(0, 2, size=(4, 8)).astype(float)
    assert np.array_equal(forward(net, x)[0], reference(net, x)[-1])


def test_start_stop_and_single_vectors(backend):
    rng = np.random.default_rng(3)
    net = copy_heavy_net(rng, depth=10)
    x = rng.integers(0, 5, size=(7, 5)).astype(np.float64)
    ref = reference(net, x)
    mid, _ = forward(net, x, stop=4)
    assert np.array_equal(mid, ref[3])
    y, acts = forward(net, mid, start=4, record=[5, 9])
    assert np.array_equal(y, ref[-1]) and set(acts) == {5, 9}
    assert np.array_equal(acts[5], ref[5])
    y1, acts1 = forward(net, x[2], record=[0])
    assert y1.shape == (net.layers[-1].out_features,) and np.array_equal(y1, ref[-1][2])
    assert np.array_equal(acts1[0], ref[0][2])
    empty, empty_acts = forward(net, np.zeros((0, 5)), record=[2])
    assert empty.shape == (0, net.layers[-1].out_features) and empty_acts[2].shape == (0, net.layers[2].out_features)
    with pytest.raises(ValueError, match="expects 5 inputs"):
        forward(net, np.zeros((2, 4)))


def test_in_place_edits_rebuild_the_plan():
    rng = np.random.default_rng(4)
    net = copy_heavy_net(rng, depth=6)
    x = rng.integers(0, 4, size=(5, 5)).astype(np.float64)
    forward(net, x)
    first = get_plan(net)
    w = net.layers[3].weight
    w.data[:] = w.data * 2  # edit in place: same object, new values
    net.layers[2].bias[0] += 7
    assert get_plan(net) is not first
    assert np.array_equal(forward(net, x)[0], reference(net, x)[-1])


def test_chunked_batches_and_deep_nets(monkeypatch, backend):
    depth = 3000  # far beyond Python's recursion limit
    layers = [Layer(sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 1.0]])), np.array([0.0, -1.0])) for _ in range(depth)]
    net = Network(layers)
    x = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    monkeypatch.setattr(simulate, "TABLE_BYTES", 8 * 4 * 2)  # two inputs per chunk
    y, acts = forward(net, x, record=[0, depth - 1])
    assert np.array_equal(y, forward_dense(net, x))
    assert np.array_equal(y[:, 0], x[:, 0])
    assert np.array_equal(acts[depth - 1], y)


def test_run_text_uses_the_adapter():
    w = sp.csr_matrix(np.array([[1.0, 1.0, 1.0]]))
    net = Network([Layer(w, np.array([0.0]), activation="identity")], adapter=InputAdapter("char_codes", 3))
    y, _ = run_text(net, ["ab", "abcd", ""])
    assert y[:, 0].tolist() == [ord("a") + ord("b"), ord("a") + ord("b") + ord("c"), 0.0]


def test_float32_fast_path_switches_to_float64_before_it_could_round(backend):
    # doubling chain: values reach 2**40, exact in float64 but not in float32
    depth = 40
    w = sp.csr_matrix(np.array([[2.0, 0.0], [1.0, 1.0]]))
    net = Network([Layer(w, np.array([0.0, 1.0])) for _ in range(depth)])
    plan = build_plan(net)
    assert plan.integer
    x = np.array([[1.0, 3.0], [3.0, 0.0]])
    y, acts = forward(net, x, record=True)
    assert y[:, 0].tolist() == [2.0**depth, 3.0 * 2.0**depth]
    ref = reference(net, x)
    assert all(np.array_equal(acts[i], ref[i]) for i in range(depth))
    # fractional weights or inputs never take the float32 path
    half = Network([Layer(sp.csr_matrix(np.array([[0.5, 0.25]])), np.array([0.1]), activation="identity")])
    assert not build_plan(half).integer
    assert forward(half, np.array([1.0, 3.0]))[0][0] == 0.5 + 0.75 + 0.1
    assert forward(net, np.array([0.5, 0.0]))[0][0] == 0.5 * 2.0**depth


def test_public_sparse_product_fallback_gives_the_same_results(monkeypatch):
    rng = np.random.default_rng(6)
    net = copy_heavy_net(rng, depth=8)
    x = rng.integers(0, 6, size=(11, 5)).astype(np.float64)
    monkeypatch.setattr(simulate, "BACKEND", "numpy")
    monkeypatch.setattr(simulate, "_csr_matvecs", None)
    y, acts = forward(net, x, record=True)
    ref = reference(net, x)
    assert np.array_equal(y, ref[-1]) and all(np.array_equal(acts[i], ref[i]) for i in acts)
