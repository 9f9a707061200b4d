"""The inert unpickler: dangerous pickles are read as data, reported, and never executed."""

from __future__ import annotations

import mmap
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dormant.errors import NetworkFileError
from dormant.net.load.loaders import load_network
from dormant.net.load.unpickle import CallRecord, ModuleRecord, TensorRef, record_param, unpickle_bytes, unpickle_torch_zip


def _no_storage(key, dtype, numel):
    raise AssertionError("no storage expected")


class _SystemCall:
    """Pickles as ``os.system(cmd)``: torch.load(weights_only=False) would run the command."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalCall:
    def __init__(self, expr):
        self.expr = expr

    def __reduce__(self):
        return (eval, (self.expr,))


class _PopenCall:
    def __init__(self, argv):
        self.argv = argv

    def __reduce__(self):
        return (subprocess.Popen, (self.argv,))


class _GetattrOnModule:
    """``getattr(__import__('os'), 'system')(cmd)``: a reduce whose callee is itself a reduce result."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (_Apply(), (self.cmd,))


class _Apply:
    def __call__(self, *args):  # pickle insists that a reduce callee be callable
        raise AssertionError("never called")

    def __reduce__(self):
        return (getattr, (_Import(), "system"))


class _Import:
    def __reduce__(self):
        return (__import__, ("os",))


def _armed_model(tmp_path: Path, payload) -> Path:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    model.extra = payload  # lands in the module's __dict__, unpickled on load
    path = tmp_path / "armed.pt"
    torch.save(model, path)
    return path


def test_os_system_pickle_is_loaded_inertly_and_reported(tmp_path):
    marker = tmp_path / "PWNED"
    path = _armed_model(tmp_path, _SystemCall(f"touch {marker}"))
    # the file is really armed: torch.load(weights_only=False) in a fresh process writes the marker
    script = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=120)
    assert marker.exists(), "fixture is not armed: torch.load did not run os.system"
    marker.unlink()

    net = load_network(path)
    assert not marker.exists()
    assert net.widths == [3, 2]
    refused = net.meta["refused_globals"]
    assert any(name in refused for name in ("posix.system", "os.system", "nt.system")), refused
    assert any("system" in w for w in net.warnings)
    record = unpickle_torch_zip(path).obj.state["extra"]
    assert isinstance(record, CallRecord) and record.args == (f"touch {marker}",)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (_EvalCall("__import__('os').system('touch PWNED2')"), "builtins.eval"),
        (_PopenCall(["touch", "PWNED2"]), "subprocess.Popen"),
        (_GetattrOnModule("touch PWNED2"), "builtins.getattr"),
    ],
)
def test_nested_tricks_are_refused(tmp_path, monkeypatch, payload, expected):
    monkeypatch.chdir(tmp_path)
    path = _armed_model(tmp_path, payload)
    result = unpickle_torch_zip(path)
    assert expected in result.refused_names()
    assert not (tmp_path / "PWNED2").exists()
    assert isinstance(result.obj, ModuleRecord)


def test_protocol0_inst_and_build_never_call_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # INST opcode (protocol 0): os.system('touch PWNED3') as an instance creation
    result = unpickle_bytes(b"(S'touch PWNED3'\nios\nsystem\np0\n.", _no_storage)
    assert ("os", "system") in result.refused
    assert isinstance(result.obj, CallRecord) and result.obj.args == ("touch PWNED3",)
    # NEWOBJ + BUILD on a refused class: the state is stored, no real __setstate__ runs
    result = unpickle_bytes(b"\x80\x02cbuiltins\nexec\n)\x81}X\x01\x00\x00\x00aK\x01sb.", _no_storage)
    assert ("builtins", "exec") in result.refused
    assert result.obj.state == {"a": 1}
    assert not (tmp_path / "PWNED3").exists()


def test_torch_zip_tensors_are_views_of_one_memory_map(tmp_path):
    lin = torch.nn.Linear(6, 4)
    path = tmp_path / "lin.pt"
    torch.save(lin, path)
    result = unpickle_torch_zip(path)
    weight = record_param(result.obj, "weight")
    assert isinstance(weight, TensorRef) and weight.shape == (4, 6) and weight.is_parameter
    arr = weight.array()
    base, chain = arr, []
    while base is not None:
        chain.append(type(base))
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    assert mmap.mmap in chain  # a view of the file's memory map, not a copy
    np.testing.assert_array_equal(arr, lin.weight.detach().numpy())


def test_compressed_archive_entries_are_read_one_by_one(tmp_path):
    lin = torch.nn.Linear(5, 3)
    src = tmp_path / "lin.pt"
    torch.save(lin, src)
    dst = tmp_path / "deflated.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item))
    arr = record_param(unpickle_torch_zip(dst).obj, "bias").array()
    np.testing.assert_array_equal(arr, lin.bias.detach().numpy())


def test_truncated_pickle_stream_is_a_network_file_error():
    data = pickle.dumps({"a": [1, 2, 3]}, protocol=2)[:-5]
    with pytest.raises(NetworkFileError, match="cannot read pickle stream"):
        unpickle_bytes(data, _no_storage)


