"""Honest circuit search: exact counts over small binary input spaces, capped SAT said to be a lower bound."""

import itertools

import numpy as np

from dormant.net.load.network import InputAdapter, Layer, Network
from dormant.net.logic.circuit_search import SatConfig, binary_inputs, count_binary, sat_firing
from dormant.net.solve import SolveConfig, solve
from dormant.zoo.net.circuit import Circuit
from dormant.zoo.net.compile import compile_circuit


def _rule16(x) -> bool:
    """(x0 OR x1 OR x2) AND (x3 XOR x4) AND NOT (x5 AND x6): 7/8 * 1/2 * 3/4 of 2**16 = 21504."""
    return bool((x[0] or x[1] or x[2]) and (x[3] ^ x[4]) and not (x[5] and x[6]))


def binary_toy() -> Network:
    """16 binary inputs; inputs 7..15 are read (through an AND with their own OR) but never decide."""
    c = Circuit(n_inputs=16)
    x = [c.input(i) for i in range(16)]
    any3 = c.wire(c.or_(c.or_(x[0], x[1]), x[2]))
    fire = c.and_(c.and_(any3, c.wire(c.xor(x[3], x[4]))), c.wire(1 - c.and_(x[5], x[6])))
    c.set_outputs([c.wire(fire)])
    return compile_circuit(c).network


def wide_or(n: int = 30) -> Network:
    """OR of ``n`` binary inputs: ``2**n - 1`` firing assignments, far beyond any SAT cap."""
    c = Circuit(n_inputs=n)
    acc = c.input(0)
    for i in range(1, n):
        acc = c.wire(c.or_(acc, c.input(i)))
    c.set_outputs([c.wire(acc)])
    return compile_circuit(c).network


def test_binary_inputs_are_recognised():
    assert binary_inputs(binary_toy())[0] == 16
    codes = Network([Layer(np.array([[1.0, 2.0]]), np.array([-100.0]))], adapter=InputAdapter("vector"))
    assert binary_inputs(codes)[0] is None  # weight 2: not a gate on 0/1 inputs
    assert binary_inputs(Network(codes.layers, adapter=InputAdapter("char_codes", 2)))[0] is None
    assert binary_inputs(Network(codes.layers, adapter=InputAdapter("binary", 2)))[0] == 2
    assert list(InputAdapter("binary", 3).encode("101")) == [1.0, 0.0, 1.0]


def test_exact_count_matches_brute_force():
    expected = sum(_rule16(x) for x in itertools.product((0, 1), repeat=16))
    assert expected == 21504
    res = count_binary(binary_toy(), 16)
    assert res.complete and not res.capped and res.count == expected and res.checked == 2**16
    assert all(_rule16([int(ch) for ch in f]) for f in res.firing) and len(res.firing) == 256


def test_capped_sat_says_it_is_a_lower_bound():
    res = sat_firing(wide_or(), SatConfig(max_solutions=64))
    assert res.status == "ok" and res.capped and not res.complete and res.count == 64
    assert "at least" in res.notes[-1]
    small = sat_firing(wide_or(4), SatConfig(max_solutions=64))
    assert small.complete and not small.capped and small.count == 15


def test_solve_reports_the_exact_count_of_the_binary_toy():
    result = solve(binary_toy(), SolveConfig())
    assert result.found and result.verified is True
    assert "exactly 21,504 input(s)" in result.verdict and "65,536 assignments of 16 binary inputs" in result.verdict


def test_solve_on_a_large_circuit_says_the_count_is_a_lower_bound():
    result = solve(wide_or(), SolveConfig(sat_max_solutions=32, skip=("motifs",)))
    assert result.found and result.verified is True
    assert "at least 32 input(s)" in result.verdict and "stopped at its cap" in result.verdict
    assert "exactly" not in result.verdict
