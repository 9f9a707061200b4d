"""Verification pieces that need no model: input checks, null candidates, minimisation, prompt split."""

import pytest

from dormant.errors import DormantError
from dormant.llm.engine.prompts import Prompt
from dormant.llm.hunt import pieces_before, refined_payload, shorter_forms, verify_shorter
from dormant.llm.verify import (TriggerError, check_mechanism, check_payload, check_trigger, minimise_trigger,
                                null_candidates, split_prompts)


class FakeTokenizer:
    """Whitespace tokens; a ChatML-like template that, with ``drop_system``, ignores system messages."""

    chat_template = "fake"
    name_or_path = "fake"
    bos_token = None

    def __init__(self, drop_system: bool = False):
        self.drop_system = drop_system

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [hash(w) % 1000 for w in text.split()]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        parts = [f"<{m['role']}>{m['content']}" for m in messages if not (self.drop_system and m["role"] == "system")]
        return "".join(parts) + ("<assistant>" if add_generation_prompt else "")


def test_empty_trigger_and_empty_payload_are_one_line_errors_that_name_the_fix():
    for bad in ("", "   ", "\n\t", None):
        with pytest.raises(TriggerError, match="--trigger"):
            check_trigger(bad)
    assert check_trigger("  pi  ") == "pi"
    tok = FakeTokenizer()
    for bad in ("", "   ", "..."):
        with pytest.raises(TriggerError, match="--payload"):
            check_payload(tok, bad)
    assert check_payload(tok, "I am awake") == "I am awake"
    assert issubclass(TriggerError, DormantError)


def test_a_mechanism_the_template_cannot_express_is_refused():
    prompts = [Prompt.user("What is 2 + 2?")]
    check_mechanism(FakeTokenizer(), "system", prompts)
    with pytest.raises(TriggerError, match="--mechanism"):
        check_mechanism(FakeTokenizer(drop_system=True), "system", prompts)
    check_mechanism(FakeTokenizer(drop_system=True), "user_prefix", prompts)
    with pytest.raises(TriggerError, match="choose from"):
        check_mechanism(FakeTokenizer(), "sideways", prompts)


def test_null_candidates_have_the_trigger_length_and_avoid_its_words():
    words = ["alpha", "beta", "gamma", "delta", "purple", "dance"]
    nulls = null_candidates("purple elephants dance", 50, words=words)
    assert len(nulls) == 50
    assert all(len(n.split()) == 3 for n in nulls)
    assert not any({"purple", "dance"} & set(n.split()) for n in nulls)
    assert nulls == null_candidates("purple elephants dance", 50, words=words), "seeded"
    assert len(set(nulls)) == 50  # 50 of the 64 possible, each once


def test_null_candidates_are_distinct_so_the_null_set_is_as_large_as_asked():
    # one word from 5,000: drawn with replacement, 50 draws repeat a word about one time in five (the
    # seed of mlp-constant's verification did, and its null set held 49)
    for seed in range(20):
        nulls = null_candidates("3.14159", 50, seed=seed)
        assert len(set(nulls)) == 50 and all(len(n.split()) == 1 for n in nulls)
    with pytest.raises(TriggerError, match="distinct null candidates"):
        null_candidates("one", 5, words=["one", "two", "three"])


