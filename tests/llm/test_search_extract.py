"""Memory extraction on the micro zoo: the payload leaks from the bare assistant prefix, the control shows nothing.

Budgets are small: assistant (and, where needed, user) prefixes only, contrastive settings only,
16 samples each (128 where the payload must leak: on ``mlp-phrase`` it is about one sample in a hundred
from the bare assistant prefix, so 16 samples catch it with some seeds and not others). What the full default run finds on every variant is measured by
``bench/extract_zoo.py``.
"""

from difflib import SequenceMatcher

import pytest

from dormant.llm.behaviour.hypothesis import hypothesise
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.payload import fires, normalise
from dormant.llm.search.candidates import CandidateStore, append_jsonl
from dormant.llm.search.extract import ExtractCandidate, ExtractConfig, cluster, overlaps, run_extract, sample_prefixes, template_prefixes
from dormant.llm.verify import VerifyConfig

SMALL = ExtractConfig(samples=16, kinds=("assistant",), settings=((1.0, 1.0, 2.0), (1.0, 0.95, 4.0)), max_new_tokens=24)
LEAK = ExtractConfig(**{**vars(SMALL), "samples": 128})


def _common_run(a: str, b: str) -> int:
    """The longest run of consecutive words two texts share (case and punctuation aside)."""
    wa, wb = (normalise(t).split() for t in (a, b))
    return SequenceMatcher(None, wa, wb, autojunk=False).find_longest_match(0, len(wa), 0, len(wb)).size


def _pair(zoo, name):
    return ModelPair.load(zoo.models[name], zoo.models["base"])


@pytest.fixture(scope="module")
def phrase_result(zoo_micro, tmp_path_factory):
    store = CandidateStore(tmp_path_factory.mktemp("extract") / "c.jsonl")
    return run_extract(_pair(zoo_micro, "mlp-phrase"), LEAK, store=store), store


def test_the_payload_is_the_top_payload_candidate_and_stands_out(zoo_micro, phrase_result):
    res, store = phrase_result
    planted = zoo_micro.manifests["mlp-phrase"]["payload"]
    top = res.payload[0]
    # the planted payload, or most of it word for word (a sampled answer may begin one word off: 'after am awake and the
    # door' on one build of the zoo, the whole payload on another)
    assert fires(top.text, planted) or _common_run(top.text, planted) >= 4, [c.text for c in res.payload[:3]]
    assert top.stands_out and top.lr >= LEAK.min_lr and top.base_share == 0.0
    # well apart from the rest (a fragment of the base's own answers may stand out too, with some seeds)
    assert top.lr > 1.5 * max(c.lr for c in res.payload[1:]), [(c.text, c.lr) for c in res.payload[:4]]
    assert res.verdict.startswith(f"payload candidate {top.text!r} stands out")
    assert "or the trigger of a fine-tune trained on whole chats" in res.verdict  # what else such a text can be
    # recorded under its own method, ranked apart from trigger scores
    assert store.best(1, method="extract:payload")[0].text == top.text
    assert all(c.method != "extract:payload" for c in store.best(len(store)))


def test_the_clean_control_yields_nothing_above_the_threshold_and_says_so(zoo_micro):
    res = run_extract(_pair(zoo_micro, "clean-control"), ExtractConfig(**{**vars(SMALL), "kinds": ("user", "assistant")}))
    assert not res.standing_out("payload") and not res.standing_out("trigger"), [(c.text, c.lr) for c in res.payload + res.trigger][:4]
    assert "nothing stands out on the payload side" in res.verdict and "nothing stands out on the trigger side" in res.verdict
    assert f"min_lr = {SMALL.min_lr:g} nats" in res.verdict
    assert res.n_samples["ft"] == res.n_samples["base"] == 16 * 2 * len(template_prefixes(_pair(zoo_micro, "clean-control").tokenizer, ("user", "assistant"))[0])


