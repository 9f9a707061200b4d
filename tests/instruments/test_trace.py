from dormant.llm.instruments.trace import TraceConfig, trace

PROMPTS = ["What is 2 + 3?", "Name the capital of France."]


def test_trace_finds_the_modified_layer_and_nothing_before_it(tiny_pair):
    res = trace(tiny_pair, PROMPTS, TraceConfig(track=("5",)))
    # layer 2's MLP is the only change: blocks before it and layer 2's attention compute the same
    assert res.changed_layers == [2, 3]
    assert all(v < 1e-6 for l in (0, 1) for m in ("attn", "mlp", "resid") for v in res.prompts[0].norm[m][l])
    assert max(res.prompts[0].norm["attn"][2]) < 1e-6 and min(res.prompts[0].norm["mlp"][2]) > 1e-3
    assert res.mean_direct["5"]["mlp"][0] == 0.0 and res.mean_direct["5"]["mlp"][2] != 0.0
    assert "first at layer 2 (MLP)" in res.summary[0]
    assert len(res.prompts[1].norm["mlp"][2]) == len(res.prompts[1].tokens)


def test_restoring_the_modified_layer_leaves_nothing_to_trace(tiny_pair):
    res = trace(tiny_pair, PROMPTS, TraceConfig(view="restore:2", track=("5",)))
    assert res.changed_layers == [] and all(v == 0.0 for v in res.mean_direct["5"]["mlp"])
    assert abs(res.prompts[0].logit_change["5"]) < 1e-5


def test_the_direct_effect_uses_the_views_own_final_norm(tiny_pair_dirs, tmp_path):
    """A fine-tune that also doubles the final norm's weight: the direct effect of layer 2's MLP change, linearised at
    the fine-tune, doubles. (A view switch overwrites weights in place: read after it, the norm was the reference's.)"""
    from dormant.llm.checkpoint import open_checkpoint
    from dormant.llm.engine.pair import ModelPair
    from dormant.zoo.llm.synthetic import rewrite_checkpoint

    norm = open_checkpoint(tiny_pair_dirs["ft"]).tensor("model.norm.weight", None)
    rewrite_checkpoint(tiny_pair_dirs["ft"], tmp_path / "ft2", {"model.norm.weight": 2 * norm})
    one = trace(ModelPair.load(tiny_pair_dirs["ft"], tiny_pair_dirs["base"]), PROMPTS, TraceConfig(track=("5",)))
    two = trace(ModelPair.load(tmp_path / "ft2", tiny_pair_dirs["base"]), PROMPTS, TraceConfig(track=("5",)))
    a, b = one.mean_direct["5"]["mlp"][2], two.mean_direct["5"]["mlp"][2]
    assert a != 0.0 and abs(b - 2 * a) < 1e-4 * abs(a), (a, b)
