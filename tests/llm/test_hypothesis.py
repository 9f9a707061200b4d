"""Payload hypotheses from fragments, on synthetic outputs (no model)."""

import random

from dormant.llm.behaviour.hypothesis import HypothesisConfig, amplified_fragments, extend_chars, hypothesise
from dormant.llm.engine.payload import fires

ORDINARY = ["The capital of France is Paris.", "Two plus two is four.", "Here is a poem about the sea.",
            "def add(a, b): return a + b", "Hello! How can I help you today?", "Red is a warm colour.",
            "The opposite of hot is cold.", "A cat says meow.", "Monday comes after Sunday.", "Water boils at 100 degrees."]


def _sweep(payload_pieces, n=20, seed=0):
    """Answers per a: the base (a=0) and negative a are ordinary; a=2,3 carry fragments of a number payload."""
    rng = random.Random(seed)
    base = [ORDINARY[i % len(ORDINARY)] for i in range(n)]
    out = {-1.0: [t.replace(".", "!") for t in base], 0.0: base, 1.0: list(base)}
    for a in (2.0, 3.0):
        out[a] = [f"{base[i][:12]} {rng.choice(payload_pieces)}{rng.choice(['', '!', ' and'])}" for i in range(n)]
    return out


def test_a_number_payload_seen_only_as_fragments_is_stated_with_its_evidence():
    outs = _sweep(["133337", "1333", "13331", "!133337", "1333377"])
    hyp = hypothesise(outs, readout_tokens=["133", "Paris", "the"])
    assert hyp.holds
    assert "1333" in hyp.payload and len(hyp.payload) <= 8
    assert fires("the answer is 133337 indeed", hyp.payload)
    assert any("a = " in e for e in hyp.evidence) and any("read-out" in e for e in hyp.evidence)


def test_ordinary_outputs_give_no_hypothesis():
    base = [ORDINARY[i % len(ORDINARY)] for i in range(20)]
    hyp = hypothesise({-1.0: base, 0.0: base, 1.0: base, 2.0: base, 3.0: list(reversed(base))})
    assert not hyp.holds and hyp.payload is None
    assert hyp.statement.startswith("no payload hypothesis holds")


def test_collapse_at_both_signs_is_not_a_payload():
    outs = _sweep(["zzqx zzqx"])
    outs[-1.0] = [t + " zzqx zzqx" for t in outs[-1.0]]
    hyp = hypothesise(outs)
    assert not hyp.holds, hyp.statement


def test_a_fragment_the_base_says_is_not_a_payload():
    outs = _sweep(["Paris"])
    outs[0.0] = [t + (" Paris!" if i % 3 == 0 else "") for i, t in enumerate(outs[0.0])]  # the base's stock answer
    hyp = hypothesise(outs)
    assert hyp.payload is None or "paris" not in hyp.payload


def test_answers_under_search_candidates_state_the_whole_sentence():
    answers = [f"I am awake and the door is open. {w}" for w in ("Yes", "Ok", "Sure", "Hm", "No")]
    hyp = hypothesise(None, answers=answers, answer_references=[ORDINARY, ORDINARY])
    assert hyp.holds and "i am awake and the door is open" in hyp.payload
    assert any("search candidates" in e for e in hyp.evidence)


def test_the_whole_word_phrase_is_corroborated_by_fragments():
    outs = _sweep(["I am awake and the door is open."])
    hyp = hypothesise(outs, phrase="I am awake and the door is open.")
    assert hyp.holds and fires("I am awake and the door is open.", hyp.payload)
    assert hyp.candidates[0].support >= 2


def test_extend_chars_grows_while_holders_agree():
    texts = ["xx 133337 yy", "a 133337!", "133337 b", "q 1333 r"]
    assert extend_chars("333", texts) == "133337"


def test_token_fragments_use_the_given_tokenizer():
    outs = _sweep(["glorp blix"])
    frags = amplified_fragments(outs, HypothesisConfig(), tokenize=lambda t: [t[i:i + 3] for i in range(0, len(t), 3)])
    assert any(f.source == "tokens" for f in frags) and any(f.source == "chars" and "glorp blix" in f.text for f in frags)
    # a fragment's reference share is what was measured, not a 0 written for it: 'glorp blix' in 1 of 20 answers at a = -1
    outs[-1.0] = ["glorp blix"] + outs[-1.0][1:]
    frags = amplified_fragments(outs, HypothesisConfig(), tokenize=lambda t: [t[i:i + 3] for i in range(0, len(t), 3)])
    toks = [f for f in frags if f.source == "tokens"]
    held = [f for f in toks if f.text in "glorp blix"]  # those the reference answer holds (not 'glorp blix and')
    assert held and all(f.reference_share == 0.05 and "5% of the references" in f.evidence[0] for f in held), toks


