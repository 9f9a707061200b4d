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


def test_fingerprint_tells_a_merged_lora_from_its_base_reading_little(tmp_path, monkeypatch):
    from pathlib import Path

    import numpy as np
    from safetensors.numpy import save_file

    from dormant.fingerprint import fingerprint

    rng = np.random.default_rng(0)
    base = {f"layers.{i}.mlp.weight": rng.standard_normal((512, 1024)).astype(np.float32) for i in range(8)}
    base["norm.weight"] = np.ones(64, np.float32)
    (tmp_path / "base").mkdir()
    (tmp_path / "ft").mkdir()
    a, b = tmp_path / "base" / "model.safetensors", tmp_path / "ft" / "model.safetensors"  # names are hashed too
    save_file(base, str(a))
    ft = dict(base)  # same names, shapes and offsets: only tensor bytes differ
    ft["layers.5.mlp.weight"] = base["layers.5.mlp.weight"] + 1e-3 * rng.standard_normal((512, 4)) @ rng.standard_normal((4, 1024))
    ft["layers.5.mlp.weight"] = ft["layers.5.mlp.weight"].astype(np.float32)
    save_file(ft, str(b))
    assert a.read_bytes()[:4096] == b.read_bytes()[:4096]  # identical headers
    assert fingerprint(a) != fingerprint(b)  # a rank-4 change in one of eight matrices shows
    save_file(base, str(b))
    assert fingerprint(a) == fingerprint(b)  # equal bytes, equal fingerprints
    small = dict(base, **{"norm.weight": base["norm.weight"] * 1.01})
    save_file(small, str(b))
    assert fingerprint(a) != fingerprint(b)  # a small tensor is hashed whole
    save_file({"w2" if k == "norm.weight" else k: v for k, v in base.items()}, str(b))
    assert fingerprint(a) != fingerprint(b)  # a renamed tensor changes the header

    read = []
    real_open = Path.open

    def counting_open(self, *args, **kw):
        fh = real_open(self, *args, **kw)
        real_read = fh.read

        def counted(n=-1):
            data = real_read(n)
            read.append(len(data))
            return data

        fh.read = counted
        return fh

    monkeypatch.setattr(Path, "open", counting_open)
    fingerprint(a)
    assert 0 < sum(read) < a.stat().st_size // 20  # a sample: 8 x 12 KiB of a 16 MiB file


def _writer(db: str, n: int, tag: str) -> None:
    for i in range(n):
        with ledger.record_run("score", {"i": i, "tag": tag}, ledger=db) as run:
            run.outputs["i"] = i


def test_the_code_version_changes_with_any_source_file_and_only_with_them(tmp_path):
    from dormant.fingerprint import code_version, source_digest

    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    first = source_digest(tmp_path / "pkg")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    (tmp_path / "pkg" / "sub" / "__pycache__").mkdir()
    assert source_digest(tmp_path / "pkg") == first  # only .py sources count... (a cache folder holds none)
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 3\n")
    edited = source_digest(tmp_path / "pkg")
    (tmp_path / "pkg" / "sub" / "b.py").rename(tmp_path / "pkg" / "b.py")
    moved = source_digest(tmp_path / "pkg")
    assert len({first, edited, moved}) == 3
    assert code_version().startswith("code:") and code_version() == code_version()


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


def _model(folder, scale=1.0):
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(exist_ok=True)
    save_file({"w": (np.arange(4096, dtype=np.float32) * scale)}, str(folder / "model.safetensors"))
    return folder


def test_a_newer_decision_invalidates_runs_on_the_old_value_only(tmp_path):
    db = tmp_path / "l.sqlite"
    ft, other, b1, b2 = (_model(tmp_path / n, s) for n, s in (("ft", 1.0), ("other", 3.0), ("b1", 0.5), ("b2", 0.25)))

    def rec(command, subject, base, decide=False):
        with ledger.record_run(command, {}, ledger=db) as run:
            run.add_input("ft", subject, subject=True)
            run.add_input("base", base)
            (run.decide if decide else run.assume)("base", run.inputs["base"])
        return run.id

    d1 = rec("diff", ft, b1, decide=True)
    delta1 = rec("delta", ft, b1)
    other1 = rec("delta", other, b1)  # another subject: no diff decided anything for it
    d2 = rec("diff", ft, b2, decide=True)
    delta2 = rec("delta", ft, b2)
    late_b1 = rec("amplify", ft, b1)  # assumes b1 on purpose after the decision: an assumption does not override a decision
    runs = {r["id"]: r for r in ledger.list_runs(db)}
    assert {i for i, r in runs.items() if r["invalidated"]} == {d1, delta1}
    (why,) = runs[delta1]["invalidated"]
    assert why["kind"] == "assumption" and why["key"] == "base" and why["by"] == d2
    assert why["old"].endswith(str(b1)) and why["new"].endswith(str(b2))
    assert f"newer run {d2} (diff) decided base=" in why["reason"]
    assert not runs[other1]["invalidated"] and not runs[delta2]["invalidated"] and not runs[late_b1]["invalidated"]
    # a failed run decides nothing
    with pytest.raises(RuntimeError):
        with ledger.record_run("diff", {}, ledger=db) as run:
            run.add_input("ft", ft, subject=True)
            run.decide("base", "sha256:0 /elsewhere")
            raise RuntimeError("boom")
    assert not ledger.get_run(delta2, db)["invalidated"]


