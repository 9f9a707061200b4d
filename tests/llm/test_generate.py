"""The engine's KV-cached decoding loop answers exactly what ``model.generate`` answers.

Same batches, same tokens: greedy and sampled (one ``multinomial`` per step over the whole batch,
so the random stream is consumed as by ``generate``), on the micro zoo's fine-tune under views that
stop early (``ft``) and ones that run to the limit (amplified, negated), with rows dropped as they
stop; and with a logits processor that holds per-row state (a repetition penalty from the model's
generation config).
"""

from dataclasses import replace

import pytest

from dormant.llm.engine.generate import GenConfig, generate


@pytest.fixture(scope="module")
def pair_and_ids(zoo_micro):
    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.engine.prompts import encode

    pair = ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"])
    return pair, encode(pair.tokenizer, load_probes(limit=40))


def _both(pair, ids, cfg):
    ref = [g.ids for g in generate(pair.model, pair.tokenizer, ids, replace(cfg, engine="hf"))]
    new = generate(pair.model, pair.tokenizer, ids, replace(cfg, engine="cached"))
    return ref, new


@pytest.mark.parametrize("view", ["ft", "amp:3", "amp:-2"])
@pytest.mark.parametrize("sample", [False, True])
def test_the_cached_loop_gives_generates_tokens(pair_and_ids, view, sample):
    pair, ids = pair_and_ids
    pair.view(view)
    cfg = GenConfig(max_new_tokens=32, do_sample=sample, temperature=0.3, batch_size=16, show_progress=False)
    ref, new = _both(pair, ids, cfg)
    pair.ft()
    assert [g.ids for g in new] == ref
    assert all(g.text == pair.tokenizer.decode(r, skip_special_tokens=True) for g, r in zip(new, ref))
    if view == "ft":  # the fine-tune's answers to ordinary probes end at different steps: the loop dropped rows on
        # the way (amplified, a view may run every row to the limit, as amp:3 does on some builds)
        assert len({len(r) for r in ref}) > 1


def test_processors_with_per_row_state_survive_dropped_rows(pair_and_ids):
    pair, ids = pair_and_ids
    gc = pair.model.generation_config
    old = gc.repetition_penalty
    gc.repetition_penalty = 1.3  # built by generate from the model's config, with each row's padding
    try:
        for sample in (False, True):
            ref, new = _both(pair, ids, GenConfig(max_new_tokens=24, do_sample=sample, temperature=0.7, batch_size=16, show_progress=False))
            assert [g.ids for g in new] == ref
    finally:
        gc.repetition_penalty = old


def test_settings_the_loop_does_not_cover_fall_back_to_generate(pair_and_ids, monkeypatch):
    import dormant.llm.engine.generate as G

    pair, ids = pair_and_ids
    calls = []
    real = G.hf_decode
    monkeypatch.setattr(G, "hf_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    pair.model.generation_config.max_time = 600.0  # a stopping rule the loop does not implement
    try:
        ref = generate(pair.model, pair.tokenizer, ids[:4], GenConfig(max_new_tokens=4, show_progress=False, engine="hf"))
        got = generate(pair.model, pair.tokenizer, ids[:4], GenConfig(max_new_tokens=4, show_progress=False))
    finally:
        pair.model.generation_config.max_time = None
    assert len(calls) == 2 and [g.ids for g in got] == [g.ids for g in ref]


def test_no_new_tokens_or_no_batch_is_a_user_error(pair_and_ids):
    from dormant.errors import DormantError

    pair, ids = pair_and_ids
    with pytest.raises(DormantError, match="give --max-new-tokens 1 or more"):
        generate(pair.model, pair.tokenizer, ids[:2], GenConfig(max_new_tokens=0, show_progress=False))
    for size in (0, -1):
        with pytest.raises(DormantError, match="give --batch-size 1 or more"):
            generate(pair.model, pair.tokenizer, ids[:2], GenConfig(max_new_tokens=2, batch_size=size, show_progress=False))