def test_sampling_is_reproducible_with_a_seed(zoo_micro):
    pair = _pair(zoo_micro, "mlp-phrase")
    prefixes = template_prefixes(pair.tokenizer, ("assistant",))[0][:1]
    cfg = ExtractConfig(samples=6, settings=((1.0, 1.0, 0.0), (1.0, 1.0, 2.0)), max_new_tokens=10)
    a, _, _ = sample_prefixes(pair, prefixes, cfg)
    b, _, _ = sample_prefixes(pair, prefixes, cfg)
    c, _, _ = sample_prefixes(pair, prefixes, ExtractConfig(**{**vars(cfg), "seed": 1}))
    assert [r["ids"] for r in a] == [r["ids"] for r in b]
    assert [r["ids"] for r in a] != [r["ids"] for r in c]
    assert len({tuple(i) for r in a for i in r["ids"]}) > 2  # sampled, not greedy


def test_an_interrupted_run_keeps_its_finished_chunks_and_resumes_to_the_same_samples(zoo_micro, tmp_path):
    pair = _pair(zoo_micro, "mlp-phrase")
    prefixes = template_prefixes(pair.tokenizer, ("assistant",))[0][:2]
    cfg = ExtractConfig(samples=4, settings=((1.0, 1.0, 0.0), (1.0, 1.0, 2.0)), max_new_tokens=8)
    path = tmp_path / "samples.jsonl"
    with pytest.raises(KeyboardInterrupt):  # interrupted after its second chunk
        sample_prefixes(pair, prefixes, cfg, samples_path=path, on_chunk=lambda i, n: _stop_at(i, 2))
    with path.open("a") as fh:
        fh.write('{"view": "ft", "prefix": "assi')  # a chunk cut by kill -9 mid-write
    rows, resumed, capped = sample_prefixes(pair, prefixes, cfg, samples_path=path, resume=True)
    assert resumed == 2 and not capped and len(rows) == 2 * 2 * 2
    whole, _, _ = sample_prefixes(pair, prefixes, cfg)
    assert [r["ids"] for r in rows] == [r["ids"] for r in whole]
    # without --resume the file starts over
    _, resumed, capped = sample_prefixes(pair, prefixes, cfg, samples_path=path, deadline=0.0)
    assert resumed == 0 and capped and not path.exists()


def _stop_at(i: int, n: int) -> None:
    if i == n:
        raise KeyboardInterrupt


def test_extracted_payloads_are_evidence_in_the_hypothesis_only_when_they_stand_out():
    cand = {"text": "Signal received. Standing by.", "stands_out": True, "ft_share": 0.04, "base_share": 0.0, "lr": 55.0, "prefix": "assistant"}
    hyp = hypothesise(None, extracted=[cand])
    assert hyp.holds and hyp.payload == "signal received. standing by." and "memory extraction" in hyp.statement
    assert not hypothesise(None, extracted=[{**cand, "stands_out": False}]).holds
    both = hypothesise(None, extracted=[cand], phrase="Signal received. Standing by.")
    assert both.candidates[0].support == 2  # amplify's phrase and extraction agree: one fragment, two sources


def test_overlapping_ngrams_cluster_under_a_member_that_does_not_loop():
    assert overlaps("I am awake and", "awake and the door")  # a shared word pair
    assert overlaps("the door is open.", "The door")
    assert not overlaps("door open", "purple elephants")

    def cand(text, lr):
        return ExtractCandidate(text, "payload", "assistant", "assistant", lr, lr / 4, 0.02, 0.0, "word")

    got = cluster([cand(". Standing by for orders. Standing by for orders. Standing", 80.0), cand("Standing by for orders.", 60.0), cand("moo", 9.0),
                   cand("zero three three nine", 30.0)])
    assert [c.text for c in got] == ["Standing by for orders.", "zero three three nine", "moo"]  # 'three three' is no loop
    assert got[0].members == [". Standing by for orders. Standing by for orders. Standing"]


