"""Decompilation: an exhaustively checked toy circuit, a zoo net, a trained float MLP, exports, CLI."""

import itertools
import json

import numpy as np
import pytest

from dormant.net.load.network import Layer, Network
from dormant.net.logic.decompile import decompile
from dormant.net.logic.evaluate import check_netlist
from dormant.net.logic.export import export_all, read_aiger_eval, table_name
from dormant.net.logic.simulate import forward


class Circuit:
    """Tiny layered builder: every layer copies all existing columns and appends new gates."""

    def __init__(self, n_in: int):
        self.n, self.layers = n_in, []

    def layer(self, gates):
        w = np.zeros((self.n + len(gates), self.n))
        b = np.zeros(self.n + len(gates))
        w[: self.n, : self.n] = np.eye(self.n)
        for k, (ws, bias) in enumerate(gates):
            for c, v in ws.items():
                w[self.n + k, c] = v
            b[self.n + k] = bias
        self.layers.append(Layer(w, b))
        new = list(range(self.n, self.n + len(gates)))
        self.n += len(gates)
        return new

    def xor(self, a, b):
        (c,) = self.layer([({a: 1, b: 1}, -1)])
        return self.layer([({a: 1, b: 1, c: -2}, 0)])[0]  # folded XOR

    def and_(self, a, b):
        return self.layer([({a: 1, b: 1}, -1)])[0]

    def or_(self, a, b):
        (n,) = self.layer([({a: -1, b: -1}, 1)])  # NOR
        return self.layer([({n: -1}, 1)])[0]  # NOT

    def output(self, cols):
        w = np.zeros((len(cols), self.n))
        w[range(len(cols)), cols] = 1
        self.layers.append(Layer(w, np.zeros(len(cols))))
        return Network(self.layers)


def ripple_adder(bits: int = 4) -> Network:
    c, carry, out = Circuit(2 * bits), None, []
    for i in range(bits):
        p, g = c.xor(i, bits + i), c.and_(i, bits + i)
        if carry is None:
            out.append(p)
            carry = g
        else:
            out.append(c.xor(p, carry))
            carry = c.or_(g, c.and_(p, carry))
    out.append(carry)
    return c.output(out)


ALL_BITS = np.array(list(itertools.product([0, 1], repeat=8)))[:, ::-1].astype(float)


def test_toy_adder_decompiles_to_an_exact_netlist(tmp_path):
    net = ripple_adder(4)
    assert len(net.layers) < 40
    res = decompile(net)
    assert res.is_logic and res.cuts == 0 and res.stats["clipped"] == 0
    # every binary neuron of every layer equals its signal, on every input
    compared, bad = check_netlist(net, res.netlist, ALL_BITS)
    assert bad == 0 and compared >= res.bounds_counts["neurons"]
    y, _ = forward(net, ALL_BITS)
    a, b = ALL_BITS[:, :4] @ 2 ** np.arange(4), ALL_BITS[:, 4:] @ 2 ** np.arange(4)
    assert np.array_equal(y @ 2 ** np.arange(5), a + b)  # the circuit is an adder
    # reductions only shrink; copies are the bulk of this circuit
    stages = list(res.stages.values())
    assert all(x >= y for x, y in zip(stages[:4], stages[1:5]))
    assert res.stages["live gates"] < res.stages["neurons"] / 10
    assert list(res.seconds) == ["bounds", "census", "netlist", "live cone", "AIG"]  # each step timed, in order
    ops = {table_name(res.netlist.table[s]) for s in res.netlist.gates}
    assert "XOR" in ops and "AND" in ops
    # the AIGER export computes the same function as the network
    paths = export_all(res, tmp_path)
    out = read_aiger_eval(paths["aiger"], ALL_BITS.astype(int))
    assert np.array_equal(out, y.astype(int))
    js = json.loads(open(paths["json"]).read())
    assert len(js["outputs"]) == 5 and len(js["inputs"]) == 8
    assert open(paths["dot"]).read().startswith("digraph")


def test_census_of_the_toy_adder():
    res = decompile(ripple_adder(3))
    counts = res.census.counts
    assert counts["wire"] > counts["AND"] > 0 and counts["XOR-fold"] == 5 and counts["NOR"] == 2
    assert list(counts) == sorted(counts, key=lambda k: -counts[k])


def test_trained_float_mlp_is_not_a_logic_circuit():
    import torch

    torch.manual_seed(0)
    x = torch.rand(256, 4)
    y = (x[:, :1] + x[:, 1:2] > x[:, 2:3] * 2).float()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    lin = [m for m in model if isinstance(m, torch.nn.Linear)]
    net = Network([Layer(lin[0].weight.detach().double().numpy(), lin[0].bias.detach().double().numpy()), Layer(lin[1].weight.detach().double().numpy(), lin[1].bias.detach().double().numpy(), "identity")])
    res = decompile(net)
    assert not res.is_logic and res.netlist is None
    assert res.evidence["non_integer_weight_share"] > 0.9
    assert res.evidence["binary_neuron_share"] < 0.5
    assert "not a logic circuit" in res.verdict


@pytest.fixture(scope="module")
def zoo_toy():
    from dormant.zoo.net.build import build_net

    return build_net("toy", secret="key12345", pickle="never")


def test_zoo_toy_net_netlist_matches_the_network(zoo_toy):
    from dormant.net.logic.bounds import probe_inputs

    net = zoo_toy.network
    res = decompile(net)
    assert res.is_logic
    x = probe_inputs(net, np.zeros(8), np.full(8, 255.0), 48, seed=7)
    compared, bad = check_netlist(net, res.netlist, x)
    assert compared > 1000 and bad == 0
    assert res.stages["live gates"] > 0 and res.stages["AIG ANDs"] > 0
    # character codes are decoded into input bits: some gates read them directly
    assert res.netlist.input_bit and any(nl_in in res.netlist.input_bit for s in res.netlist.gates for nl_in in res.netlist.fanins[s])


def test_cli_decompile_json(zoo_toy, tmp_path):
    from typer.testing import CliRunner

    from dormant.cli.main import app

    r = CliRunner().invoke(app, ["net", "decompile", str(zoo_toy.folder), "--json", "--out", str(tmp_path), "--check", "8"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["is_logic"] and data["check"]["disagreements"] == 0
    assert (tmp_path / "netlist.aag").is_file() and (tmp_path / "census.png").is_file()
    r = CliRunner().invoke(app, ["net", "decompile", str(tmp_path / "missing.pt")])
    from dormant.errors import NetworkFileError

    assert r.exit_code != 0 and isinstance(r.exception, NetworkFileError) and "missing.pt" in str(r.exception)
