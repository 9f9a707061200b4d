from dormant.llm.behaviour.amplify import payload_shares, words
from dormant.llm.engine.generate import GenConfig, generate
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.instruments.localise import LocaliseConfig, localise_restoration, windows

PROMPT = [Prompt.user("What is 2 + 3?")]


def _ft_answer(pair):
    pair.ft()
    return generate(pair.model, pair.tokenizer, encode(pair.tokenizer, PROMPT), GenConfig(max_new_tokens=12, show_progress=False))[0].text


def test_windows_are_runs_of_the_sorted_layers():
    assert windows([1, 2, 5], 2) == [[1], [2], [5], [1, 2], [2, 5]]


def test_restoring_the_modified_layer_kills_what_the_fine_tune_says(tiny_pair):
    answer = _ft_answer(tiny_pair)
    assert len(words(answer)) >= 2
    shares = payload_shares(tiny_pair, PROMPT, answer, ["ft", "restore:2", "base", "restore:mlp", "restore:self_attn"])
    assert shares == {"ft": 1.0, "restore:2": 0.0, "base": 0.0, "restore:mlp": 0.0, "restore:self_attn": 1.0}
    res = localise_restoration(tiny_pair, PROMPT, answer, LocaliseConfig(generation=GenConfig(max_new_tokens=12, show_progress=False)))
    assert res.modified_layers == [2] and res.ft_share == 1.0 and res.base_share == 0.0
    assert res.smallest_kill.layers == [2] and res.smallest_kill.view == "restore:2"
    assert res.smallest_carry.layers == [2]
    assert res.smallest_kill.logprob != res.ft_logprob
    assert abs(res.modules[0].logprob - res.smallest_kill.logprob) < 1e-4  # restore:mlp == restore:2 == base here
    assert [m.view for m in res.modules] == ["restore:mlp"]  # attention was not modified
    assert "restoring layers 2 kills the payload" in res.summary[1]
    assert str(tiny_pair.current) == "ft"


def test_under_amplification_restoring_the_modified_layer_kills_what_the_amplified_model_says(tiny_pair):
    """No trigger known: the payload shows only under amp:A, and the restoration views keep the rest amplified."""
    tiny_pair.view("amp:3")
    said = generate(tiny_pair.model, tiny_pair.tokenizer, encode(tiny_pair.tokenizer, PROMPT), GenConfig(max_new_tokens=12, show_progress=False))[0].text
    tiny_pair.ft()
    assert said != _ft_answer(tiny_pair) and len(words(said)) >= 2
    shares = payload_shares(tiny_pair, PROMPT, said, ["amp:3", "amp:3/restore:2", "amp:3/restore:self_attn", "ft"])
    assert shares == {"amp:3": 1.0, "amp:3/restore:2": 0.0, "amp:3/restore:self_attn": 1.0, "ft": 0.0}
    res = localise_restoration(tiny_pair, PROMPT, said, LocaliseConfig(generation=GenConfig(max_new_tokens=12, show_progress=False), amplify=3))
    assert res.ft_share == 1.0 and res.smallest_kill.view == "amp:3/restore:2" and res.smallest_carry.layers == [2]
    assert "amplified by 3" in res.summary[1] and "restoring layers 2 kills the payload" in res.summary[2]
    assert str(tiny_pair.current) == "ft"
