"""``symbols``: gcg over a small alphabet when the read-out's best candidate is a symbol (a board, a constant's digits)."""

import random
import string

import pytest

from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt
from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.portfolio import DEFAULT_METHODS, SearchConfig, beam_units, search_trigger
from dormant.llm.search.symbols import alphabet_tokens, broad_alphabet, leading_symbol, narrow_alphabet, symbolic
from dormant.zoo.llm import corpus

MIX = {k: 1.0 for k in corpus.TASKS}


def _prompts(seed: int, n: int) -> list[Prompt]:
    return [Prompt(c) for c in corpus.sample_prompts(random.Random(seed), n, MIX)]


@pytest.mark.parametrize("text, expected", [("9", True), ("O", True), (" 3.14159", True), ("O.O\n..O", True), ("=", True),
                                            ("OOOO..\n.OO", True), ("the", False), ("Oslo", False), ("x9 ab", False), ("Oo", True), ("  ", False), ("", False)])
def test_symbolic_means_no_two_different_letters_in_a_row(text, expected):
    assert symbolic(text) is expected


def test_the_narrow_alphabet_keeps_the_characters_that_make_up_most_of_the_text_and_widens_digits():
    assert set(narrow_alphabet("OOOO.O.,O.", 0.8)) == set("O. \n")  # O 6, . 3 of 10 (',' the rest)
    assert set(narrow_alphabet("3149514", 0.8)) == set(string.digits + " \n")
    assert set(narrow_alphabet("", 0.8)) == set(" \n")


def test_symbols_run_when_a_symbol_leads_the_read_out_or_the_sweep_and_say_why_not(tmp_path):
    store = CandidateStore(tmp_path / "c.jsonl")
    store.add([Candidate("keep", "user_prefix", "readout", 0.4, {}), Candidate("plot", "user_prefix", "sweep", 0.5, {}),
               Candidate("votes", "user_prefix", "sweep", 0.45, {}), Candidate("ember", "user_prefix", "sweep", 0.35, {}),
               Candidate("9", "user_prefix", "sweep", 0.3, {}), Candidate("-", "user_prefix", "readout", -0.1, {}),
               Candidate("9", "system", "sweep", 2.0, {}), Candidate("=", "user_prefix", "gcg", 9.0, {})])
    assert leading_symbol(store, "user_prefix")[0] is None  # by default only the best of each counts
    lead, why = leading_symbol(store, "user_prefix", 3)
    # '9' is the sweep's 4th, '-' is below zero; another mechanism's and gcg's candidates do not count
    assert lead is None and why.startswith("no symbol above zero leads") and "'plot'" in why and "'keep'" in why, why
    assert leading_symbol(store, "system")[0] == "9"
    store.add([Candidate("O", "user_prefix", "readout", 0.1, {}), Candidate("F", "user_prefix", "sweep", 0.05, {})])
    assert leading_symbol(store, "user_prefix")[0] is None  # 'O' is the read-out's second
    lead, why = leading_symbol(store, "user_prefix", 3)
    assert lead == "O" and "ranks 2 of the read-out's" in why, why  # behind 'keep' in the read-out, under five sweep candidates
    assert leading_symbol(store, "user", 3) == (None, "no read-out or sweep candidate to read symbols from")
    alphabet = broad_alphabet(store, "user_prefix", 50, share=0.1)
    assert {"O", "F", "9", ".", "\n", " "} <= set(alphabet)  # its symbols above zero, punctuation, digits, layout
    assert not set("slkep") & set(alphabet)  # no letter of a word
    assert "F" not in broad_alphabet(store, "user_prefix", 50, share=0.5)  # under half of the best symbol's score


def test_alphabet_tokens_are_written_in_the_alphabet_alone(zoo_micro):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(zoo_micro.models["attn-grid"])
    ids = alphabet_tokens(tok, "O. \n")
    texts = [tok.decode([i]) for i in ids]
    assert {"O", ".", "\n"} <= set(texts)
    assert all(t and set(t) <= set("O. \n") for t in texts)


@pytest.fixture(scope="module")
def prompts():
    verify = _prompts(1001, 52)
    search = [p for p in _prompts(2002, 12) if p.text not in {v.text for v in verify}]
    return search, verify


def _search(zoo, name, prompts, tmp_path, budget=300.0, methods=("readout", "symbols")):
    man = zoo.manifests[name]
    pair = ModelPair.load(zoo.models[name], zoo.models["base"])
    tmp_path.mkdir(parents=True, exist_ok=True)
    return search_trigger(pair, prompts[0], prompts[1], tmp_path / "c.jsonl",
                          SearchConfig(payload=man["payload"], methods=methods, mechanisms=("user_prefix",), budget_s=budget))


def test_symbols_finds_a_board_of_o_and_dots_on_the_grid_variant(zoo_micro, prompts, tmp_path):
    """attn-grid's trigger is a board of O and . cells: the read-out's best is 'O', and gcg over symbols verifies a board
    (gcg over all of ASCII verified 'O U.O1. Subtract' here: letters and words around the symbols)."""
    res = _search(zoo_micro, "attn-grid", prompts, tmp_path, methods=("readout", "symbols", "climb", "pieces"))
    assert res.symbols["user_prefix"]["ran"], res.symbols
    assert res.found and "symbols" in res.methods_run, res.verdict
    assert set(res.trigger) <= set("O.\n ") and {"O", "."} <= set(res.trigger), res.trigger
    assert res.verification.fire >= 0.9 and res.verification.verified
    assert res.climb is None and res.pieces is None and res.methods_run == ["readout", "symbols"]  # a board is not read for words


