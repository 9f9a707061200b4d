"""The run ledger records runs, failures and fingerprints, and survives concurrent writers."""

import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys

import pytest

from dormant import ledger


def test_records_ok_run_with_inputs_and_outputs(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    db = tmp_path / "l.sqlite"
    with ledger.record_run("diff", {"ft": str(model)}, ledger=db, assumptions={"base": "x"}) as run:
        run.add_input("ft", model)
        run.outputs["verdict"] = "base"
        run.artifacts.append("plot.png")
    (got,) = ledger.list_runs(db)
    assert got["status"] == "ok" and got["command"] == "diff"
    assert got["inputs"]["ft"].startswith("sha256:")
    assert got["assumptions"] == {"base": "x"}
    assert got["outputs"] == {"verdict": "base"}
    assert got["artifacts"] == ["plot.png"]
    assert ledger.get_run(got["id"][:6], db)["id"] == got["id"]


def test_failed_run_is_recorded_and_error_propagates(tmp_path):
    db = tmp_path / "l.sqlite"
    with pytest.raises(RuntimeError):
        with ledger.record_run("amplify", {}, ledger=db):
            raise RuntimeError("boom")
    (got,) = ledger.list_runs(db)
    assert got["status"] == "failed" and "boom" in got["error"]


def test_unknown_run_id_is_a_key_error(tmp_path):
    with pytest.raises(KeyError, match="no run"):
        ledger.get_run("nope", tmp_path / "l.sqlite")


def test_fingerprint_changes_with_header_not_with_tensor_bytes(tmp_path):
    from dormant.fingerprint import fingerprint
    from safetensors.numpy import save_file
    import numpy as np

    f = tmp_path / "a.safetensors"
    save_file({"w": np.zeros(4, np.float32)}, str(f))
    fp1 = fingerprint(f)
    save_file({"w": np.ones(4, np.float32)}, str(f))
    assert fingerprint(f) == fp1  # same header: a hash of headers, not of whole files
    save_file({"w2": np.ones(4, np.float32)}, str(f))
    assert fingerprint(f) != fp1


def _writer(db: str, n: int, tag: str) -> None:
    for i in range(n):
        with ledger.record_run("score", {"i": i, "tag": tag}, ledger=db) as run:
            run.outputs["i"] = i


def test_concurrent_writers_do_not_corrupt(tmp_path):
    db = str(tmp_path / "l.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, 40, f"p{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = ledger.list_runs(db, limit=1000)
    assert len(runs) == 160 and all(r["status"] == "ok" for r in runs)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cli_lists_and_shows_runs_as_json(tmp_path):
    db = tmp_path / "l.sqlite"
    with ledger.record_run("diff", {"a": 1}, ledger=db) as run:
        run.outputs["x"] = 2
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "ledger", "list", "--ledger", str(db), "--json"], capture_output=True, text=True, check=True)
    runs = json.loads(out.stdout)
    assert [r["id"] for r in runs] == [run.id]
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "ledger", "show", run.id, "--ledger", str(db), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["outputs"] == {"x": 2}
    bad = subprocess.run([sys.executable, "-m", "dormant.cli.main", "ledger", "show", "zzz", "--ledger", str(db)], capture_output=True, text=True)
    assert bad.returncode == 2 and "no run" in bad.stderr