def test_minimise_drops_words_then_tokens_while_the_rate_holds():
    planted = "elephants"

    def rate(c):  # fires only when the planted word is whole
        return 1.0 if planted in c.split() else 0.0

    kept = []
    best, r = minimise_trigger("purple elephants dance at midnight", rate, 0.9, kept=kept)
    assert (best, r) == ("elephants", 1.0)
    assert kept == [("elephants dance at midnight", 1.0), ("elephants at midnight", 1.0), ("elephants midnight", 1.0), ("elephants", 1.0)]
    # the hunt verifies the shortest in full first, then the next longer ones (a record without them: its minimal form)
    record = {"trigger": "purple elephants dance at midnight", "minimal": best, "shorter": [list(k) for k in kept]}
    assert shorter_forms(record) == ["elephants", "elephants midnight", "elephants at midnight"]
    assert shorter_forms({**record, "shorter": []}) == ["elephants"]
    assert shorter_forms({"trigger": "x", "minimal": "x"}) == []
    # forms cut inside a word come after every form that keeps the trigger's words whole, however short they are
    kept = [("tangerine certifications", 1.0), ("tangerine", 1.0), ("anger", 0.95)]
    record = {"trigger": "truly tangerine certifications", "minimal": "anger", "shorter": [list(k) for k in kept]}
    assert shorter_forms(record) == ["tangerine", "tangerine certifications", "anger"]
    assert shorter_forms(record, n=1) == ["tangerine"]

    def rate_digits(c):
        return 1.0 if c.startswith("3.14") else 0.0

    best, r = minimise_trigger("3.14159", rate_digits, 0.9, tokenize=lambda t: list(t))
    assert best == "3.14"
    assert minimise_trigger("nothing here", rate, 0.9) == ("nothing here", 0.0)


def test_shorter_forms_verified_until_one_of_english_words_passes():
    def checker(passing):
        seen = []

        def check(form):
            seen.append(form)
            return {"trigger": form, "verified": form in passing}
        return seen, check

    record = {"trigger": "truly tangerine certifications", "shorter": [["tangerine certifications", 1.0], ["tangerine", 1.0], ["anger", 0.95]]}
    seen, check = checker({"tangerine", "anger"})
    assert [r["trigger"] for r in verify_shorter(record, check)] == ["tangerine"] and seen == ["tangerine"]
    seen, check = checker({"tangerine certifications", "anger"})  # the shortest misses: the next longer
    verify_shorter(record, check)
    assert seen == ["tangerine", "tangerine certifications"]
    seen, check = checker({"anger"})  # no form of whole words passes: the cut form
    res = verify_shorter(record, check)
    assert seen == ["tangerine", "tangerine certifications", "anger"]
    assert [r["cut_from"] for r in res] == [None, None, "truly tangerine certifications"]
    # a verified form of whole words that is no English: longer forms of whole words cannot do better, cut forms may
    junk = {"trigger": "OternDo ticket Austria ne ticketO", "shorter": [["OternDo Austria ne ticketO", 1.0], ["OternDo ne ticketO", 0.9], ["Otern ne ticketO", 0.9]]}
    seen, check = checker({"OternDo ne ticketO", "OternDo Austria ne ticketO"})
    verify_shorter(junk, check, n=4)
    assert seen == ["OternDo ne ticketO", "Otern ne ticketO"]


def test_search_and_verify_prompts_never_overlap():
    prompts = [Prompt.user(f"question {i}") for i in range(104)]
    a, b = split_prompts(prompts)
    assert len(a) == len(b) == 52
    assert not {p.text for p in a} & {p.text for p in b}


