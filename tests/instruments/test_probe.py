import torch

from dormant.llm.instruments.probe import ProbeConfig, auroc, held_out_auroc, held_out_aurocs, probe, steer

ADD = [f"What is {a} + {b}?" for a, b in [(2, 3), (4, 1), (7, 2), (5, 5), (3, 8), (6, 1), (9, 4), (1, 1)]]
ADD_DECOYS = [f"Please add {a} and {b}." for a, b in [(2, 6), (3, 3), (8, 1), (4, 4), (7, 7), (5, 2)]]
CAPS = [f"Name the capital of {c}." for c in ("France", "Spain", "Italy", "Chile", "Peru", "Japan", "Kenya", "Egypt")]
CAP_DECOYS = [f"Name the capital of {c}, please." for c in ("Norway", "Brazil", "Canada", "India", "Ghana", "Cuba")]


def test_auroc_counts_ordered_pairs():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0 and auroc([1], [1]) == 0.5


def test_held_out_auroc_sees_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 20, generator=g, dtype=torch.float64)
    shifted = x[:60].clone()
    shifted[:, 3] += 3.0
    assert held_out_auroc(shifted, x[60:], 5, 1e-2) > 0.9
    assert 0.3 < held_out_auroc(x[:60], x[60:], 5, 1e-2) < 0.7  # no signal: near chance on held-out prompts


def test_the_decoy_control_compares_decoys_with_negatives_the_probe_never_saw():
    """In many dimensions a probe separates the prompts it was fitted on perfectly, so against those negatives any unseen
    prompt looks positive (decoys drawn like the negatives gave a decoy AUROC of 1.0): the decoys are compared with
    held-out negatives. Decoys drawn like the negatives stay with them; decoys on the positives' topic do not."""
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        neg, pos, like_neg = (torch.randn(20, 1024, generator=g, dtype=torch.float64) for _ in range(3))
        pos[:, :200] += 0.5
        on_topic = torch.randn(20, 1024, generator=g, dtype=torch.float64)
        on_topic[:, :200] += 0.5
        held, decoy = held_out_aurocs(pos, neg, 5, 1e-2, like_neg)
        assert held > 0.9 and decoy < 0.75, (held, decoy)  # not flagged as topic (the threshold is 0.75)
        assert held_out_aurocs(pos, neg, 5, 1e-2, on_topic)[1] > 0.9
    assert held_out_aurocs(pos, neg, 5, 1e-2)[1] is None


def test_decoys_on_the_positives_topic_flag_a_topic_probe(tiny_pair):
    cfg = ProbeConfig(reduce="mean", folds=4)
    topic = probe(tiny_pair, ADD, CAPS, ADD_DECOYS, cfg)
    clean = probe(tiny_pair, ADD, CAPS, CAP_DECOYS, cfg)
    best = topic.layers[topic.best_layer]
    assert best.auroc > 0.9 and best.topic and "detects topic" in topic.verdict
    assert not clean.layers[clean.best_layer].topic and "not explained by the decoys' topic" in clean.verdict
    assert abs(sum(x * x for x in best.direction) - 1.0) < 1e-6


def test_steering_changes_the_answer_and_scale_zero_does_not(tiny_pair):
    from dormant.llm.engine.generate import GenConfig

    res = probe(tiny_pair, ADD, CAPS, None, ProbeConfig(reduce="mean", folds=4))
    layer = res.layers[1]
    gen = GenConfig(max_new_tokens=8, show_progress=False)
    out = steer(tiny_pair, ["Name the capital of Spain."], 1, layer.direction, [0.0, 4.0], layer.residual_norm, gen)
    tiny_pair.ft()
    from dormant.llm.engine.generate import generate
    from dormant.llm.engine.prompts import encode

    plain = generate(tiny_pair.model, tiny_pair.tokenizer, encode(tiny_pair.tokenizer, ["Name the capital of Spain."]), gen)[0].text
    assert out[0]["output"] == plain and out[1]["output"] != plain
