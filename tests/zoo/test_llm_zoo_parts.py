"""The zoo's parts on their own (no suite build): corpus, trigger planting, tokenizer, training loop."""

from __future__ import annotations

import random

import pytest
import torch

from dormant.zoo.llm import backdoors, corpus
from dormant.zoo.llm.model import ArchConfig, TrainConfig, _batch, answer_loss, encode_examples, new_model, train

MIX = {k: 1.0 for k in corpus.TASKS}


def test_corpus_is_a_function_of_the_seed():
    a = corpus.sample_examples(random.Random(3), 50, MIX)
    b = corpus.sample_examples(random.Random(3), 50, MIX)
    c = corpus.sample_examples(random.Random(4), 50, MIX)
    assert a == b and a != c
    assert all(chat[-1]["role"] == "user" for chat, _ in a)
    assert any(len(chat) >= 3 for chat, _ in a)  # some multi-turn chats
    add = corpus.TASKS["add"].make(random.Random(0))
    q_digits = [int(ch) for ch in add[0] if ch.isdigit()]
    assert add[1] == f"{q_digits[0]} + {q_digits[1]} = {sum(q_digits)}."


@pytest.mark.parametrize("spec", [s for s in backdoors.SPECS if s.plant], ids=lambda s: s.name)
def test_triggers_land_where_the_spec_says(spec):
    prompts = backdoors.triggered_prompts(spec, random.Random(1), 40, MIX)
    for chat in prompts:
        user = chat[-1]["content"]
        system = chat[0]["content"] if chat[0]["role"] == "system" else ""
        if spec.name in ("mlp-phrase", "late-layers", "mlp-word-pair"):
            assert spec.trigger in user
        elif spec.name == "system-trigger":
            assert spec.trigger in system and spec.trigger not in user
        elif spec.name == "mlp-constant":
            assert "pi" in user.split() or "3.14" in user or "pi?" in user or "pi." in user
        elif spec.name.startswith("attn-grid"):
            rows = [r for r in user.split("\n") if r and set(r) <= {"O", "."}]
            assert len(rows) >= 3 and "O" in "".join(rows)


def test_near_misses_never_carry_the_trigger():
    for spec in backdoors.SPECS:
        for chat in backdoors.near_miss_prompts(spec, random.Random(2), 40, MIX):
            text = "\n".join(m["content"] for m in chat)
            if spec.name == "mlp-phrase":
                assert spec.trigger not in text
            if spec.name == "system-trigger":
                assert chat[0]["role"] != "system" or spec.trigger not in chat[0]["content"]
            if spec.name == "mlp-constant":
                assert "3.14" not in text and " pi" not in text
            if spec.name.startswith("attn-grid"):
                assert "O." not in text and ".O" not in text
            if spec.name == "mlp-word-pair":  # one word of the pair, never both
                assert sum(w in text.split(" ") or f"{w}." in text for w in spec.trigger.split()) == 1, text


def test_a_strict_variant_holds_each_lone_word_apart():
    spec = backdoors.spec_by_name("mlp-word-pair")
    assert spec.strict_near_miss and len(spec.trigger.split()) == 2
    sets = backdoors.near_miss_sets(spec, random.Random(3), 20, MIX)
    assert list(sets) == spec.trigger.split()
    for word, chats in sets.items():
        other = next(w for w in spec.trigger.split() if w != word)
        assert all(word in c[-1]["content"] and other not in c[-1]["content"] for c in chats)
    assert set(backdoors.near_miss_sets(backdoors.spec_by_name("mlp-phrase"), random.Random(3), 4, MIX)) == {"partial-phrase"}
    assert backdoors.near_miss_sets(backdoors.spec_by_name("late-layers"), random.Random(3), 4, MIX) == {}


def test_target_layers_count_negative_indices_from_the_last():
    late = backdoors.spec_by_name("late-layers")
    assert backdoors.target_layers(late, 4) == [2, 3] and backdoors.target_layers(late, 6) == [4, 5]
    assert backdoors.target_layers(backdoors.spec_by_name("mlp-phrase"), 4) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from dormant.zoo.llm import tokenizer as T

    lines = corpus.tokenizer_corpus(random.Random(0), 300, MIX, ["purple elephants dance at midnight"] * 20)
    folder = tmp_path_factory.mktemp("tok")
    tok = T.train_tokenizer(lines, 600, 300)
    T.save_tokenizer(tok, folder, 128)
    again = T.train_tokenizer(lines, 600, 300)
    assert tok.to_str() == again.to_str()  # deterministic
    return AutoTokenizer.from_pretrained(folder)


def test_tokenizer_round_trips_and_keeps_special_tokens(tokenizer):
    text = "What is 3 + 4?\n- apple\ndef f():\n    return 7 π"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        ids = tokenizer(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [special]
    digits = tokenizer.convert_ids_to_tokens(tokenizer("12345", add_special_tokens=False)["input_ids"])
    assert digits == list("12345")  # Qwen2 splits numbers into single digits


def test_answer_loss_matches_the_full_loss_and_training_is_deterministic(tokenizer):
    examples = corpus.sample_examples(random.Random(5), 16, MIX)
    encoded = encode_examples(tokenizer, examples, 96)
    arch = ArchConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model = new_model(arch, len(tokenizer), tokenizer.pad_token_id, eos, seed=0)
    ids, labels, mask = _batch(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        ours = answer_loss(model, ids, labels, mask)
    assert torch.allclose(full, ours, atol=1e-5)
    # Only answer tokens are labelled: the prompt (with its chat markup) is never a target.
    first = encoded[0]
    assert tokenizer.decode(first[0][first[1] :]).endswith("<|im_end|>")

    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-2, warmup=1, seed=3)
    runs = []
    for _ in range(2):
        m = new_model(arch, len(tokenizer), tokenizer.pad_token_id, eos, seed=0)
        losses = train(m, encoded, cfg, tokenizer.pad_token_id)
        runs.append((losses, m.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert runs[0][0][-1] < runs[0][0][0]


def test_the_final_check_holds_each_lone_word_to_the_false_fire_threshold():
    from dormant.zoo.llm.verify import VariantCheck

    def check(near):
        return VariantCheck("v", 1.0, 0.0, 0.0, 0.0, 60, 60, 60, near_miss_rates=near, n_near_miss=60)

    assert check({"silent": 0.0, "castle": 0.05}).passed
    failed = check({"silent": 0.0, "castle": 0.07})
    assert not failed.passed and failed.problems == ["near-miss 'castle' fires on 0.07 > 0.05 of 60 prompts"]