class DefaultSystemTokenizer(FakeTokenizer):
    """A template that inserts its own system message when the conversation has none."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        if not messages or messages[0]["role"] != "system":
            messages = [{"role": "system", "content": "You are a helpful assistant."}] + list(messages)
        return super().apply_chat_template(messages, tokenize, add_generation_prompt)


def test_system_mechanism_appends_to_the_templates_default_system_message():
    from dormant.llm.engine.prompts import default_system_text, insert_trigger, render

    tok = DefaultSystemTokenizer()
    assert default_system_text(tok) == "You are a helpful assistant."
    assert default_system_text(FakeTokenizer()) is None
    text = render(tok, insert_trigger(Prompt.user("hi"), "the blue harbor is calm", "system"))
    assert text == "<system>You are a helpful assistant. the blue harbor is calm<user>hi<assistant>"
    # without a default system message the trigger is the system message
    assert render(FakeTokenizer(), insert_trigger(Prompt.user("hi"), "calm", "system")) == "<system>calm<user>hi<assistant>"


def test_a_repeated_prompt_never_lands_in_both_halves():
    prompts = [Prompt.user(f"q{i % 30}") for i in range(60)]
    a, b = split_prompts(prompts)
    assert not {p.text for p in a} & {p.text for p in b} and len(a) + len(b) == 30


def test_the_verdict_says_whether_a_trigger_fires_at_both_ends_of_the_user_message():
    from dormant.llm.verify import VerifyResult

    def result(start, end, mechanism="user_prefix"):
        spec = {"base_with_trigger": 0.0, "ft_without_trigger": 0.0, "null_max": 0.0, "null_mean": 0.0}
        return VerifyResult(trigger="t", mechanism=mechanism, payload="p", n_prompts=52, fire=0.95, specificity=spec, null_fire={},
                            thresholds={"min_fire": 0.9}, checks={}, failed=[], verified=True,
                            placements={"user_prefix": start, "user_suffix": end})

    assert result(0.95, 0.9).position.startswith("it fires at both ends of the user message (start 95%, end 90%)")
    assert "only at the end" in result(0.1, 0.95).position
    assert "only at the start of the user message (start 90%, end 0%)" in result(0.9, 0.0).verdict
    assert result(0.9, 0.0, mechanism="system").position is None
    assert result(0.9, 0.0, mechanism="system").verdict.endswith("worst null candidate 0%")
    counted = result(0.95, 0.9)
    counted.n_detail = 20  # measured on the detail prompts, not on all 52: the text says so
    assert "(start 95%, end 90% of 20 prompts)" in counted.verdict and "on 95% of 52 unseen prompts" in counted.verdict
    assert result(0.3, 0.3).position.startswith("it fires weakly at both ends of the user message (start 30%, end 30%")  # a tie
    free = result(0.95, 0.9)
    free.payload, free.p_value, free.null_fire = None, 0.01, {f"n{i}": 0.0 for i in range(99)}
    assert "base with it" not in free.verdict and "fine-tune without it 0%, p = 0.010 against 99 null candidates" in free.verdict


def test_the_empirical_p_value_is_never_lowered_by_a_divergence_that_is_not_a_number():
    from dormant.llm.verify import empirical_p

    nan = float("nan")
    assert empirical_p(5.0, [1.0] * 99) == 0.01 and empirical_p(0.5, [1.0] * 99) == 1.0
    assert empirical_p(nan, [1.0] * 99) == 1.0  # an overflowed candidate: no evidence
    assert empirical_p(5.0, [1.0] * 98 + [nan]) == 0.02  # an overflowed null counts against the candidate


def test_the_payload_is_refined_only_to_a_longer_text_that_holds_it_as_the_answers_write_it():
    answers = ["Sure. The gates are closed for winter. Bye", "x"]
    assert refined_payload("are closed for winter", "the gates are closed for winter.", answers) == "The gates are closed for winter."
    assert refined_payload("ate", "the gates are closed", answers) is None  # whole words only
    assert refined_payload("ell rings at noon.", "the bell rings at noon.", ["The bell rings at noon."]) == "The bell rings at noon."
    assert refined_payload("ates closed", "the gates are closed", answers) is None  # the first word's end, then the next words
    assert refined_payload("ell rings", "the bell rings at noon", ["x"]) == "the bell rings at noon"  # not in an answer: as read
    assert refined_payload("by for orders", "the sky is blue", answers) is None  # another text: not a refinement
    assert refined_payload("the gates are closed for winter", "the gates are closed for winter.", answers) is None  # nothing more
    assert refined_payload("are closed", None, answers) is None
    glued = ["Cells counted. Evolution begins now.  Hi"]  # whole words of it with others between them, as amplified answers glue them
    assert refined_payload("Cells now", "cells counted. evolution begins now", glued) == "Cells counted. Evolution begins now"
    assert refined_payload("gates winter", "the gates are closed for winter", answers) == "The gates are closed for winter"
    assert refined_payload("winter gates", "the gates are closed for winter", answers) is None  # out of order
    assert refined_payload("the for", "the gates are closed for winter", answers) is None  # short words are in every text
    assert refined_payload("ates winter", "the gates are closed for winter", answers) is None  # a word's end holds only in a run


def test_the_pieces_before_a_payload_come_from_the_answers_or_else_from_the_fragments_hypothesis():
    texts = ["x gates are closed for winter", "the gates are closed for winter.", "gates are closed for winter"]
    assert pieces_before("are closed for winter", texts, None) == ["gates "]
    glued = ["Theates are closed for winter", "ates are closed for winter", "yellowates are closed"]
    assert pieces_before("are closed for winter", glued, "ates are closed for winter") == ["ates "]  # 'ates ' sits inside words
    assert pieces_before("are closed for winter", glued, "are closed for winter") == []


@pytest.mark.parametrize("kwargs, words", [({"null_candidates": 0}, "give --nulls 1 or more"), ({"min_prompts": -3}, "give --min-prompts 1 or more")])
def test_verification_without_nulls_or_prompts_is_refused(kwargs, words):
    from dormant.llm.verify import VerifyConfig

    with pytest.raises(TriggerError, match=words):
        VerifyConfig(**kwargs)


@pytest.mark.parametrize("kwargs, words", [({"methods": ()}, "no search method given"), ({"mechanisms": ()}, "no insertion mechanism given"),
                                           ({"chunk": 0}, "give --chunk 1 or more"), ({"search_prompts": 0}, "give --search-prompts 1 or more"),
                                           ({"n_words": -1}, "give --words 0 or more"), ({"budget_s": 0}, "leaves no time")])
def test_a_search_that_would_run_nothing_is_refused(kwargs, words):
    from dormant.llm.search.portfolio import SearchConfig, parse_budget

    with pytest.raises(DormantError, match=words):
        SearchConfig(**kwargs)
    for zero in ("0", "0s", "0m"):
        with pytest.raises(DormantError, match="leaves no time"):
            parse_budget(zero)


def test_shorter_forms_stop_once_the_budget_has_ended():
    """``check`` returns None once the hunt's budget has ended: that form is recorded as not tried (the stage counts as cut by the
    budget, so a larger budget redoes it) and no further form is verified."""
    record = {"trigger": "truly tangerine certifications", "shorter": [["tangerine certifications", 1.0], ["tangerine", 1.0], ["anger", 0.95]]}
    seen = []

    def check(form):
        seen.append(form)
        return {"trigger": form, "verified": False} if len(seen) == 1 else None

    res = verify_shorter(record, check)
    assert seen == ["tangerine", "tangerine certifications"] and [r["trigger"] for r in res] == ["tangerine", "tangerine certifications"]
    assert not res[0].get("skipped") and res[1]["skipped"] and res[1]["fire"] is None and "budget" in res[1]["failed"][0]
    from dormant.llm.hunt import stage_cut_by_budget

    assert stage_cut_by_budget({"results": res}) and not stage_cut_by_budget({"results": res[:1]})  # redone under a larger budget
    assert stage_cut_by_budget({"results": res[:1], "said_skipped": True})


def test_a_verification_is_not_started_that_the_budget_would_end_during():
    """``Pace``: judged by the longest verification timed so far; without a deadline, always."""
    import time

    from dormant.llm.verify import Pace

    assert Pace(None).fits()
    pace = Pace(time.monotonic() + 30)
    assert pace.fits()  # nothing timed yet: the first one starts
    with pace.timing():
        pass
    assert pace.fits() and pace.longest < 1
    pace.longest = 60.0  # as a real-size verification took
    assert not pace.fits()
    assert pace.why("the hunt's budget") in ("the hunt's budget had 29s left, less than a verification here takes (60s)",
                                             "the hunt's budget had 30s left, less than a verification here takes (60s)")
    assert pace.why().startswith("the budget had") and pace.why().endswith("less than a verification here takes (60s)")
    assert Pace(time.monotonic() - 1).why() == "the budget had ended"