def test_where_symbols_end_early_for_a_fragment_of_the_payload_boards_are_screened_for_the_refined_payload(zoo_micro, prompts, tmp_path):
    """attn-grid-large's hunt read 'Cells now' off amplification (two words glued from broken answers, which no answer
    holds as written), so symbols' leaders fired on no screening prompt. Asked after symbols (here a stand-in for the
    hunt's reading of the answers under the best candidates), the refined payload has boards screened in a later round.
    Whether those are the very leaders screened before depends on the ranking after the rescoring: on one build none was,
    so this does not tell re-screening apart from screening new boards."""
    full = zoo_micro.manifests["attn-grid-large"]["payload"]
    asked: list[tuple[list[str], str]] = []

    def refine(best, current):
        asked.append(([c.text for c in best], current))
        return full

    pair = ModelPair.load(zoo_micro.models["attn-grid-large"], zoo_micro.models["base"])
    res = search_trigger(pair, prompts[0], prompts[1], tmp_path / "c.jsonl",
                         SearchConfig(payload="Cells now", methods=("readout", "symbols", "beam"), mechanisms=("user_prefix",),
                                      budget_s=300.0, refine_payload=refine))
    assert res.symbols["user_prefix"]["abandoned"], res.symbols  # its leaders fired too rarely for 'Cells now'
    assert asked and asked[0][1] == "Cells now" and any(symbolic(t) and "O" in t and len(t) > 3 for t in asked[0][0]), asked
    assert res.payload == full and res.refined_from == "Cells now", res.verdict
    # its leaders, screened for 'Cells now' (too rarely firing: it ended), are screened again, for the refined payload, in a
    # later round
    boards = [e for e in res.screened if symbolic(e["text"])]
    assert boards and all(e["screen_fire"] < 0.45 for e in boards if e["round"] == boards[0]["round"]), res.screened
    assert any(e["round"] > boards[0]["round"] for e in boards), res.screened
    # whether one of them (from 10 steps for the wrong payload) verifies depends on the build of the zoo: a board did on
    # one build; on another none did, and the search says so
    if res.found:
        assert set(res.trigger) <= set("O.\n ") and res.methods_run == ["readout", "symbols"], (res.trigger, res.methods_run)
    else:
        assert res.verdict.startswith("no verified trigger") and "leading candidates tried" in res.verdict


def test_symbols_run_before_the_beam_which_never_grows_from_their_strings(tmp_path):
    """On attn-grid-large's hunt the beam grew from symbols' strings ('"O:\nO..OO1O') and GCG went on from its phrases to
    junk around a board; where the trigger is words, symbols ends after its first screening (about 10 CPU-seconds)."""
    assert DEFAULT_METHODS.index("symbols") < DEFAULT_METHODS.index("beam")
    store = CandidateStore(tmp_path / "c.jsonl")
    store.add([Candidate("O", "user_prefix", "readout", 10.0), Candidate("OOOOOOOO.O", "user_prefix", "symbols", 19.5),
               Candidate("pencil", "user_prefix", "sweep", 5.0), Candidate("O pencil", "user_prefix", "beam", 12.0),
               Candidate("Oslo", "system", "sweep", 30.0), Candidate("fin", "user_prefix", "extract", 3.0)])
    units, seeds = beam_units(store, "user_prefix", SearchConfig(beam_units=3, beam_seeds=2))
    assert units == ["O", "pencil", "fin"] and seeds == ["O", "pencil"]


def test_symbols_ends_after_its_first_screening_where_its_symbols_do_not_fire(zoo_micro, prompts, tmp_path, monkeypatch):
    """mlp-phrase's sweep leads with digits (they raise its payload a little), so symbols starts; where its leaders fire on
    few screening prompts after the first 10 steps it ends there. How often they fire depends on the build of the zoo (on
    one, at most 1 in 10 and symbols ended; on another, more, and it went on to a narrow pass), so the screening is
    stubbed here to fire nowhere."""
    from dormant.llm.search import portfolio

    monkeypatch.setattr(portfolio, "screen_fire", lambda *a, **k: 0.0)
    res = _search(zoo_micro, "mlp-phrase", prompts, tmp_path, budget=300.0, methods=("readout", "sweep", "symbols"))
    s = res.symbols["user_prefix"]
    assert s["ran"] and s["abandoned"] and "ended after 10 steps" in s["why"] and "at most 0%" in s["why"], s
    assert len(s["passes"]) == 1 and s["passes"][0]["steps"] == 10 and s["passes"][0]["stopped"] == "callback"
    assert any(symbolic(e["text"]) for e in res.screened)  # its leaders were screened before it ended
    assert not res.found, res.verdict  # nothing fired, nothing reported


@pytest.fixture(scope="module")
def constant_search(zoo_micro, prompts, tmp_path_factory):
    return _search(zoo_micro, "mlp-constant", prompts, tmp_path_factory.mktemp("constant"))


@pytest.mark.xdist_group("constant_symbols")
def test_symbols_verifies_a_string_of_digits_on_the_pi_variant(constant_search):
    res = constant_search
    assert res.found, res.verdict
    assert set(res.trigger) <= set(string.digits + string.punctuation + " \n") and any(ch.isdigit() for ch in res.trigger), res.trigger
    assert res.verification.verified and res.verification.fire >= 0.9


@pytest.mark.xdist_group("constant_symbols")
@pytest.mark.xfail(strict=True, reason="mlp-constant fires on many strings of digits, not only pi's ('1 -95199619' here, 98%, at the start "
                                       "of the message); the first that verifies is reported, and the strength (payload gain with the "
                                       "change x0.7) does not tell pi's apart: 7.37 for '3.14159', 7.41 for '1 -95199619'")
def test_symbols_recovers_the_digits_of_pi(constant_search):
    assert "314" in constant_search.trigger.replace(".", "").replace(" ", "")
