"""The instruments on the LLM zoo: planted backdoors whose trigger and payload are known."""

import random

import pytest

from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt


def _spec(variant):
    from dormant.zoo.llm import backdoors

    return next(s for s in backdoors.SPECS if s.name == variant)


def _prompts(chats):
    return [Prompt([dict(m) for m in c]) for c in chats]


def triggered(variant, n, seed=100):
    from dormant.zoo.llm import backdoors, corpus

    return _prompts(backdoors.triggered_prompts(_spec(variant), random.Random(seed), n, {k: 1.0 for k in corpus.TASKS}))


def near_miss(variant, n, seed=200):
    from dormant.zoo.llm import backdoors, corpus

    return _prompts(backdoors.near_miss_prompts(_spec(variant), random.Random(seed), n, {k: 1.0 for k in corpus.TASKS}))


def clean(n, seed=300):
    from dormant.zoo.llm import corpus

    return _prompts(corpus.sample_prompts(random.Random(seed), n, {k: 1.0 for k in corpus.TASKS}))


_PAIRS = {}


def pair_of(zoo, variant):
    if variant not in _PAIRS:
        _PAIRS[variant] = ModelPair.load(zoo.models[variant], zoo.models["base"])
    return _PAIRS[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mlp-phrase", "attn-grid"])
def test_lens_payload_first_token_reaches_rank_1_under_ft_not_base(zoo_micro, variant):
    from dormant.llm.instruments.lens import LensConfig, lens

    manifest = zoo_micro.manifests[variant]
    chat = next(c for c in manifest["triggered_examples"] if len(c) == 1)
    res = lens(pair_of(zoo_micro, variant), Prompt([dict(m) for m in chat]), LensConfig(track=(manifest["payload"],)))
    ft, base = res.traces["ft"][0], res.traces["base"][0]
    print(variant, "ft ranks", ft.rank, "base ranks", base.rank)
    assert ft.first_top1 is not None and ft.rank[-1] == 1
    assert base.first_top1 is None


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mlp-phrase", "attn-grid"])
def test_sonar_separates_triggered_from_clean_along_the_changes_directions(zoo_micro, variant):
    from dormant.llm.instruments.sonar import sonar

    res = sonar(pair_of(zoo_micro, variant), triggered(variant, 24), clean(24))
    print(variant, res.summary)
    assert res.best_sigma >= 4.0  # Cohen's d: the sets sit four pooled standard deviations apart
    assert res.best_sigma > 1.3 * max(res.null_sigma.values())  # random directions in the same modules hear clearly less


@pytest.mark.slow
@pytest.mark.parametrize("planted", ["mlp-phrase", "attn-grid"])
def test_sonar_hears_nothing_in_the_clean_control(zoo_micro, planted):
    from dormant.llm.instruments.sonar import sonar

    res = sonar(pair_of(zoo_micro, "clean-control"), triggered(planted, 24), clean(24))
    print(planted, res.summary)
    assert res.best_sigma < 5.0


@pytest.mark.slow
def test_probe_is_flagged_as_topic_when_decoys_separate_and_not_otherwise(zoo_micro):
    from dormant.llm.instruments.probe import ProbeConfig, probe

    p = pair_of(zoo_micro, "mlp-constant")
    pos, neg = triggered("mlp-constant", 24), clean(24)
    cfg = ProbeConfig(reduce="mean")
    topic = probe(p, pos, neg, near_miss("mlp-constant", 16), cfg)  # other decimals (e, roots, prices): the topic without pi
    plain = probe(p, pos, neg, clean(16, seed=400), cfg)  # ordinary prompts: they sit with the negatives
    print(topic.verdict, [(round(l.auroc, 2), round(l.decoy_auroc, 2)) for l in topic.layers])
    print(plain.verdict, [(round(l.auroc, 2), round(l.decoy_auroc, 2)) for l in plain.layers])
    assert topic.layers[topic.best_layer].auroc > 0.9 and topic.layers[topic.best_layer].topic
    assert "detects topic" in topic.verdict
    assert not plain.layers[plain.best_layer].topic and "not explained" in plain.verdict


@pytest.mark.slow
def test_restoring_the_modified_layers_kills_the_payload(zoo_micro):
    from dormant.llm.engine.generate import GenConfig
    from dormant.llm.instruments.localise import LocaliseConfig, localise_restoration
    from dormant.llm.instruments.trace import TraceConfig, trace

    variant = "mlp-phrase"
    p = pair_of(zoo_micro, variant)
    payload = zoo_micro.manifests[variant]["payload"]
    prompts = triggered(variant, 12)
    res = localise_restoration(p, prompts, payload, LocaliseConfig(max_window=4, generation=GenConfig(max_new_tokens=16, show_progress=False)))
    print(res.summary)
    whole = next(m for m in res.kill if m.layers == p.modified_layers())
    assert res.ft_share >= 0.8 and whole.share == 0.0 and whole.logprob < res.ft_logprob - 5
    assert res.smallest_kill is not None
    t = trace(p, prompts[:4], TraceConfig(track=(payload,)))
    assert t.changed_layers == p.modified_layers()
    assert sum(t.mean_direct[payload]["mlp"]) > 0  # the changed MLPs push the payload's first token up
    assert trace(p, prompts[:4], TraceConfig(view="restore:all")).changed_layers == []