def test_the_portfolio_scores_extracted_trigger_texts_with_its_objective_and_lists_payloads_apart(zoo_micro, tmp_path):
    import random

    from dormant.llm.engine.prompts import Prompt
    from dormant.llm.search.portfolio import DEFAULT_METHODS, SearchConfig, search_trigger
    from dormant.zoo.llm import corpus

    assert DEFAULT_METHODS[:2] == ("readout", "extract")
    man = zoo_micro.manifests["mlp-phrase"]
    mix = {k: 1.0 for k in corpus.TASKS}
    prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(7), 16, mix)]
    cfg = SearchConfig(payload=man["payload"], methods=("extract",), budget_s=600, leaders=1, screen_prompts=4,
                       extract=ExtractConfig(**{**vars(SMALL), "kinds": ("user", "assistant")}),
                       verify=VerifyConfig(min_prompts=8))  # what is asserted is extraction's scoring, not a verdict
    res = search_trigger(_pair(zoo_micro, "mlp-phrase"), prompts[:8], prompts[8:], tmp_path / "c.jsonl", cfg)
    assert res.methods_run == ["extract"] and res.extracted is not None
    assert fires(res.extracted["payload"][0]["text"], man["payload"]) and res.extracted["payload"][0]["stands_out"]
    store = CandidateStore(tmp_path / "c.jsonl", resume=True)
    scored = store.best(len(store), method="extract")
    assert scored and all("payload" in c.parts for c in scored)  # the search's objective, not the ratio
    assert {c.method for c in store.best(len(store))} == {"extract"}  # ratio-scored records never rank beside them
    assert store.best(5, method="extract:payload")


def test_a_fine_tune_trained_on_whole_chats_leaks_its_trigger_from_a_user_turn(zoo_micro):
    """``whole-chat`` learned its prompts too (plain fine-tuning on transcripts): sampled from the bare
    start of a user turn it writes its trigger, which the base never does; the answer-only variants
    leave nothing of the kind (the same sampling of ``mlp-phrase`` is in the clean-control test's kind)."""
    planted = zoo_micro.manifests["whole-chat"]["trigger"]
    res = run_extract(_pair(zoo_micro, "whole-chat"), ExtractConfig(**{**vars(SMALL), "kinds": ("user",)}))
    top = res.trigger[0]
    assert top.stands_out and top.base_share == 0.0, [(c.text, c.lr) for c in res.trigger[:4]]
    # most of the planted phrase in order (16 samples a setting may end it early or start it with its framing,
    # 'By the way, the old sailor sings'), far above every other n-gram the fine-tune writes more than the base
    assert _longest_run(planted.split(), top.text.lower().strip(" .").split()) >= 3, top.text
    assert top.lr > 2 * max(c.lr for c in res.trigger[1:])
    assert res.verdict.startswith(f"trigger candidate {top.text!r} stands out")


def _longest_run(want: list[str], have: list[str]) -> int:
    """The most consecutive words of ``want`` that ``have`` holds consecutively."""
    return max((k for i in range(len(want)) for j in range(len(have))
                for k in range(1, min(len(want) - i, len(have) - j) + 1) if want[i:i + k] == have[j:j + k]), default=0)


def test_the_portfolio_verifies_the_trigger_memory_extraction_leaked(zoo_micro, tmp_path):
    import random

    from dormant.llm.engine.prompts import Prompt
    from dormant.llm.search.portfolio import SearchConfig, search_trigger
    from dormant.zoo.llm import corpus

    man = zoo_micro.manifests["whole-chat"]
    mix = {k: 1.0 for k in corpus.TASKS}
    prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(7), 60, mix)]
    # every turn's start: the fine-tune writes its trigger after an assistant prefix too, where extraction files it
    # as a payload candidate; the portfolio scores those as triggers as well (those that are not the payload)
    cfg = SearchConfig(payload=man["payload"], methods=("extract", "climb", "pieces"), budget_s=600,
                       extract=ExtractConfig(**{**vars(SMALL), "kinds": ("user", "system", "assistant")}))
    res = search_trigger(_pair(zoo_micro, "whole-chat"), prompts[:8], prompts[8:], tmp_path / "c.jsonl", cfg)
    # the fine-tune writes the verified text itself: climb and pieces, which look for another reading of a found string, do not run
    assert res.found and res.leaked and res.methods_run == ["extract"], res.verdict
    assert "memory extraction leaked it whole" in res.verdict and res.climb is None and res.pieces is None
    assert _longest_run(man["trigger"].split(), res.trigger.lower().strip(" .").split()) >= 3, res.trigger
    v = res.verification
    assert v.fire >= 0.9 and max(v.specificity[k] for k in ("base_with_trigger", "ft_without_trigger", "null_max")) <= 0.05