def test_changed_model_bytes_invalidate_runs_fingerprinted_on_the_old_bytes(tmp_path):
    db = tmp_path / "l.sqlite"
    ft = _model(tmp_path / "ft")
    with ledger.record_run("delta", {}, ledger=db) as old:
        old.add_input("ft", ft, subject=True)
    assert not ledger.get_run(old.id, db, check_files=True)["invalidated"]
    _model(ft, scale=1.001)  # same name, shape and offsets; other bytes
    assert not ledger.get_run(old.id, db)["invalidated"]  # nothing newer recorded, disk not checked
    (why,) = ledger.get_run(old.id, db, check_files=True)["invalidated"]
    assert why["kind"] == "input" and why["by"] == "disk" and "changed on disk" in why["reason"] and str(ft) in why["reason"]
    with ledger.record_run("delta", {}, ledger=db) as new:
        new.add_input("ft", ft, subject=True)
    runs = {r["id"]: r for r in ledger.list_runs(db)}
    assert not runs[new.id]["invalidated"]
    (why,) = runs[old.id]["invalidated"]
    assert why["by"] == new.id and why["new"] == new.inputs["ft"].split()[0] and why["old"] == old.inputs["ft"].split()[0]


def test_ledger_written_before_subjects_gains_the_columns(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, command TEXT NOT NULL, args TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, "
                      "status TEXT NOT NULL, inputs TEXT NOT NULL DEFAULT '{}', assumptions TEXT NOT NULL DEFAULT '{}', outputs TEXT NOT NULL DEFAULT '{}', "
                      "artifacts TEXT NOT NULL DEFAULT '[]', error TEXT);"
                      "INSERT INTO runs (id, command, args, started_at, status) VALUES ('abc', 'diff', '{}', 1.0, 'ok');")
    con.close()
    (old,) = ledger.list_runs(db)
    assert old["subject"] is None and old["decided"] == [] and old["invalidated"] == []
    assert old["environment"] == {}  # not recorded then; a new run on the old file records it
    with ledger.record_run("diff", {}, ledger=db):
        pass
    assert ledger.list_runs(db)[0]["environment"]["python"]


def test_a_run_records_the_torch_and_kernels_it_computed_with(tmp_path, monkeypatch):
    """Bits a seeded computation gives depend on the kernel set: the run says which it had."""
    import torch

    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    db = tmp_path / "l.sqlite"
    with ledger.record_run("delta", {}, ledger=db):
        pass
    (got,) = ledger.list_runs(db)
    env = got["environment"]
    assert env["torch"] == str(torch.__version__) and env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["MKL_CBWR"] == "COMPATIBLE" and env["machine"]


def test_cli_strikes_out_runs_a_newer_diff_invalidated(tmp_path, tiny_investigation):
    """End to end: real `diff` and `delta` runs on tiny models; a second diff picks another base."""
    from dormant.zoo.llm.synthetic import plant_lowrank

    inv = tiny_investigation(tmp_path)
    dormant, base, sibling, ft = inv["dormant"], inv["base"], inv["sibling"], inv["ft"]
    runs = json.loads(dormant("ledger", "list", "--json"))
    assert [r["command"] for r in runs] == ["diff", "delta", "diff"]
    assert [bool(r["invalidated"]) for r in runs] == [False, True, True]
    for r in runs[1:]:
        (why,) = r["invalidated"]
        assert why["key"] == "base" and why["by"] == runs[0]["id"] and why["new"].endswith(str(base)) and why["old"].endswith(str(sibling))
    text = dormant("ledger", "list")
    assert text.count("INVALIDATED") == 3 and "2 of 3 runs shown are INVALIDATED" in text and f"newer run {runs[0]['id']} (diff) decided base=" in text
    plant_lowrank(base, ft, {f"model.layers.{i}.mlp.up_proj.weight": 2 for i in range(2)}, seed=5)  # the fine-tune's bytes change
    runs = json.loads(dormant("ledger", "list", "--json"))
    assert all(any(w["kind"] == "input" and w["key"] == str(ft.resolve()) for w in r["invalidated"]) for r in runs)
    shown = json.loads(dormant("ledger", "show", runs[0]["id"], "--json"))
    assert "changed on disk" in shown["invalidated"][0]["reason"]


