"""load_network for every format, the cross-version fixture, export, and clear errors on bad files."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.errors import NetworkFileError
from dormant.net.load.loaders import export_network, load_network
from dormant.net.load.spec_format import load_network_folder
from dormant.net.logic.simulate import forward, run_text

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]  # the checkout, so that the subprocess imports this dormant


def _torch_out(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


@pytest.mark.parametrize("legacy, protocol", [(False, 2), (False, 5), (True, 2)])
def test_full_pickle_matches_torch_forward(tmp_path, torch_mlp, legacy, protocol):
    path = tmp_path / "mlp.pt"
    torch.save(torch_mlp, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    net = load_network(path)
    assert net.fmt == ("torch-full-pickle-legacy" if legacy else "torch-full-pickle")
    assert net.widths == [5, 7, 4, 3, 2]
    assert [layer.activation for layer in net.layers] == ["relu", "tanh", "sigmoid", "identity"]
    assert [layer.name for layer in net.layers] == ["0", "2.0", "3", "5"]
    x = np.random.default_rng(0).normal(size=(9, 5))
    y, _ = forward(net, x)
    np.testing.assert_allclose(y, _torch_out(torch_mlp, x), atol=1e-5)
    assert net.meta["refused_globals"] == []


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_layers_follow_key_order(tmp_path, torch_mlp, legacy):
    path = tmp_path / "sd.pt"
    torch.save(torch_mlp.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    net = load_network(path)
    assert net.fmt.startswith("state-dict")
    assert net.widths == [5, 7, 4, 3, 2]
    assert all(layer.activation == "relu" for layer in net.layers)
    assert any("assumed relu" in w for w in net.warnings)
    np.testing.assert_array_equal(net.layers[1].weight, torch_mlp[2][0].weight.detach().numpy())


def test_safetensors_and_npz_sort_layer_names_naturally(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    shapes = [(4, 3)] + [(4, 4)] * 10 + [(1, 4)]  # 12 layers: "10" and "11" must follow "9"
    tensors = {}
    for i, shape in enumerate(shapes):
        tensors[f"{i}.weight"] = rng.integers(-2, 3, size=shape).astype(np.float32)
        tensors[f"{i}.bias"] = rng.integers(-2, 3, size=shape[0]).astype(np.float32)
    save_file(tensors, str(tmp_path / "m.safetensors"))
    np.savez(tmp_path / "m.npz", **tensors)
    for name in ("m.safetensors", "m.npz"):
        net = load_network(tmp_path / name)
        assert net.widths == [3] + [4] * 11 + [1]
        np.testing.assert_array_equal(net.layers[11].weight, tensors["11.weight"])
        np.testing.assert_array_equal(net.layers[10].bias, tensors["10.bias"])


def test_plain_adapter_attribute_is_read_inertly(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(55, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1), torch.nn.ReLU())
    model.dormant_adapter = {"kind": "char_codes", "length": 55}
    torch.save(model, tmp_path / "zoo.pt")
    net = load_network(tmp_path / "zoo.pt")
    assert net.adapter.kind == "char_codes" and net.adapter.length == 55
    y, _ = run_text(net, ["bitter lesson"])
    x = torch.tensor([[float(ord(c)) for c in "bitter lesson"] + [0.0] * 42])
    np.testing.assert_allclose(y, _torch_out(model, x.numpy()), atol=1e-4)


def test_loading_the_cloudpickle_fixture_never_imports_cloudpickle():
    """In a fresh interpreter, loading the cloudpickled fixture neither imports nor even looks for
    ``cloudpickle`` (whether or not it is installed here)."""
    script = textwrap.dedent(
        """
        import json, sys

        looked_up = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "cloudpickle":
                    looked_up.append(name)
                return None

        sys.meta_path.insert(0, Watch())
        from dormant.net.load.loaders import load_network

        net = load_network(sys.argv[1])
        print(json.dumps({"widths": net.widths, "looked_up": looked_up, "imported": "cloudpickle" in sys.modules}))
        """
    )
    res = subprocess.run([sys.executable, "-c", script, str(FIXTURES / "py39_sequential.pt")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["widths"] == json.loads((FIXTURES / "py39_sequential.expected.json").read_text())["widths"]
    assert got["looked_up"] == [] and got["imported"] is False


def test_cross_version_fixture_from_python39_cloudpickle():
    """A protocol-2 full pickle written by Python 3.9 + cloudpickle (see make_py39_fixture.py)."""
    expected = json.loads((FIXTURES / "py39_sequential.expected.json").read_text())
    assert expected["python"].startswith("3.9") and expected["protocol"] == 2
    net = load_network(FIXTURES / "py39_sequential.pt")
    assert net.widths == expected["widths"]
    assert net.meta["pickle_protocol"] == 2
    for layer, w, b in zip(net.layers, expected["weights"], expected["biases"]):
        np.testing.assert_array_equal(layer.weight.ravel(), np.asarray(w, dtype=np.float32))
        np.testing.assert_array_equal(layer.bias, np.asarray(b, dtype=np.float32))
        assert layer.activation == "relu"
    # the cloudpickled forward: recognised, disassembled with 3.9 opcodes, never run
    assert net.adapter.kind == "char_codes" and net.adapter.length == 55
    assert "ord" in net.adapter.disassembly and "LOAD_GLOBAL" in net.adapter.disassembly and "ljust" in net.adapter.disassembly
    assert "cloudpickle.cloudpickle._make_function" in net.meta["refused_globals"]
    assert "cloudpickle.cloudpickle.subimport" in net.meta["refused_globals"]
    (callable_info,) = net.meta["callables"]
    assert callable_info["attribute"] == "forward" and callable_info["code"]["layout"] == "3.8-3.10"
    assert "subimport(torch)" in callable_info["globals_referenced"]
    # the forward pass agrees with a direct numpy evaluation of the recorded weights
    text = "bitter lesson"
    h = np.asarray([ord(c) for c in text] + [0] * (55 - len(text)), dtype=np.float64)
    for w, b, shape in zip(expected["weights"], expected["biases"], zip(expected["widths"][1:], expected["widths"][:-1])):
        h = np.maximum(np.asarray(w).reshape(shape) @ h + np.asarray(b), 0)
    y, _ = run_text(net, [text])
    np.testing.assert_array_equal(y[0], h)


def _fake_cloudpickle(monkeypatch) -> types.ModuleType:
    """An importable stand-in module whose helpers name types the way cloudpickle does."""
    mod = types.ModuleType("fake_cloudpickle")

    def _builtin_type(name):
        return getattr(types, name)

    def _make_function(code, globals_, name):
        return types.FunctionType(code, globals_, name)

    for fn in (_builtin_type, _make_function):
        fn.__module__, fn.__qualname__ = mod.__name__, fn.__name__
        setattr(mod, fn.__name__, fn)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def _functions_by_value(fake: types.ModuleType) -> type:
    fields = ("argcount", "posonlyargcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "code", "consts", "names", "varnames", "filename", "name", "qualname", "firstlineno", "linetable", "exceptiontable", "freevars", "cellvars")

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, types.FunctionType) and obj.__name__ == "<lambda>":
                return (fake._make_function, (obj.__code__, {}, obj.__name__))
            if isinstance(obj, types.CodeType):
                return (fake._builtin_type("CodeType"), tuple(getattr(obj, "co_" + f) for f in fields))
            if obj is types.CodeType:
                return (fake._builtin_type, ("CodeType",))
            return NotImplemented

    return Pickler


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="crafts a 3.11 CodeType argument layout")
def test_pickled_forward_in_this_interpreters_layout(tmp_path, monkeypatch):
    fake = _fake_cloudpickle(monkeypatch)
    model = torch.nn.Sequential(torch.nn.Linear(40, 2), torch.nn.ReLU())
    model.forward = lambda text: [ord(c) for c in text[:40]] + [0] * (40 - len(text[:40]))
    path = tmp_path / "fn.pt"
    torch.save(model, path, pickle_module=types.SimpleNamespace(Pickler=_functions_by_value(fake), __name__="pickle"))
    net = load_network(path)
    assert {"fake_cloudpickle._builtin_type", "fake_cloudpickle._make_function"} <= set(net.meta["refused_globals"])
    assert net.adapter.kind == "char_codes" and net.adapter.length == 40
    assert net.meta["callables"][0]["code"]["layout"] == "3.11+"
    assert "this interpreter's opcode table" in net.adapter.disassembly and "ord" in net.adapter.disassembly
    assert "not proven equivalent)" in net.adapter.description and "other integer constants" not in net.adapter.description
    # an encoder that shifts the codes is read by the same pattern: the description names what the adapter leaves out
    model.forward = lambda text: [ord(c) - 32 for c in text[:40]] + [0] * (40 - len(text[:40]))
    torch.save(model, path, pickle_module=types.SimpleNamespace(Pickler=_functions_by_value(fake), __name__="pickle"))
    shifted = load_network(path).adapter
    assert shifted.length == 40 and "its other integer constants (32) may transform the codes" in shifted.description


def test_export_round_trip_through_the_cli(tmp_path, torch_mlp):
    torch.save(torch_mlp, tmp_path / "mlp.pt")
    res = CliRunner().invoke(app, ["net", "export", str(tmp_path / "mlp.pt"), str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["layers"] == 4
    back = load_network_folder(tmp_path / "out")
    assert back.widths == [5, 7, 4, 3, 2]
    assert [layer.activation for layer in back.layers] == ["relu", "tanh", "sigmoid", "identity"]
    x = np.random.default_rng(2).normal(size=(4, 5))
    np.testing.assert_allclose(forward(back, x)[0], _torch_out(torch_mlp, x), atol=1e-5)
    again = load_network(tmp_path / "out")  # folders go through load_network too
    assert again.fmt == "dormant-folder"


def test_export_keeps_the_recognised_adapter(tmp_path):
    net = load_network(FIXTURES / "py39_sequential.pt")
    export_network(net, tmp_path / "folder")
    back = load_network(tmp_path / "folder")
    assert back.adapter.kind == "char_codes" and back.adapter.length == 55
    assert back.meta["refused_globals"] == net.meta["refused_globals"]


def test_corrupt_files_raise_specific_errors(tmp_path, torch_mlp):
    good = tmp_path / "good.pt"
    torch.save(torch_mlp, good)
    data = good.read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 2], "corrupt or truncated"),
        "empty.pt": (b"", "empty file"),
        "garbage.bin": (b"\x00\x01nonsense" * 10, "unrecognised format"),
        "bad.safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", "cannot read safetensors"),
        "bad.npz": (b"PK\x03\x04" + b"\x00" * 40, "corrupt or truncated"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(NetworkFileError, match=message) as info:
            load_network(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(NetworkFileError, match="no such file"):
        load_network(tmp_path / "missing.pt")


def test_unsupported_contents_are_named(tmp_path):
    torch.save(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3)), tmp_path / "conv.pt")
    with pytest.raises(NetworkFileError, match="Conv1d"):
        load_network(tmp_path / "conv.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(NetworkFileError, match="not a torch module or a state dict"):
        load_network(tmp_path / "list.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "nolinear.pt")
    with pytest.raises(NetworkFileError, match="weight"):
        load_network(tmp_path / "nolinear.pt")


def test_cli_reports_bad_input_as_one_line(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"PK\x03\x04broken")
    res = CliRunner().invoke(app, ["net", "inspect", str(tmp_path / "x.pt")])
    assert res.exit_code != 0
    assert isinstance(res.exception, NetworkFileError)


class CustomNet(torch.nn.Module):
    """A user-defined module class: pickled by reference, its forward is not in the file."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_custom_module_class_is_read_as_a_container(tmp_path):
    model = CustomNet()
    torch.save(model, tmp_path / "custom.pt")
    net = load_network(tmp_path / "custom.pt")
    assert net.widths == [3, 4, 1] and [layer.name for layer in net.layers] == ["body.0", "head"]
    assert any("custom class" in w and "CustomNet" in w for w in net.warnings)
    assert any(name.endswith("CustomNet") for name in net.meta["refused_globals"])
    x = np.random.default_rng(3).normal(size=(5, 3))
    np.testing.assert_allclose(forward(net, x)[0], _torch_out(model, x), atol=1e-5)
