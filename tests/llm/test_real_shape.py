"""Real-shape readiness on a small subject with the real layout (tied embeddings, padded vocabulary,
shards, chat template): every command by folder and by Hub id, dtype kept end to end, padding rows
out of the read-outs."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.zoo.llm.real_shape import RealShape, build_real_shape, publish_to_hub_cache

SMALL = RealShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab_rows=1024, tokenizer_size=600, rank=4, rel_scale=0.3)


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


# -- dtype end to end ----------------------------------------------------------------------------------

def test_pair_keeps_the_checkpoint_dtype_and_views_are_exact_in_it(subject):
    from transformers import AutoModelForCausalLM

    from dormant.llm.engine.pair import ModelPair

    pair = ModelPair.load(subject.ft, subject.base)  # no dtype given: the checkpoint's (bf16), on CPU too
    assert {p.dtype for p in pair.model.parameters()} == {torch.bfloat16}
    assert {x.dtype for t in pair.modified.values() for x in (t.base, t.ft)} == {torch.bfloat16}
    assert pair.memory_bytes()["modified_copies"] == 2 * sum(t.param.numel() * 2 for t in pair.modified.values())
    ids = torch.tensor([[3, 17, 42, 99, 5, 250, 7, 61]])
    for path, spec in ((subject.base, "base"), (subject.ft, "ft"), (subject.base, "amp:0"), (subject.ft, "amp:1")):
        ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
        with torch.no_grad():
            torch.testing.assert_close(pair.view(spec)(ids).logits, ref(ids).logits, rtol=0, atol=0, msg=spec)
    name = subject.manifest["modified"][0]
    t = pair.modified[name]
    pair.view("amp:3")
    want = torch.lerp(t.base.float(), t.ft.float(), 3.0).to(torch.bfloat16)  # one rounding from float32
    assert t.param.dtype == torch.bfloat16 and torch.equal(t.param.detach(), want)


# -- scoring a 150k vocabulary ---------------------------------------------------------------------------

WIDE = RealShape(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, vocab_rows=150_016, tokenizer_size=600, rank=2, rel_scale=0.5)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    from dormant.llm.engine.pair import ModelPair

    s = build_real_shape(WIDE, out=tmp_path_factory.mktemp("real-shape") / "wide")
    return ModelPair.load(s.ft, s.base, dtype="float32")


def _live_logprob_probe(monkeypatch):
    """Wrap ``batch_logprobs`` to track the peak number of log-probability elements alive at once."""
    import weakref

    from dormant.llm.engine import scoring

    state = {"live": 0, "peak": 0}
    real = scoring.batch_logprobs

    def probe(*args, **kwargs):
        out = real(*args, **kwargs)
        for t in out:
            state["live"] += t.numel()
            weakref.finalize(t, lambda n=t.numel(): state.__setitem__("live", state["live"] - n))
        state["peak"] = max(state["peak"], state["live"])
        return out

    monkeypatch.setattr(scoring, "batch_logprobs", probe)
    return state


def test_scoring_a_150k_vocabulary_never_holds_items_x_tokens_x_vocab(wide, monkeypatch):
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.engine.scoring import ScoreConfig, contrast_views

    prompts = load_probes("v1", limit=24)
    payload = " ".join(["the", "answer", "is", "hidden"] * 5)  # 20 words
    n_tokens = len(wide.tokenizer(payload, add_special_tokens=False)["input_ids"])
    V = wide.model.get_output_embeddings().weight.shape[0]
    assert V == 150_016 and n_tokens >= 10
    budget = 1 << 23
    state = _live_logprob_probe(monkeypatch)
    res = contrast_views(wide, prompts, ("ft", "base", "amp:3"), payload=payload, config=ScoreConfig(max_logprob_elems=budget, show_progress=False))
    one_arm = len(prompts) * n_tokens * V
    assert state["peak"] > 0 and state["peak"] <= 2 * budget + n_tokens * V, (state["peak"], one_arm)
    assert state["peak"] < one_arm / 4
    # and the numbers are those of an unbatched forward pass per prompt
    from dormant.llm.engine.prompts import encode
    from dormant.llm.engine.scoring import divergences

    monkeypatch.undo()
    ids = encode(wide.tokenizer, prompts[:3])
    cont = wide.tokenizer(payload, add_special_tokens=False)["input_ids"]
    for i, seq in enumerate(ids):
        lps = {}
        for v in ("ft", "base"):
            with torch.no_grad():
                logits = wide.view(v)(torch.tensor([seq + cont[:-1]])).logits[0, len(seq) - 1 :].float()
            lps[v] = torch.log_softmax(logits, -1)
        want = divergences(lps["ft"], lps["base"])
        got = res.rows[i].contrasts["ft|base"]
        assert got["kl"] == pytest.approx(float(want["kl"].mean()), rel=1e-3, abs=1e-6)
        assert res.rows[i].arms["ft"]["payload_logprob"] == pytest.approx(float(lps["ft"].gather(1, torch.tensor(cont).view(-1, 1)).sum()), rel=1e-4)
    assert res.summary["ft|base"]["kl"] > 0 and res.summary["ft|amp:3"]["kl"] > res.summary["ft|base"]["kl"] * 0.5


# -- read-outs skip the padding rows ---------------------------------------------------------------------

def test_readout_excludes_the_embedding_rows_past_the_tokenizer(subject, monkeypatch):
    from dormant.llm.checkpoint import load_tokenizer, open_checkpoint
    from dormant.llm.weights.delta import DeltaConfig, analyse_delta
    from dormant.llm.weights.readout import ReadoutConfig, vocabulary_readout

    ft, base = open_checkpoint(subject.ft), open_checkpoint(subject.base)
    delta = analyse_delta(ft, base, DeltaConfig(workers=1))
    n_tokens = subject.manifest["tokenizer_tokens"]
    cfg = ReadoutConfig(top_tokens=10, vectors=2)

    def ids(read):
        tables = read.payload + read.trigger + read.payload_aggregate + read.trigger_aggregate
        return [x.id for t in tables for x in t.top + t.bottom]

    read = vocabulary_readout(ft, delta, cfg, tokenizer=load_tokenizer(ft))
    assert read.valid_tokens <= n_tokens and read.vocab_rows == 1024
    assert ids(read) and max(ids(read)) < n_tokens
    assert any(f"excluded {1024 - n_tokens} embedding rows" in n for n in read.notes)
    # the padding rows are loud: a read-out that kept every row would be taken over by them
    from dormant.llm.weights import readout

    monkeypatch.setattr(readout, "valid_token_mask", lambda rows, tok, special=False: torch.ones(rows, dtype=torch.bool))
    unmasked = vocabulary_readout(ft, delta, cfg, tokenizer=load_tokenizer(ft))
    assert sum(i >= n_tokens for i in ids(unmasked)) > len(ids(unmasked)) / 2