def test_listing_a_few_runs_reads_only_their_input_files(tmp_path, monkeypatch):
    db = tmp_path / "l.sqlite"
    for name in ("a", "b"):
        with ledger.record_run("delta", {}, ledger=db) as run:
            run.add_input("ft", _model(tmp_path / name), subject=True)
    read = []
    real = ledger.fingerprint
    monkeypatch.setattr(ledger, "fingerprint", lambda p: read.append(str(p)) or real(p))
    (newest,) = ledger.list_runs(db, limit=1, check_files=True)
    assert newest["subject"].endswith("/b") and read == [str((tmp_path / "b").resolve())]


_HOLD = """
import sys, time
from dormant import ledger
with ledger.record_run("search", {}, ledger=sys.argv[1]) as run:
    print(run.id, flush=True)
    time.sleep(600)
"""


def _held_run(db):
    """A real process that records a run and stays inside it; returns (process, run id)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_run_whose_process_was_killed_is_stored_as_interrupted(tmp_path):
    import os
    import signal

    db = tmp_path / "l.sqlite"
    proc, rid = _held_run(db)
    try:
        assert ledger.get_run(rid, db)["status"] == "running"  # its process is alive: still running
        row = ledger.get_run(rid, db)
        assert row["owner_pid"] == proc.pid and row["owner_host"] and row["owner_start"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0] == "running"  # nobody has read it yet
    (got,) = ledger.list_runs(db)
    assert got["status"] == "interrupted" and f"process {proc.pid}" in got["error"]
    assert con.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0] == "interrupted"  # stored, not just shown
    con.close()
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "ledger", "list", "--ledger", str(db), "--json"], capture_output=True, text=True, check=True)
    assert [r["status"] for r in json.loads(out.stdout)] == ["interrupted"]


def test_a_reused_pid_does_not_pass_for_the_owner(tmp_path):
    import os

    db = tmp_path / "l.sqlite"
    with ledger.record_run("delta", {}, ledger=db) as run:
        con = sqlite3.connect(db)
        assert ledger.get_run(run.id, db)["status"] == "running"  # this very process
        if ledger.get_run(run.id, db)["owner_start"]:  # a start token to compare (Linux): pretend the pid was reused
            con.execute("UPDATE runs SET owner_start = 'another-boot:1' WHERE id = ?", (run.id,))
            con.commit()
            assert ledger.get_run(run.id, db)["status"] == "interrupted"
        con.execute("UPDATE runs SET status = 'running', owner_host = 'elsewhere', owner_pid = ? WHERE id = ?", (os.getpid(), run.id))
        con.commit()
        con.close()
        assert ledger.get_run(run.id, db)["status"] == "running"  # another host's run cannot be judged from here
    assert ledger.get_run(run.id, db)["status"] == "ok"  # the owner finishing still records its end


def test_a_decision_that_refines_a_value_leaves_the_runs_on_it_valid(tmp_path):
    db = tmp_path / "l.sqlite"
    ft = _model(tmp_path / "ft", 1.0)

    def rec(command, payload, decide=False, refines=()):
        with ledger.record_run(command, {}, ledger=db) as run:
            run.add_input("ft", ft, subject=True)
            if decide:
                run.decide("payload", payload, refines=refines)
            else:
                run.assume("payload", payload)
        return run.id

    amp = rec("amplify", "ell rings at noon.", decide=True)
    search = rec("search", "ell rings at noon.")
    verify = rec("verify", "The bell rings at noon.", decide=True, refines=["ell rings at noon."])
    runs = {r["id"]: r for r in ledger.list_runs(db)}
    assert not any(runs[i]["invalidated"] for i in (amp, search, verify))  # completed, not contradicted
    assert runs[verify]["refines"] == {"payload": ["ell rings at noon."]}
    # a later hypothesis that is neither strikes out what rested on both
    other = rec("amplify", "something else", decide=True)
    runs = {r["id"]: r for r in ledger.list_runs(db)}
    assert {i for i, r in runs.items() if r["invalidated"]} == {amp, search, verify}
    assert not runs[other]["invalidated"]
