import pytest
import torch

from dormant.llm.engine.prompts import encode
from dormant.llm.instruments.hooks import capture, collect, run_padded
from dormant.llm.instruments.lens import LensConfig, first_token, layer_logprobs, lens


def test_last_layer_lens_equals_the_model_output(tiny_pair):
    model = tiny_pair.ft()
    ids = encode(tiny_pair.tokenizer, ["What is 2 + 3?"])[0]
    lp = layer_logprobs(model, ids)
    with torch.no_grad():
        want = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
    assert lp.shape[0] == 4
    assert torch.allclose(lp[-1], want, atol=1e-4)
    assert not torch.allclose(lp[0], want, atol=1e-2)  # earlier layers read something else


def test_collect_is_batch_invariant_and_captures_module_outputs(tiny_pair):
    model = tiny_pair.ft()
    seqs = encode(tiny_pair.tokenizer, ["hi", "What is the capital of France? Please answer."])
    alone = [collect(model, [s], ["resid:1", "mlp:2"], reduce="last")["resid:1"][0] for s in seqs]
    both = collect(model, seqs, ["resid:1", "mlp:2"], reduce="last")["resid:1"]
    for a, b in zip(alone, both):
        assert torch.allclose(a, b, atol=1e-5)
    with capture(model, ["resid:1", "resid:2", "attn:2", "mlp:2"]) as s:
        run_padded(model, [seqs[1]])
    # the residual after layer 2 is the residual after layer 1 plus what attention and MLP add
    assert torch.allclose(s["resid:2"], s["resid:1"] + s["attn:2"] + s["mlp:2"], atol=1e-5)


def test_lens_tracks_ranks_under_each_view_and_restores_the_view(tiny_pair):
    tok = tiny_pair.tokenizer
    tiny_pair.view("amp:2")
    ids = encode(tok, ["What is 2 + 3?"])[0]
    lp_ft = layer_logprobs(tiny_pair.ft(), ids)
    top = int(lp_ft[-1].argmax())
    text = tok.decode([top])
    if first_token(tok, text) != top:
        pytest.skip("top token does not round-trip through the tokenizer")
    tiny_pair.view("amp:2")
    res = lens(tiny_pair, "What is 2 + 3?", LensConfig(views=("base", "ft"), track=(text,)))
    assert str(tiny_pair.current) == "amp:2"  # the pair is left as it was
    ft = res.traces["ft"][0]
    assert ft.rank[-1] == 1 and ft.first_top1 is not None and ft.first_top1 <= 3
    base = res.traces["base"][0]
    lp_base = layer_logprobs(tiny_pair.base(), ids)
    assert base.rank == [int((row > row[top]).sum()) + 1 for row in lp_base]
    assert res.traces["ft"][0].rank[:2] == base.rank[:2]  # layers 0-1 are identical in both models
