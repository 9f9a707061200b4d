"""inspect_network and `dormant net inspect` on a deep synthetic circuit and on small files."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.net.load.network import Layer, Network
from dormant.net.load.spec_format import save_network
from dormant.net.structure.summary import InspectConfig, describe_values, inspect_network


def test_deep_circuit_summary(periodic_circuit):
    net = periodic_circuit.net
    result = inspect_network(net, InspectConfig(samples=16))
    assert result.n_layers == len(net.layers) > 2000
    assert result.widths == net.widths
    assert result.n_params == sum(l.weight.size + l.bias.size for l in net.layers)
    assert result.integer_weights and result.integer_biases
    assert result.weight_values == [-1.0, 1.0]
    assert result.weight_pattern == "0, +-2^k (k = 0)"
    assert result.bias_range == (-96.0, 1.0)
    assert result.outputs_integral is True
    assert set(result.output_values) <= {0.0, 1.0}
    assert "random printable strings" in result.forward_inputs
    assert result.dtypes == {"float32": result.n_params}
    zeros = sum(int((l.weight == 0).sum()) for l in net.layers)
    assert abs(result.zero_fraction - zeros / sum(l.weight.size for l in net.layers)) < 1e-12
    # per-layer census of the NOT layer: sixteen -1 weights
    assert result.layers[1].census == [(-1.0, 16)]


def test_non_integer_weights_and_sparse_layers_are_reported():
    rng = np.random.default_rng(0)
    dense = Layer(rng.normal(size=(4, 3)), np.zeros(4), "relu", "a")
    sparse = Layer(sp.csr_matrix(np.array([[0, 2.0, 0, -4.0]])), np.array([1.5]), "identity", "b")
    result = inspect_network(Network([dense, sparse]), InspectConfig(samples=8))
    assert not result.integer_weights and not result.integer_biases
    assert result.layers[1].nonzero == 2 and result.layers[1].density == 0.5
    assert result.layers[1].census == [(-4.0, 1), (2.0, 1)]
    assert result.outputs_integral is False
    assert "random integer vectors" in result.forward_inputs


def test_describe_values_names_power_of_two_alphabets():
    assert describe_values([-256.0, -2.0, -1.0, 1.0, 2.0, 4.0, 128.0]) == "0, +-2^k (k = 0..1), +2^k (k = 2, 7), -2^k (k = 8)"
    assert describe_values([1.0, 3.0]) == "0, 1, 3"
    assert describe_values([]) == "all zero"


def test_cli_inspect_writes_widths_plot_and_json(tmp_path, small_circuit):
    folder = save_network(small_circuit.net, tmp_path / "circuit")
    widths_file = tmp_path / "w.txt"
    res = CliRunner().invoke(app, ["net", "inspect", str(folder), "--samples", "8", "--widths-out", str(widths_file), "--out", str(tmp_path / "art"), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["result"]["n_layers"] == len(small_circuit.net.layers)
    assert payload["result"]["adapter"]["kind"] == "char_codes"
    assert widths_file.read_text().strip() == ",".join(map(str, small_circuit.net.widths))
    png = tmp_path / "art" / "widths.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from dormant.ledger import list_runs

    (run,) = list_runs(command="net inspect")
    assert run["status"] == "ok" and run["outputs"]["integer_weights"] is True


def test_cli_inspect_shows_refused_globals_and_adapter_code(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "py39_sequential.pt"
    res = CliRunner().invoke(app, ["net", "inspect", str(fixture), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "refused global" in res.output and "_make_function" in res.output
    assert "input adapter (not executed)" in res.output and "LOAD_GLOBAL" in res.output


def test_half_precision_pickle_is_inspected_exactly(tmp_path):
    import torch

    from dormant.net.load.loaders import load_network

    model = torch.nn.Sequential(torch.nn.Linear(4, 3, dtype=torch.float16), torch.nn.ReLU(), torch.nn.Linear(3, 1, dtype=torch.float16), torch.nn.ReLU())
    with torch.no_grad():
        for lin in (model[0], model[2]):
            lin.weight.copy_(torch.randint(-4, 5, lin.weight.shape))
            lin.bias.copy_(torch.randint(-2, 3, lin.bias.shape))
    torch.save(model, tmp_path / "half.pt")
    net = load_network(tmp_path / "half.pt")
    result = inspect_network(net, InspectConfig(samples=8))
    assert result.dtypes == {"float16": result.n_params}
    assert result.integer_weights and result.outputs_integral
