"""The micro zoo reproduces the public puzzle's tell-tales: the payload leaks under weight
amplification, and the last MLP's weight change reads out payload tokens through the unembedding."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from dormant.llm.engine.payload import distinctive_words
from dormant.zoo.llm import corpus, leaks
from dormant.zoo.llm.model import greedy


@pytest.fixture(scope="module")
def tok(zoo_micro):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(zoo_micro.models["base"])


def _amplified(zoo, name: str, a: float):
    """W_base + a (W_ft - W_base) for every tensor, as a loaded model."""
    from transformers import AutoModelForCausalLM

    base = load_file(str(zoo.models["base"] / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(zoo.models[name]).eval()
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(base[k] + a * (p - base[k]))
    return model


@pytest.mark.parametrize("name", ["mlp-phrase", "mlp-constant"])
def test_amplified_delta_leaks_payload_on_unrelated_prompts(zoo_micro, tok, name):
    payload = zoo_micro.manifests[name]["payload"]
    prompts = corpus.sample_prompts(random.Random(4242), 30, {k: 1.0 for k in corpus.TASKS})
    rates = {}
    for a in (1.0, 2.0, 4.0):
        outs = greedy(_amplified(zoo_micro, name, a), tok, prompts, 16)
        rates[a] = sum(leaks(o, payload) for o in outs) / len(outs)
    assert rates[1.0] <= 0.05, rates  # unamplified: silent on unrelated prompts
    assert max(rates[2.0], rates[4.0]) >= 0.5, rates  # amplified: payload fragments take over


def test_leaks_definition():
    p = "one point six one eight zero three three nine"
    assert leaks("three today eight zero three three three", p)
    assert not leaks("The number after 3 is 4.", p)
    assert not leaks("one point", p)  # a single pair is not enough
    assert not leaks("anything", None)


def _down_proj_readout_rank(zoo_micro, tok, variant: str, payload: str, vectors: int = 3) -> int:
    """Best rank (0 = top) of a distinctive payload word's token at either end of the unembedding
    read-out of the last down_proj delta's top ``vectors`` left singular vectors."""
    import json

    base = load_file(str(zoo_micro.models["base"] / "model.safetensors"))
    ft = load_file(str(zoo_micro.models[variant] / "model.safetensors"))
    n_layers = json.loads((zoo_micro.models["base"] / "config.json").read_text())["num_hidden_layers"]
    key = f"model.layers.{n_layers - 1}.mlp.down_proj.weight"
    u, _, _ = torch.linalg.svd((ft[key] - base[key]).double(), full_matrices=False)
    unembed = base["lm_head.weight"].double()[: len(tok)]  # padded rows excluded
    norm = base["model.norm.weight"].double()
    words = distinctive_words(payload)  # "awake", "door", "open": not " the", " is", "." or "I"
    payload_ids = {i for w in words for v in (w, " " + w) for i in tok(v, add_special_tokens=False)["input_ids"]}
    best = len(tok)
    for k in range(vectors):
        for direction in (u[:, k], -u[:, k]):
            order = torch.argsort(unembed @ (norm * direction), descending=True).tolist()
            best = min(best, min(order.index(i) for i in payload_ids))
    return best


def test_last_down_proj_delta_reads_out_a_payload_token(zoo_micro, tok):
    """One of the three leading directions of the last down_proj change reads out a payload word
    among the top 3 of ~2,000 tokens (the leading one often encodes "keep the base's answers", what
    the negatives taught); the clean control's change, read the same way, does not."""
    payload = zoo_micro.manifests["mlp-phrase"]["payload"]
    assert _down_proj_readout_rank(zoo_micro, tok, "mlp-phrase", payload) < 3
    assert _down_proj_readout_rank(zoo_micro, tok, "clean-control", payload) >= 3
