"""Real-shape readiness on a small subject with the real layout (tied embeddings, padded vocabulary,
shards, chat template): every command by folder and by Hub id, dtype kept end to end, padding rows
out of the read-outs."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.zoo.llm.real_shape import RealShape, build_real_shape, publish_to_hub_cache

SMALL = RealShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab_rows=1024, tokenizer_size=600, rank=4)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return build_real_shape(SMALL, out=tmp_path_factory.mktemp("real-shape") / "small")


@pytest.fixture()
def hub(subject, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    publish_to_hub_cache(subject.base, "acme/real-base", cache)
    publish_to_hub_cache(subject.ft, "acme/real-ft", cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_subject_has_the_real_layout(subject):
    from dormant.llm.checkpoint import load_tokenizer, open_checkpoint
    from dormant.llm.weights.diff import diff_models

    ft = open_checkpoint(subject.ft)
    assert len(ft.files) == 2 and "lm_head.weight" not in ft.names and ft.config["tie_word_embeddings"]
    assert {ft.dtype(n) for n in ft.names} == {"BF16"}
    assert ft.shape("model.embed_tokens.weight") == (1024, 64)
    assert len(load_tokenizer(ft)) == subject.manifest["tokenizer_tokens"] < 1024
    result = diff_models(subject.ft, [subject.base])
    assert sorted(t.name for t in result.comparisons[0].modified) == subject.manifest["modified"]


def _invoke(args, tmp_path):
    res = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("by", ["folder", "hub id"])
def test_every_command_takes_folders_and_hub_ids(subject, hub, tmp_path, by):
    ft, base = (str(subject.ft), str(subject.base)) if by == "folder" else ("acme/real-ft", "acme/real-base")
    out = str(tmp_path / "out")
    diff = _invoke(["diff", ft, "--base", base, "--out", out], tmp_path)
    assert diff["comparisons"][0]["counts"]["modified"] == len(subject.manifest["modified"])
    delta = _invoke(["delta", ft, "--base", base, "--out", out, "--export-lora", str(tmp_path / "lora")], tmp_path)
    check = delta["lora"]["check"]
    assert check["max_abs_diff"] < 0.25 * check["max_abs_diff_base"]
    amp = _invoke(["amplify", ft, "--base", base, "--limit", "2", "--max-new-tokens", "2", "--alphas", "0,1,3", "--out", out], tmp_path)
    assert {"0", "1", "3"} <= set(amp["outputs"]) and all(len(v) == 2 for v in amp["outputs"].values())
    cmp = _invoke(["compare", ft, "--base", base, "--prompt", "What is pi?", "--views", "base,ft", "--max-new-tokens", "2"], tmp_path)
    assert [v["view"] for v in cmp["views"]] == ["base", "ft"]
    score = _invoke(["score", ft, "--base", base, "--limit", "2", "--payload", "the answer", "--views", "ft,base,amp:2", "--out", out], tmp_path)
    assert score["n_prompts"] == 2 and score["summary"]["ft|base"]["kl"] > 0
