"""Batched scoring equals unbatched scoring (padding, prefix reuse), metrics, back-off, contrasts."""

import math

import pytest
import torch

from dormant.llm.engine.batching import common_prefix_len, length_batches, run_with_backoff
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.probes import load_probes
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.engine.scoring import (
    Arm, ScoreConfig, contrast_trigger, contrast_views, divergences, logprobs_at, next_token_logprobs, score_arms,
)

QUIET = dict(show_progress=False)




@pytest.fixture(scope="module")
def pair(zoo_micro):
    return ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"])


@pytest.fixture(scope="module")
def prompts(zoo_micro):
    return load_probes("v1", limit=24)


def _full_forward_logprobs(model, seq):
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), -1)


def test_batched_equals_unbatched_with_and_without_prefix_reuse(pair, prompts):
    model = pair.ft()
    ids = encode(pair.tokenizer, prompts)
    assert len({len(s) for s in ids}) > 3, "the probes must have different lengths to exercise padding"
    assert common_prefix_len(ids) > 5, "chat prompts share the template's system block"
    ref = torch.stack([_full_forward_logprobs(model, s)[-1] for s in ids])
    for reuse in (False, True):
        for bs in (1, 5, 64):
            got = next_token_logprobs(model, ids, ScoreConfig(batch_size=bs, prefix_reuse=reuse, **QUIET), pad_id=pair.tokenizer.pad_token_id)
            torch.testing.assert_close(got, ref, rtol=0, atol=2e-4, msg=f"prefix_reuse={reuse} batch={bs}")


def test_teacher_forced_positions_match_full_forward(pair, prompts):
    model = pair.base()
    ids = encode(pair.tokenizer, prompts[:9])
    cont = pair.tokenizer("I am awake and the door is open.", add_special_tokens=False)["input_ids"]
    seqs = [s + cont[:-1] for s in ids]
    positions = [[len(s) - 1 + t for t in range(len(cont))] for s in ids]
    cfg = ScoreConfig(batch_size=4, prefix_reuse=True, **QUIET)
    got = logprobs_at(model, seqs, positions, cfg, pad_id=pair.tokenizer.pad_token_id)
    only = logprobs_at(model, seqs, positions, cfg, pad_id=pair.tokenizer.pad_token_id, targets=[cont] * len(seqs))  # the targets' alone
    for s, ps, g, o in zip(seqs, positions, got, only):
        full = _full_forward_logprobs(model, s)
        torch.testing.assert_close(g, full[ps], rtol=0, atol=2e-4)
        torch.testing.assert_close(o, full[ps, cont], rtol=0, atol=2e-4)


def test_payload_likelihood_and_multi_token_kl(pair, prompts):
    payload = "I am awake and the door is open."
    res = contrast_views(pair, prompts[:6], ["ft", "base", "ft"][:2], payload=payload, config=ScoreConfig(batch_size=4, **QUIET))
    cont = pair.tokenizer(payload, add_special_tokens=False)["input_ids"]
    ids = encode(pair.tokenizer, prompts[:6])
    for view in ("ft", "base"):
        model = pair.view(view)
        for i, s in enumerate(ids):
            lp = _full_forward_logprobs(model, s + cont[:-1])
            want = sum(float(lp[len(s) - 1 + t, tok]) for t, tok in enumerate(cont))
            assert res.rows[i].arms[view]["payload_logprob"] == pytest.approx(want, abs=2e-3)
    row = res.rows[0].contrasts["ft|base"]
    assert len(row["kl_tokens"]) == len(cont)
    assert row["kl"] == pytest.approx(sum(row["kl_tokens"]) / len(cont), rel=1e-3, abs=1e-6)
    pair.ft()


def test_divergences_on_known_distributions():
    a = torch.log(torch.tensor([[0.5, 0.5, 0.0 + 1e-12], [0.9, 0.05, 0.05]]))
    b = torch.log(torch.tensor([[0.5, 0.5, 1e-12], [0.05, 0.9, 0.05]]))
    d = divergences(a, b)
    assert float(d["kl"][0]) == pytest.approx(0.0, abs=1e-6)
    want = 0.9 * math.log(0.9 / 0.05) + 0.05 * math.log(0.05 / 0.9)
    assert float(d["kl"][1]) == pytest.approx(want, rel=1e-4)
    assert float(d["js"][1]) == pytest.approx(float(divergences(b, a)["js"][1]), rel=1e-5)
    assert 0 < float(d["js"][1]) < math.log(2)
    assert d["top1_disagree"].tolist() == [0.0, 1.0]


def test_contrasts_ft_vs_base_and_self(pair, prompts):
    ids = encode(pair.tokenizer, prompts[:10])
    arms = [Arm("ft", ids, "ft"), Arm("base", ids, "base"), Arm("ft2", ids, "ft")]
    res = score_arms(pair, arms, [("ft", "base"), ("ft", "ft2")], config=ScoreConfig(chunk_items=4, **QUIET))
    assert res.summary["ft|ft2"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert res.summary["ft|base"]["kl"] > 1e-4
    assert all(r.arms["ft"]["top1_id"] == r.arms["ft2"]["top1_id"] for r in res.rows)


def test_trigger_contrast_separates_the_real_trigger(pair, zoo_micro):
    from dormant.zoo.llm import corpus
    import random

    manifest = zoo_micro.manifests["mlp-phrase"]
    chats = corpus.sample_prompts(random.Random(5), 8, {k: 1.0 for k in corpus.TASKS})
    ps = [Prompt([dict(m) for m in c if m["role"] != "system"]) for c in chats]
    real = contrast_trigger(pair, ps, manifest["trigger"] + ".", mechanism="user_suffix", payload=manifest["payload"], config=ScoreConfig(**QUIET))
    decoy = contrast_trigger(pair, ps, "Thank you.", mechanism="user_suffix", payload=manifest["payload"], config=ScoreConfig(**QUIET))
    assert real.summary["with"]["payload_logprob"] > real.summary["without"]["payload_logprob"] + 5
    gain = lambda r: r.summary["with"]["payload_logprob"] - r.summary["without"]["payload_logprob"]  # noqa: E731
    # any new words shift a tiny model's distributions (KL), only the trigger makes the payload likely
    assert gain(real) > gain(decoy) + 3
    assert real.summary["with|without"]["kl"] > 0 and decoy.summary["with|without"]["kl"] > 0


def test_length_batches_respect_limits():
    lengths = [5, 50, 7, 48, 6, 49, 30, 31]
    batches = length_batches(lengths, batch_size=3, max_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 100 or len(b) == 1


def test_out_of_memory_backs_off():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [i * 10 for i in batch]

    state = {"batch_size": 8}
    assert run_with_backoff(list(range(8)), fn, state) == [i * 10 for i in range(8)]
    assert state["batch_size"] <= 2 and calls[0] == 8
    with pytest.raises(ValueError):
        run_with_backoff([1, 2], lambda b: (_ for _ in ()).throw(ValueError("other")), {"batch_size": 2})
