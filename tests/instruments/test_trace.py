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