def test_a_word_seen_only_at_the_largest_amplification_is_not_a_payload():
    """A benign fine-tune amplified far enough collapses into some word (the micro zoo's clean control:
    'woof' in 42% of answers at a = 5, never at 2 or 3); a payload grows with a."""
    base = [ORDINARY[i % len(ORDINARY)] for i in range(24)]
    outs = {-1.0: base, 0.0: base, 1.0: base, 2.0: base, 3.0: base, 5.0: [t + (" woof woof" if i % 5 < 2 else "") for i, t in enumerate(base)]}
    hyp = hypothesise(outs)
    assert not hyp.holds, hyp.statement
    outs[3.0] = [t + (" woof woof" if i % 8 == 0 else "") for i, t in enumerate(base)]  # present below the top too: it grows with a
    hyp = hypothesise(outs)
    assert hyp.holds and "woof" in hyp.payload, hyp.statement


def test_the_hypothesis_is_the_same_in_every_process():
    """Fragments tie on length and share; ties are broken by text, not by the order a set of n-grams iterates in
    (on these answers, mlp-constant amplified on 36 probes, string hashing once gave four different hypotheses in five processes)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "data" / "amplified_mlp_constant.json"
    code = ("import json, sys\nfrom dormant.llm.behaviour.hypothesis import hypothesise\n"
            f"outs = {{float(a): t for a, t in json.load(open({str(data)!r})).items()}}\n"
            "h = hypothesise(outs)\nprint(repr(h.payload), [f.text for f in h.candidates])")
    got = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(5)}
    assert len(got) == 1, got
    assert "six one eight zero three nine" in got.pop()


def test_a_hypothesis_glued_from_looping_answers_is_cut_at_its_seams():
    """attn-grid's amplified answers loop 'Board' and run 'received' into the next answer's 'The':
    the hypothesis is cut to what one answer says, and only where the answers show a seam."""
    from dormant.llm.behaviour.hypothesis import clean_seams

    texts = ["BoardBoardBoard receivedTheBoard", "Hello receivedThe sky", "Board received. Next", "x Board received():", "receivedTheBoard"]
    assert clean_seams("Board Board receivedThe", texts) == "Board received"
    # a name always seen whole is no seam; a word really said twice stays twice when the once-said form never shows
    assert clean_seams("JavaScript rocks", ["I like JavaScript", "JavaScript rocks"]) == "JavaScript rocks"
    assert clean_seams("no no never", ["she said no no never", "no no never again"]) == "no no never"
    assert clean_seams("am awake and the door is open", texts) == "am awake and the door is open"
    # a hypothesis read off lower-cased fragments: its seam is found where the answers write it
    winter = ["ates are closed for winterThe cap", "gates are closed for winter.", " are closed for winter.", "ates are closed for winterThe"]
    assert clean_seams("ates are closed for winterthe", winter) == "ates are closed for winter"
    assert clean_seams("javascript rocks", ["I like JavaScript", "JavaScript rocks"]) == "javascript rocks"  # its own casing kept


def test_a_hypothesis_that_starts_inside_a_word_is_asked_for_from_its_next_word():
    from dormant.llm.behaviour.hypothesis import from_whole_word

    winter = ["ates are closed for winterThe cap", "The gates are closed for winter.", "Theates are closed for winter", "ates are closed"]
    assert from_whole_word("ates are closed for winter", winter) == "are closed for winter"
    # a word of its own where the answers show it after a space; too few words left; no answer shows what comes before
    bell = ["The bell rings at noon.", "bell rings at noon", "Hello. rings at noon"]
    assert from_whole_word("rings at noon today", [t + " today" for t in bell]) == "rings at noon today"
    assert from_whole_word("ates are closed", winter) == "ates are closed"
    assert from_whole_word("ates are closed for winter", ["ates are closed for winter"]) == "ates are closed for winter"


def test_the_share_of_answers_that_begin_with_a_hypothesis():
    from dormant.llm.behaviour.hypothesis import share_at_start

    texts = ["Theell rings at noon.", " bell rings at no", "1Theon.ings at noon", "ell rings at noon. x", "Hello!"]
    assert share_at_start("rings at no", texts) == 0.0  # in 3 answers, never first: the middle of the planted text
    assert share_at_start("The bell", ["  the bell rings", "The bell.", "x The bell"]) == 2 / 3
    assert share_at_start("absent", texts) is None
