"""Bad input to the `dormant net` commands: one `error:` line, exit code 2, nothing written, no run recorded as ok."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from dormant.cli import main
from dormant.errors import NetworkFileError
from dormant.ledger import list_runs
from dormant.net.load.loaders import export_network, load_network

MD5 = "0123456789abcdef0123456789abcdef"


def _dormant(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the console entry in-process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["dormant", *args])
    from dormant.report.console import err_console

    monkeypatch.setattr(err_console, "width", 400)  # made at import: COLUMNS no longer reaches it; a long path would wrap
    with pytest.raises(SystemExit) as info:
        main.run()
    err = capsys.readouterr().err
    return info.value.code, " ".join(err.split())


def _assert_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert err.startswith("error:") or "Invalid value" in err, err
    assert "Traceback" not in err and "internal error" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture
def seq_pt(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "seq.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)), path)
    return path


@pytest.fixture
def folder(tmp_path, seq_pt) -> Path:
    return export_network(load_network(seq_pt), tmp_path / "folder")


def _edit_spec(folder: Path, edit) -> Path:
    spec_path = folder / "network.json"
    spec = json.loads(spec_path.read_text())
    edit(spec)
    spec_path.write_text(json.dumps(spec))
    return folder


# ----------------------------------------------------------------------------- solve on a file that does not load


@pytest.mark.parametrize("content", ["empty", "tensor", "list"])
def test_solve_refuses_a_file_that_does_not_load_like_every_command(monkeypatch, capsys, tmp_path, content):
    path = tmp_path / f"{content}.pt"
    if content == "empty":
        path.write_bytes(b"")
    else:
        torch.save(torch.zeros(3, 3) if content == "tensor" else [1, 2, 3], path)
    code, err = _dormant(monkeypatch, capsys, "net", "solve", str(path), "--out", str(tmp_path / "out"))
    _assert_error(code, err, path.name)
    assert "verdict" not in err
    run = list_runs(command="net solve")[0]
    assert run["status"] == "failed" and "NetworkFileError" in run["error"]


# ----------------------------------------------------------------------------- input errors that were internal errors


def test_export_into_an_existing_file(monkeypatch, capsys, tmp_path, seq_pt):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, err = _dormant(monkeypatch, capsys, "net", "export", str(seq_pt), str(blocker))
    _assert_error(code, err, "afile", "is a file, not a folder", "OUTDIR")
    assert blocker.read_text() == "x"


def test_export_refuses_an_unwritable_folder_before_loading_and_leaves_no_folder_after_a_bad_file(monkeypatch, capsys, tmp_path, seq_pt):
    import dormant.net.load.loaders as loaders

    blocker = tmp_path / "afile"
    blocker.write_text("x")

    def never(*a, **k):
        raise AssertionError("the network was loaded before OUTDIR was checked")

    monkeypatch.setattr(loaders, "load_network", never)
    code, err = _dormant(monkeypatch, capsys, "net", "export", str(seq_pt), str(blocker / "sub"))
    _assert_error(code, err, "cannot be written", "OUTDIR")
    monkeypatch.undo()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a pickle")
    code, err = _dormant(monkeypatch, capsys, "net", "export", str(bad), str(tmp_path / "new"))
    _assert_error(code, err, "bad.pt")
    assert not (tmp_path / "new").exists()  # the folder it made for the export is gone again


@pytest.mark.parametrize(
    "args, words",
    [
        (["--md5", MD5, "--charset", "ab", "--length", "2", "--backend", "foo"], ["unknown backend 'foo'", "numpy"]),
        (["-f", "md6", "-t", "00"], ["unknown hash function 'md6'", "md5"]),
        (["--md5", MD5, "--words", "nofile.txt"], ["nofile.txt", "no such file"]),
        (["--md5", MD5, "--words", "adir"], ["adir", "a folder, not a file"]),
        (["--md5", MD5, "--charset", "abc", "--length", "5-2"], ["--length", "5-2"]),
        (["--md5", MD5, "--mask", "?z"], ["?z", "unknown class"]),
    ],
)
def test_invert_refuses_bad_arguments_before_writing_anything(monkeypatch, capsys, tmp_path, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    out = tmp_path / "out"
    code, err = _dormant(monkeypatch, capsys, "net", "invert", "--no-english", "--out", str(out), *args)
    _assert_error(code, err, *words)
    assert not list(out.rglob("*"))
    assert not any(r["status"] == "ok" for r in list_runs(command="net invert"))


def test_solve_refuses_a_missing_word_list_before_any_work(monkeypatch, capsys, tmp_path, seq_pt):
    code, err = _dormant(monkeypatch, capsys, "net", "solve", str(seq_pt), "--words", str(tmp_path / "nofile.txt"), "--out", str(tmp_path / "out"))
    _assert_error(code, err, "nofile.txt", "no such file")
    assert not list_runs(command="net solve")


def test_solve_without_any_hints_still_solves_a_network_that_is_no_hash(monkeypatch, capsys, tmp_path, seq_pt):
    """Hints matter only for a hash network: none at all (--top 0 --pairs-top 0) is no reason to refuse."""
    code, err = _dormant(monkeypatch, capsys, "net", "solve", str(seq_pt), "--top", "0", "--pairs-top", "0", "--variants-top", "0",
                         "--out", str(tmp_path / "out"), "--json")
    assert code in (0, None), err
    assert [r["status"] for r in list_runs(command="net solve")] == ["ok"]


# ----------------------------------------------------------------------------- an inconsistent network folder


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s["layers"][0].update(shape=[5, 4]), ["layer 0", "L0.weight"]),
        (lambda s: s["layers"][1].update(shape=[1, 5]), ["layer 1", "takes 5 inputs", "layer 0 gives 3"]),
        (lambda s: s["layers"][0].update(activation="swish"), ["layer 0", "unknown activation 'swish'"]),
        (lambda s: s["layers"][0].update(shape="3x4"), ["layer 0", "shape"]),
        (lambda s: s["layers"][0].pop("sparse"), ["layer 0", "sparse"]),
        (lambda s: s.update(widths=[4, 3, 2]), ["widths", "do not match"]),
        (lambda s: s.update(layers=[]), ["no 'layers' list"]),
        (lambda s: s.update(adapter={"colour": "red"}), ["adapter"]),
    ],
)
def test_inconsistent_folder_is_refused_by_the_loader(folder, edit, words):
    _edit_spec(folder, edit)
    with pytest.raises(NetworkFileError) as info:
        load_network(folder)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert "dormant net export" in str(info.value)


def test_sparse_folder_with_a_wrong_declared_shape_is_refused(tmp_path):
    from dormant.net.load.network import Layer, Network
    from dormant.net.load.spec_format import save_network

    w0 = torch.zeros(22, 8).numpy()
    w0[0, 0] = 1
    net = Network([Layer(w0, torch.zeros(22).numpy()), Layer(torch.ones(1, 22).numpy(), torch.zeros(1).numpy())])
    folder = save_network(net, tmp_path / "sparse", sparse=True)
    _edit_spec(folder, lambda s: s["layers"][0].update(shape=[23, 8]))
    with pytest.raises(NetworkFileError, match="layer 0: L0.bias has shape \\[22\\], but the layer has 23 outputs"):
        load_network(folder)
    _edit_spec(folder, lambda s: s["layers"][0].update(shape=[22, 8]) or s["layers"][1].update(shape=[1, 21]))
    with pytest.raises(NetworkFileError, match="layer 1 takes 21 inputs"):
        load_network(folder)


@pytest.mark.parametrize("command", ["inspect", "motifs", "decompile", "identify", "constants", "solve", "export"])
def test_every_command_refuses_an_inconsistent_folder(monkeypatch, capsys, tmp_path, folder, command):
    _edit_spec(folder, lambda s: s["layers"][1].update(shape=[1, 5]))
    out = tmp_path / "exported"
    extra = [str(out)] if command == "export" else ["--out", str(tmp_path / "out")]
    code, err = _dormant(monkeypatch, capsys, "net", command, str(folder), *extra)
    _assert_error(code, err, "layer 1")
    assert not out.exists()
    assert not any(r["status"] == "ok" for r in list_runs(command=f"net {command}"))


# ----------------------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize(
    "args",
    [
        ["invert", "--md5", MD5, "--mask", "?d", "--budget", "-1"],
        ["invert", "--md5", MD5, "--mask", "?d", "--max-chunks", "0"],
        ["invert", "--md5", MD5, "--mask", "?d", "--workers", "-2"],
        ["invert", "--md5", MD5, "--mask", "?d", "--chunk-size", "0"],
        ["invert", "--md5", MD5, "--top", "-1"],
        ["motifs", "{net}", "--max-period", "0"],
        ["motifs", "{net}", "--max-period", "-2"],
        ["motifs", "{net}", "--tolerance", "-1"],
        ["motifs", "{net}", "--rules", "-1"],
        ["inspect", "{net}", "--samples", "-1"],
        ["inspect", "{net}", "--show-layers", "0"],
        ["decompile", "{net}", "--max-vars", "0"],
        ["decompile", "{net}", "--probes", "-1"],
        ["decompile", "{net}", "--check", "-1"],
        ["identify", "{net}", "--probes", "0"],
        ["identify", "{net}", "--max-length", "0"],
        ["constants", "{net}", "--hits", "-1"],
        ["solve", "{net}", "--budget", "0"],
        ["solve", "{net}", "--max-len", "0"],
        ["solve", "{net}", "--decompile-max", "-1"],
        ["solve", "{net}", "--pairs-top", "-5"],
    ],
)
def test_out_of_range_numbers_are_refused(monkeypatch, capsys, tmp_path, seq_pt, args):
    args = [a.replace("{net}", str(seq_pt)) for a in args]
    code, err = _dormant(monkeypatch, capsys, "net", *args, "--out", str(tmp_path / "out"))
    _assert_error(code, err, "Invalid value", args[-2])
    assert not list((tmp_path / "out").rglob("*"))


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize("content, words", [("8,abc,3", ["width 'abc' is not an integer"]), ("8,0,-3", ["width 0 (entry 2) is not positive"])])
def test_motifs_names_the_bad_width_of_a_widths_list(monkeypatch, capsys, tmp_path, content, words):
    (tmp_path / "w.txt").write_text(content)
    code, err = _dormant(monkeypatch, capsys, "net", "motifs", str(tmp_path / "w.txt"), "--out", str(tmp_path / "out"))
    _assert_error(code, err, "w.txt", *words)
    assert "unrecognised format" not in err


def test_a_pickled_tensor_is_named_in_user_terms(tmp_path):
    torch.save(torch.zeros(3, 3), tmp_path / "tensor.pt")
    with pytest.raises(NetworkFileError, match=r"holds a single tensor \(shape \[3, 3\]\), not a torch module") as info:
        load_network(tmp_path / "tensor.pt")
    assert "TensorRef" not in str(info.value)


def test_missing_storage_names_the_file_once(tmp_path, seq_pt):
    broken = tmp_path / "missing_storage.pt"
    with zipfile.ZipFile(seq_pt) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if "/data/" not in item.filename:
                dst.writestr(item, src.read(item))
    with pytest.raises(NetworkFileError, match="missing from archive") as info:
        load_network(broken)
    assert str(info.value).count(str(broken)) == 1, str(info.value)
