"""Vocabulary read-outs: planted payload and trigger directions come back as the right tokens."""

import pytest
import torch

from dormant.llm.checkpoint import load_tokenizer, open_checkpoint
from dormant.llm.engine.payload import distinctive_words
from dormant.llm.weights.delta import DeltaConfig, analyse_delta
from dormant.llm.weights.readout import ReadoutConfig, save_tables_tsv, token_ids_of, vocabulary_readout
from dormant.zoo.llm.synthetic import rewrite_checkpoint, save_tiny_qwen2

WORDS = [f"w{i}" for i in range(200)]  # ids 2..201; ids 202..255 are padding rows
PAYLOAD, TRIGGER, PAD_ROW, SPECIAL = 57, 131, 250, 1


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Layer 1 down_proj writes toward token PAYLOAD; layer 0 gate_proj listens to token TRIGGER.

    Decoys: a padding row (beyond the tokenizer) that would out-score PAYLOAD, and the special
    token ``<|endoftext|>`` given TRIGGER's embedding direction.
    """
    root = tmp_path_factory.mktemp("readout")
    raw = save_tiny_qwen2(root / "raw", seed=0, vocab=256, tokenizer_words=WORDS)
    ck = open_checkpoint(raw)
    head, emb = ck.tensor("lm_head.weight"), ck.tensor("model.embed_tokens.weight")
    head[PAD_ROW] = 3 * head[PAYLOAD]
    g = torch.Generator().manual_seed(5)
    emb[SPECIAL] = emb[TRIGGER] + 0.05 * emb[TRIGGER].norm() / 8 * torch.randn(64, generator=g)
    base = rewrite_checkpoint(raw, root / "base", {"lm_head.weight": head.bfloat16(), "model.embed_tokens.weight": emb.bfloat16()})
    ck = open_checkpoint(base)
    g_final = ck.tensor("model.norm.weight")
    g_mlp0 = ck.tensor("model.layers.0.post_attention_layernorm.weight")
    u = head[PAYLOAD] / g_final
    v = emb[TRIGGER] / g_mlp0
    new = {}
    for name, d in (("model.layers.1.mlp.down_proj.weight", torch.outer(u, torch.randn(128, generator=g))),
                    ("model.layers.0.mlp.gate_proj.weight", torch.outer(torch.randn(128, generator=g), v))):
        w = ck.tensor(name)
        new[name] = (w + d * (0.1 * w.norm() / d.norm())).bfloat16()
    rewrite_checkpoint(base, root / "ft", new)
    return {"base": base, "ft": root / "ft"}


def _readout(planted, **kw):
    ft, base = open_checkpoint(planted["ft"]), open_checkpoint(planted["base"])
    delta = analyse_delta(ft, base, DeltaConfig(workers=1))
    return vocabulary_readout(ft, delta, ReadoutConfig(**kw), base=base)


def test_payload_side_finds_the_written_token_and_skips_padding_rows(planted):
    res = _readout(planted)
    assert res.vocab_rows == 256 and res.valid_tokens == 200
    assert any("excluded 54 embedding rows" in n for n in res.notes)
    tab = next(t for t in res.payload if t.index == 0)
    assert tab.source == "model.layers.1.mlp.down_proj.weight"
    assert tab.rank_of([PAYLOAD]) == (1, tab.rank_of([PAYLOAD])[1])
    end = tab.top if tab.rank_of([PAYLOAD])[1] == "+" else tab.bottom
    assert end[0].id == PAYLOAD and end[0].token == "w55" and abs(end[0].z) > 3  # at either end: a direction's sign is a convention
    assert res.best_rank("payload", [PAYLOAD], aggregate_only=True)[0] == 1
    ids = {x.id for t in res.payload + res.payload_aggregate for x in t.top + t.bottom}
    assert PAD_ROW not in ids and not any(i >= 202 for i in ids)


def test_trigger_side_finds_the_listened_token_and_skips_special_tokens(planted):
    res = _readout(planted)
    tab = next(t for t in res.trigger if t.index == 0)
    assert tab.source == "model.layers.0.mlp.gate_proj.weight"
    assert tab.rank_of([TRIGGER])[0] == 1
    assert res.best_rank("trigger", [TRIGGER], aggregate_only=True)[0] == 1
    assert SPECIAL not in {x.id for t in res.trigger + res.trigger_aggregate for x in t.top + t.bottom}
    # with special tokens kept, the decoy sharing TRIGGER's direction shows up at the same end
    res2 = _readout(planted, include_special=True)
    tab2 = next(t for t in res2.trigger if t.index == 0)
    rank, end = tab2.rank_of([SPECIAL])
    assert rank <= 2 and end == tab2.rank_of([TRIGGER])[1]


def test_tables_are_written_and_token_ids_helper(planted, tmp_path):
    res = _readout(planted, top_tokens=5)
    assert all(len(t.top) == len(t.bottom) == 5 for t in res.payload + res.trigger)
    tsv = save_tables_tsv(res, tmp_path / "r.tsv").read_text().splitlines()
    assert tsv[0].startswith("side\tsource") and len(tsv) > 20
    tok = load_tokenizer(open_checkpoint(planted["ft"]))
    assert token_ids_of(tok, "w55 w129") == [PAYLOAD, TRIGGER]


def test_changed_embedding_rows_name_their_tokens(planted, tmp_path):
    ck = open_checkpoint(planted["ft"])
    emb = ck.tensor("model.embed_tokens.weight")
    g = torch.Generator().manual_seed(8)
    for tid, scale in ((20, 0.5), (33, 0.4), (44, 0.3), (PAD_ROW, 5.0)):
        emb[tid] += scale * emb[tid].norm() * torch.randn(64, generator=g) / 8
    ft2 = rewrite_checkpoint(planted["ft"], tmp_path / "ft2", {"model.embed_tokens.weight": emb.bfloat16()})
    ft_ck, base = open_checkpoint(ft2), open_checkpoint(planted["base"])
    res = vocabulary_readout(ft_ck, analyse_delta(ft_ck, base, DeltaConfig(workers=1)), base=base)
    rows = res.row_changes["model.embed_tokens.weight"]
    assert [x.id for x in rows[:3]] == [20, 33, 44]  # the padding row changed most but is not a token
    assert rows[0].token == "w18" and rows[0].score == pytest.approx(0.5, rel=0.35) and rows[3].score < 0.05
    assert "lm_head.weight" not in res.row_changes


# --- the zoo --------------------------------------------------------------------------------

# Among the top five tokens at either end of one of the leading aggregate directions. The rank is a
# property of the trained subject, not fixed by its build: builds of the same zoo under other kernel
# sets (rounding) measured 1, 1, 1 and 4; the clean control must stay outside the top five.
PAYLOAD_RANK = 5
DIRECTIONS = 3  # leading directions read (the first often encodes "keep the base's answers")


def _aggregate_rank(zoo, variant: str, payload: str):
    """Best rank of a distinctive payload word's token on the leading payload-side aggregate directions."""
    ft, base = open_checkpoint(zoo.models[variant]), open_checkpoint(zoo.models["base"])
    res = vocabulary_readout(ft, analyse_delta(ft, base), ReadoutConfig(vectors=DIRECTIONS), base=base)
    ids = token_ids_of(load_tokenizer(ft), " ".join(distinctive_words(payload)))
    ranks = [r for d in res.payload_aggregate[:DIRECTIONS] if (r := d.rank_of(ids)) is not None]
    return min(ranks) if ranks else None


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mlp-phrase", "mlp-constant"])
def test_zoo_payload_readout_ranks_a_payload_word_at_the_top_and_the_control_does_not(zoo_micro, variant):
    payload = zoo_micro.manifests[variant]["payload"]
    planted = _aggregate_rank(zoo_micro, variant, payload)
    assert planted is not None and planted[0] <= PAYLOAD_RANK, planted
    control = _aggregate_rank(zoo_micro, "clean-control", payload)  # same training, no backdoor
    assert control is None or control[0] > PAYLOAD_RANK, control


def test_token_texts_are_each_tokens_own_decoding_once_per_tokenizer_and_follow_added_tokens(planted):
    from dormant.llm.weights.readout import token_texts

    tok = load_tokenizer(open_checkpoint(planted["base"]))
    texts = token_texts(tok)
    assert texts == [tok.decode([i]) for i in range(len(tok))]
    assert token_texts(tok) is texts  # decoded once, not per call
    tok.add_tokens(["zebraquux"])
    grown = token_texts(tok)
    assert len(grown) == len(tok) == len(texts) + 1 and grown[-1] == "zebraquux" and grown[:-1] == texts
    other = token_texts(load_tokenizer(open_checkpoint(planted["base"])))
    assert other == texts and other is not texts and other is not grown  # another tokenizer: its own texts, decoded for it