def test_codecs_encode_only_accepts_text():
    data = pickle.dumps(b"\x00\x01abc", protocol=2)  # protocol 2 writes bytes via _codecs.encode
    assert unpickle_bytes(data, _no_storage).obj == b"\x00\x01abc"
    evil = b"\x80\x02c_codecs\nencode\nq\x00K\x05X\x05\x00\x00\x00latin\x86R."
    with pytest.raises(NetworkFileError):
        unpickle_bytes(evil, _no_storage)


def test_no_module_from_the_file_is_imported(tmp_path):
    """A pickle naming a module that does not exist here loads fine: nothing is imported."""
    script = textwrap.dedent(
        """
        import pickle
        data = b"\\x80\\x02cnot_a_real_module.sub\\nFunc\\nq\\x00X\\x03\\x00\\x00\\x00argq\\x01\\x85R."
        from dormant.net.load.unpickle import unpickle_bytes
        r = unpickle_bytes(data, None)
        import sys
        assert "not_a_real_module" not in sys.modules
        print(sorted(r.refused))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "not_a_real_module.sub" in res.stdout


def test_deeply_nested_code_records_do_not_overflow():
    """A pickle nesting 5000 CodeType(...) records in each other's constants still loads."""
    from dormant.net.load.pickled_code import decode_code

    body = b"\x80\x02ctypes\nCodeType\nq\x00"
    inner = b"N"
    for _ in range(5000):  # CodeType(0, 0, 0, 0, 0, 0, b'', (inner,), (), (), 'f', 'g', 1, b'', (), ())
        inner = b"h\x00(K\x00K\x00K\x00K\x00K\x00K\x00C\x00" + inner + b"\x85))X\x01\x00\x00\x00fX\x01\x00\x00\x00gK\x01C\x00))tR"
    result = unpickle_bytes(body + b"0" + inner + b".", _no_storage)
    info = decode_code(result.obj)
    assert info.layout == "3.8-3.10" and info.name == "g"
    assert sum(1 for _ in info.walk()) <= 10


def test_armed_state_dict_is_read_inertly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lin = torch.nn.Linear(3, 2)
    sd = dict(lin.state_dict())
    sd["note"] = _SystemCall("touch PWNED4")
    torch.save(sd, tmp_path / "sd.pt")
    net = load_network(tmp_path / "sd.pt")
    assert not (tmp_path / "PWNED4").exists()
    assert net.fmt == "state-dict" and net.widths == [3, 2]
    assert any(name.endswith(".system") for name in net.meta["refused_globals"])
    np.testing.assert_array_equal(net.layers[0].weight, lin.weight.detach().numpy())


def test_a_state_dict_is_never_handed_to_torch_load(tmp_path, monkeypatch):
    """torch's own restricted unpickler has had code-execution flaws (CVE-2025-32434): a state dict is read by the
    inert pass alone, with the same numbers torch would give (bfloat16 included)."""
    lin = torch.nn.Linear(4, 3)
    sd = {k: v.to(torch.bfloat16) if k == "weight" else v for k, v in lin.state_dict().items()}
    torch.save(sd, tmp_path / "sd.pt")

    def refuse(*a, **k):
        raise AssertionError("torch.load was called on the file")

    monkeypatch.setattr(torch, "load", refuse)
    net = load_network(tmp_path / "sd.pt")
    assert net.fmt == "state-dict" and net.widths == [4, 3]
    np.testing.assert_array_equal(net.layers[0].weight, sd["weight"].float().numpy())
    np.testing.assert_array_equal(net.layers[0].bias, lin.bias.detach().numpy())


def _shift_output(module, inputs, output):  # a forward hook: pickled by reference, refused on load
    return output + 1


def test_what_the_simulation_does_not_reproduce_is_warned_about(tmp_path):
    """An activation with parameters the simulation takes at their defaults (a Hardtanh used as a 0..1 clamp), or a
    state dict with tensors that are no Linear weights (a norm's), loads with a warning that says so."""
    clamp = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Hardtanh(0.0, 1.0), torch.nn.Linear(2, 1), torch.nn.Hardtanh())
    torch.save(clamp, tmp_path / "clamp.pt")
    warned = [w for w in load_network(tmp_path / "clamp.pt").warnings if "Hardtanh" in w]
    assert len(warned) == 1 and "min_val=0.0 simulated as min_val=-1.0" in warned[0], warned  # the default one is not warned about
    normed = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    torch.save(normed.state_dict(), tmp_path / "normed.pt")
    net = load_network(tmp_path / "normed.pt")
    assert net.widths == [3, 4, 1] and any("ignored, not Linear weights: 1.weight (1-D)" in w for w in net.warnings), net.warnings
    hooked = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    hooked[0].register_forward_hook(_shift_output)
    torch.save(hooked, tmp_path / "hooked.pt")
    assert "module 0 has 1 hook(s) (_forward_hooks): never run" in " ".join(load_network(tmp_path / "hooked.pt").warnings)