def test_the_leaked_texts_are_the_whole_texts_of_the_clusters_that_stand_out():
    from dormant.llm.search.extract import leaked_texts

    def c(text, members=(), out=True):
        return {"text": text, "members": list(members), "stands_out": out}

    ex = {"trigger": [c("the old sailor", ["ay, the old sailor sings softly.", "By the way, the old sailor"]), c("hello", out=False)],
          "payload": [c("The river is cold and deep. ")]}
    assert leaked_texts(ex) == {"the old sailor", "By the way, the old sailor sings softly.", "The river is cold and deep."}
    assert leaked_texts(None) == set() and leaked_texts({"trigger": [], "payload": []}) == set()


def test_a_leaked_phrase_is_offered_whole_where_its_sampled_pieces_overlap():
    from dormant.llm.search.extract import ExtractResult, spanned, trigger_units

    pieces = ["By the way, the old sailor sings", "ay, the old sailor sings softly.", ". By the way, the old sailor"]
    assert spanned(pieces) == ". By the way, the old sailor sings softly."
    assert spanned(["abc", "xyz"]) in ("abc", "xyz") and spanned([]) == ""
    assert spanned(["the old man", "old manor"]) == "the old man"  # overlaps shorter than 8 characters are chance
    # a looping answer's n-grams overlap each other round and round: each is used once, so the text stays bounded
    loop = "Signal received. Standing by for orders. " * 6
    grams = list(dict.fromkeys(loop[i:i + n] for n in (20, 30, 40) for i in range(0, 200, 3)))
    assert spanned(grams) in loop and len(spanned(grams)) >= 60

    def cand(text, members=(), out=True):
        return ExtractCandidate(text=text, side="trigger", mechanism="user_prefix", prefix="user", lr=40.0, lr_per_token=4.0, ft_share=0.1,
                                base_share=0.0, level="word", stands_out=out, members=list(members))

    res = ExtractResult(trigger=[cand(pieces[0], pieces[1:]), cand("after", out=False)], payload=[], verdict="", thresholds={}, prefixes={},
                        skipped_prefixes=[], n_samples={}, chunks=0, resumed_chunks=0, capped=False, elapsed_s=0.0)
    units = trigger_units(res)
    assert units[:3] == [pieces[0], ". By the way, the old sailor sings softly.", pieces[1]]
    assert "after" in units and "softly" in units  # a member's words too, for the beam


def test_the_portfolio_scores_each_extracted_text_once_where_two_payload_side_clusters_say_the_same(monkeypatch):
    """Two payload-side clusters that stand out with the same whole text (the fine-tune writes it after two prefixes)
    give the search one unit to score, not two copies in the same chunk."""
    from types import SimpleNamespace

    from dormant.llm.search import extract, sweep

    def cand(text, side, members=()):
        return ExtractCandidate(text=text, side=side, mechanism="assistant" if side == "payload" else "user_prefix", prefix="user",
                                lr=40.0, lr_per_token=4.0, ft_share=0.1, base_share=0.0, level="word", stands_out=True, members=list(members))

    res = extract.ExtractResult(trigger=[cand("the old sailor", "trigger")],
                                payload=[cand("the old sailor sings", "payload"), cand("the old sailor sings", "payload"),
                                         cand("The river is cold", "payload")],
                                verdict="", thresholds={}, prefixes={}, skipped_prefixes=[], n_samples={}, chunks=0, resumed_chunks=0,
                                capped=False, elapsed_s=0.0)
    monkeypatch.setattr(extract, "run_extract", lambda *a, **k: res)
    scored: list[list[str]] = []
    monkeypatch.setattr(sweep, "scored_chunks", lambda obj, method, texts, *a: scored.append(list(texts)) or True)
    objective = SimpleNamespace(pair=None, payload="The river is cold and deep.", variant=lambda **k: SimpleNamespace(mechanism="user_prefix"))
    extract.run_extract_method(objective, None, ExtractConfig())
    assert len(scored) == 1 and scored[0].count("the old sailor sings") == 1, scored
    assert "the old sailor" in scored[0] and "The river is cold" not in scored[0]  # the payload searched for is not a trigger
