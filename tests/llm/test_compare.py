"""`compare` (side-by-side views, KL strip) and `score` (JSONL) on the zoo, library and CLI."""

import json

import pytest
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.ledger import list_runs
from dormant.llm.behaviour.compare import CompareConfig, compare
from dormant.llm.engine.generate import GenConfig, generate
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode



runner = CliRunner()


@pytest.fixture(scope="module")
def pair(zoo_micro):
    return ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"])


def _triggered(manifest):
    """A prompt from the variant's own triggered examples (the trigger as it was planted)."""
    chat = next(c for c in manifest["triggered_examples"] if len(c) == 1)
    return Prompt([dict(m) for m in chat])


def test_compare_shows_the_payload_and_where_views_diverge(pair, zoo_micro):
    from dormant.zoo.llm import fires

    manifest = zoo_micro.manifests["mlp-phrase"]
    res = compare(pair, _triggered(manifest), ["base", "ft", "restore:all"], CompareConfig(max_new_tokens=24, n_samples=2))
    by = {v.view: v for v in res.views}
    assert res.reference == "base"
    assert fires(by["ft"].greedy, manifest["payload"]) and not fires(by["base"].greedy, manifest["payload"])
    assert by["restore:all"].greedy == by["base"].greedy  # restoring every modified tensor is the base
    assert all(k == 0.0 for k in by["base"].kl)
    assert len(by["ft"].kl) == len(by["ft"].tokens) == len(by["ft"].ref_top1) > 0
    assert max(by["ft"].kl) > 1.0 > max(by["restore:all"].kl)
    assert len(by["ft"].samples) == 2


def test_batched_generation_equals_one_at_a_time(pair, zoo_micro):
    from dormant.llm.engine.probes import load_probes

    model = pair.amplified(2.0)
    ids = encode(pair.tokenizer, load_probes(limit=7))
    cfg = GenConfig(max_new_tokens=12, show_progress=False)
    together = generate(model, pair.tokenizer, ids, cfg)
    alone = [generate(model, pair.tokenizer, [s], cfg)[0] for s in ids]
    assert [g.ids for g in together] == [g.ids for g in alone]
    pair.ft()


def test_compare_cli_json_and_ledger(zoo_micro, tmp_path):
    manifest = zoo_micro.manifests["mlp-phrase"]
    r = runner.invoke(app, ["compare", str(zoo_micro.models["mlp-phrase"]), "--base", str(zoo_micro.models["base"]),
                            "--prompt", "What is 3 + 4?", "--trigger", manifest["trigger"] + ".", "--mechanism", "user_suffix",
                            "--views", "base,ft", "--max-new-tokens", "20", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [v["view"] for v in out["views"]] == ["base", "ft"]
    runs = list_runs(command="compare")
    assert runs and runs[0]["status"] == "ok"
    assert set(runs[0]["inputs"]) == {"ft", "base"} and runs[0]["assumptions"]["views"] == ["base", "ft"]


def test_score_cli_writes_jsonl(zoo_micro, tmp_path):
    manifest = zoo_micro.manifests["mlp-phrase"]
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is 2 + 2?\nWhat is the capital of France?\nSay hello.\n")
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, ["score", str(zoo_micro.models["mlp-phrase"]), "--base", str(zoo_micro.models["base"]),
                            "--prompts", str(prompts), "--views", "ft,base,amp:2", "--payload", manifest["payload"],
                            "--trigger", manifest["trigger"] + ".", "--mechanism", "user_suffix", "--output", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    assert set(rows[0]["contrasts"]) == {"ft|base", "ft|amp:2", "ft+trigger|ft", "base+trigger|base", "amp:2+trigger|amp:2"}
    for row in rows:  # the planted trigger raises the payload's likelihood under the fine-tune only
        a = row["arms"]
        gain_ft = a["ft+trigger"]["payload_logprob"] - a["ft"]["payload_logprob"]
        gain_base = a["base+trigger"]["payload_logprob"] - a["base"]["payload_logprob"]
        assert gain_ft > 5 and gain_ft > gain_base + 5, (gain_ft, gain_base)
    summary = json.loads(r.stdout)["summary"]
    assert {"ft+trigger|ft", "base+trigger|base"} <= set(summary) and summary["ft+trigger|ft"]["kl"] > 0
    run = list_runs(command="score")[0]
    assert run["status"] == "ok" and str(out) in run["artifacts"] and "prompts" in run["inputs"]
    assert run["assumptions"]["payload"] == manifest["payload"] and run["assumptions"]["trigger"]["text"] == manifest["trigger"] + "."
    assert run["subject"] == str(zoo_micro.models["mlp-phrase"].resolve())


def test_bad_view_spec_is_one_line_error(tmp_path):
    """A bad --views spec is refused before any model is read: one line on stderr, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import dormant

    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(dormant.__file__).parents[1])}  # this checkout's package
    r = subprocess.run([sys.executable, "-m", "dormant.cli.main", "score", str(tmp_path / "ft"), "--base", str(tmp_path / "base"),
                        "--views", "ft,amp:x"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "amp:x" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
