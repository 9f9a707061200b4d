"""Interval bounds: 0/1 proofs, cone refinement of folded XORs, assumptions from probes, gate census."""

import numpy as np

from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.net.logic.bounds import BoundsConfig, copy_rows, propagate
from dormant.net.logic.gates import census, classify
from dormant.net.logic.simulate import forward


def xor_net() -> Network:
    """x0, x1 -> [wire x0, wire x1, AND] -> XOR folded as x0 + x1 - 2 AND."""
    l0 = Layer(np.array([[1, 0], [0, 1], [1, 1.0]]), np.array([0, 0, -1.0]))
    l1 = Layer(np.array([[1, 1, -2.0]]), np.array([0.0]))
    return Network([l0, l1])


def test_plain_intervals_lose_the_xor_and_cones_recover_it():
    net = xor_net()
    plain = propagate(net, BoundsConfig(refine=False))
    assert plain.hi[2][0] == 2 and not plain.binary[2][0]
    refined = propagate(net)
    assert refined.binary[2][0] and refined.refined == 1
    assert refined.counts()["binary"] == 4 and refined.counts()["binary_assumed"] == 0
    # the proof is right: the neuron takes exactly 0 and 1 on all inputs
    x = np.array([[a, b] for a in (0, 1) for b in (0, 1)], dtype=float)
    y, _ = forward(net, x)
    assert sorted(set(y[:, 0])) == [0.0, 1.0]


def test_char_code_domain_and_user_range():
    net = Network([Layer(np.array([[1.0, -1.0]]), np.array([0.0]))], InputAdapter("char_codes", 2))
    b = propagate(net)
    assert b.hi[0].tolist() == [255, 255] and b.hi[1][0] == 255 and b.integer[1][0]
    b = propagate(net, BoundsConfig(input_low=0, input_high=3))
    assert b.hi[1][0] == 3


def test_float_weights_are_not_integer():
    net = Network([Layer(np.array([[0.5, 1.0]]), np.array([0.0])), Layer(np.array([[1.0]]), np.array([0.25]))])
    b = propagate(net)
    assert not b.integer[1][0] and not b.integer[2][0] and not b.binary[2][0]


def test_probe_assumption_is_marked_and_can_be_switched_off():
    # y = relu(a - 2*AND(a, b) + b) computed through an extra wire layer: the cone of depth 3 is
    # needed; with refine_depth=1 the bounds cannot prove it, the probes see only 0/1.
    l0 = Layer(np.array([[1, 0], [0, 1], [1, 1.0]]), np.array([0, 0, -1.0]))
    l1 = Layer(np.eye(3), np.zeros(3))
    l2 = Layer(np.array([[1, 1, -2.0]]), np.array([0.0]))
    net = Network([l0, l1, l2])
    proven = propagate(net, BoundsConfig(refine_depth=1, assume_observed=False))
    assert not proven.binary[3][0]
    assumed = propagate(net, BoundsConfig(refine_depth=1))
    assert assumed.binary[3][0] and assumed.assumed[3][0]
    assert assumed.counts()["binary_assumed"] == 1
    full = propagate(net, BoundsConfig(refine_depth=3))  # depth 3 cones prove it
    assert full.binary[3][0] and not full.assumed[3][0]


def test_copy_rows_and_census_names():
    # inputs a, b (0/1): wire a, NOT a, AND, NOR, AND-NOT, OR-sum (a count), const 1
    w = np.array([[1, 0], [-1, 0], [1, 1], [-1, -1], [1, -1], [1, 1], [0, 0]], dtype=float)
    b = np.array([0, 1, -1, 1, 0, 0, 1], dtype=float)
    net = Network([Layer(w, b)])
    copies, col = copy_rows(net.layers[0])
    assert copies.tolist() == [True] + [False] * 6 and col[0] == 0
    bounds = propagate(net)
    g = classify(net, bounds)
    assert g.kinds[0] == ["wire", "NOT", "AND", "NOR", "AND-NOT", "count", "const"]
    c = census(g)
    assert c.neurons == 7 and abs(sum(c.shares.values()) - 1) < 1e-9 and c.counts["AND"] == 1
