"""GCG and soft-prompt inversion on the micro zoo: tiny budgets, behaviour not speed."""

import math
import random
import subprocess
import sys

import pytest

from dormant.errors import DormantError
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt
from dormant.llm.search.candidates import CandidateStore
from dormant.llm.search.gcg import GCGConfig, run_gcg, token_gradient
from dormant.llm.search.objectives import Objective
from dormant.llm.search.slots import (GradientSearchError, allowed_tokens, embed_value, hard_values, in_context, initial_ids, make_slot,
                                      round_trip)
from dormant.llm.search.soft import SoftConfig, run_soft
from dormant.zoo.llm import corpus

SMALL = dict(search_width=48, topk=24)


@pytest.fixture(scope="module")
def pair(zoo_micro):
    return ModelPair.load(zoo_micro.models["mlp-constant"], zoo_micro.models["base"])


@pytest.fixture(scope="module")
def prompts():
    return [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 3, {k: 1.0 for k in corpus.TASKS})]


@pytest.fixture
def objective(zoo_micro, pair, prompts):
    return Objective(pair, prompts, "user_prefix", zoo_micro.manifests["mlp-constant"]["payload"])


def test_gcg_raises_the_value_over_its_init_and_records_rescored_candidates(objective, tmp_path):
    store = CandidateStore(tmp_path / "c.jsonl")
    res = run_gcg(objective, store, GCGConfig(steps=4, **SMALL))
    assert res.best_value > res.init_value + 1.0, (res.init_value, res.values)
    assert len(res.values) == 4 and res.evaluated > 0 and res.stopped == "steps"
    assert res.recorded and all(c.method == "gcg" for c in store.best(100))
    for c in res.recorded:  # re-scored by the full objective: the fine-tune term is the value GCG followed
        assert c.parts["payload_ft_gain"] == pytest.approx(c.parts["ft_value"], abs=1e-3)
        assert c.score == pytest.approx(c.parts["payload"])
    slot = make_slot(objective)
    assert in_context(slot, res.best_ids, res.best_text)


def test_gcg_under_the_user_mechanism_follows_the_suffix_half_and_records_scores_of_both(zoo_micro, pair, tmp_path):
    """Token ids cannot stand for one text at both ends of a message (a word's first token differs after a space),
    so the gradient follows the prompts where ``user`` puts the trigger at the end; what is recorded is scored on all."""
    from dormant.llm.search.objectives import placement_halves

    prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 8, {k: 1.0 for k in corpus.TASKS})]
    halves = placement_halves(prompts)
    assert halves["user_prefix"] and halves["user_suffix"]
    obj = Objective(pair, prompts, "user", zoo_micro.manifests["mlp-constant"]["payload"])
    slot = make_slot(obj)
    assert slot.lead == " " and slot.objective.mechanism == "user_suffix" and slot.scorer is obj
    assert [p.text for p in slot.objective.prompts] == [p.text for p in halves["user_suffix"]]
    store = CandidateStore(tmp_path / "c.jsonl")
    res = run_gcg(obj, store, GCGConfig(steps=2, **SMALL))
    assert res.recorded and all(c.mechanism == "user" for c in res.recorded)
    c = res.recorded[-1]
    assert c.score == pytest.approx(obj.score([c.text])[0]["score"], abs=1e-3)
    assert c.score != pytest.approx(c.parts["ft_value"], abs=1e-3)  # the suffix half's value is not the recorded score


@pytest.mark.parametrize("weights", [{"payload": 1.0}, {"payload": 1.0, "activation": 0.5}])
def test_the_gradient_path_values_what_the_token_path_values(objective, pair, weights):
    objective = objective.variant(weights=weights)
    slot = make_slot(objective)
    ids = initial_ids(slot, "3.14159")
    # the gradient first, on a fresh objective: its baselines switch views, never under a live graph
    grad = token_gradient(slot, ids)
    assert grad.shape == (len(ids), pair.model.get_input_embeddings().weight.shape[0]) and grad.abs().sum() > 0
    soft = float(embed_value(slot, pair.model.get_input_embeddings().weight[ids]).detach())
    hard = hard_values(slot, [ids])[0]
    assert hard == pytest.approx(soft, abs=1e-3) and hard > 2


def test_round_trip_rejects_ids_that_reencode_differently(zoo_micro, pair, prompts):
    tok = pair.tokenizer
    prefix = make_slot(Objective(pair, prompts, "user_prefix", "one point"))
    word = next(w for w in ("What", "Please", "Write", "Tell") if len(tok(w, add_special_tokens=False)["input_ids"]) == 1)
    split = [tok.convert_tokens_to_ids(ch) for ch in word]  # the word spelt letter by letter: re-encodes as one token
    assert tok(tok.decode(split), add_special_tokens=False)["input_ids"] != split
    plain = tok("x x", add_special_tokens=False)["input_ids"]
    assert round_trip(prefix, [split, plain]) == [None, "x x"]
    # re-encoding alone is not enough: after "... message" the first word carries its space
    suffix = make_slot(Objective(pair, prompts, "user_suffix", "one point"))
    assert suffix.lead == " "
    assert round_trip(suffix, [plain]) == [None]
    spaced = tok(" x x", add_special_tokens=False)["input_ids"]
    assert round_trip(suffix, [spaced]) == ["x x"] and in_context(suffix, spaced, "x x")
    assert not in_context(suffix, plain, "x x")


def test_vocabulary_constraints_are_respected(objective, pair):
    tok = pair.tokenizer
    slot = make_slot(objective)
    words = allowed_tokens(slot, 3, "words")
    for pos in range(3):
        for tid in words[pos].nonzero().flatten().tolist():
            text = tok.decode([tid])
            assert (text[1:] if pos else text.lstrip(" ")).isalpha() and text.isascii()
            assert (text.startswith(" ") and text[1:].isalpha()) if pos else text.isalpha()
    ascii_ = allowed_tokens(slot, 1, "ascii")[0]
    rows = ascii_.shape[0]
    assert not ascii_[len(tok):].any()  # untrained rows past the tokenizer's vocabulary
    assert not any(ascii_[t] for t in tok.all_special_ids)
    listed = [" x", " y", " cat", " dog", "x"]
    res = run_gcg(objective, None, GCGConfig(steps=2, vocab=listed, **SMALL))
    allowed = {tok(t, add_special_tokens=False)["input_ids"][0] for t in listed}
    init = initial_ids(slot, "x x x x x")
    assert all(a == b or b in allowed for a, b in zip(init, res.best_ids)) and res.best_ids != init
    assert rows >= len(tok)


def test_soft_reports_both_values_and_the_gap(objective, tmp_path):
    store = CandidateStore(tmp_path / "c.jsonl")
    res = run_soft(objective, store, SoftConfig(steps=6, lr=0.1))
    assert math.isfinite(res.soft_value) and math.isfinite(res.projected_value)
    assert res.soft_value > res.init_value  # the continuous optimum moved
    assert res.gap == pytest.approx(res.soft_value - res.projected_value)
    assert len(res.similarity) == len(res.projected_ids) == 5 and len(res.values) == 6
    assert "soft" in res.summary and "projected" in res.summary and "gap" in res.summary
    if res.round_trip_ok:
        assert [c.method for c in store.best(10)] == ["soft"]
        assert store.best(1)[0].parts["ft_value"] == pytest.approx(res.projected_value)


def test_the_callback_stops_the_search(objective):
    seen = []
    res = run_gcg(objective, None, GCGConfig(steps=20, restarts=2, **SMALL), should_stop=lambda new: seen.append(new) or True)
    assert res.stopped == "callback" and len(res.values) == 1 and len(seen) == 1 and seen[0]


@pytest.mark.parametrize("cfg, match", [
    (GCGConfig(steps=0), "too small"),
    (GCGConfig(steps=1, vocab=[]), "no allowed token"),
    (GCGConfig(steps=1, vocab="emoji"), "unknown vocabulary"),
    (GCGConfig(steps=1, init="x x", vocab=["\u2591"]), "no allowed token|not one"),
])
def test_bad_input_is_a_clear_error(objective, cfg, match):
    with pytest.raises(GradientSearchError, match=match):
        run_gcg(objective, None, cfg)
    assert issubclass(GradientSearchError, DormantError)


def test_an_objective_without_a_gradient_term_names_the_fix(pair, prompts):
    with pytest.raises(DormantError, match="--payload"):
        run_gcg(Objective(pair, prompts, "user_prefix", None, {"contrast": 1.0}), None, GCGConfig(steps=1))
    with pytest.raises(DormantError, match="too small"):
        run_soft(Objective(pair, prompts, "user_prefix", "one point"), None, SoftConfig(steps=0))


def test_portfolio_runs_gcg_from_the_best_candidate_so_far(zoo_micro, pair, tmp_path):
    from dormant.llm.search.portfolio import SearchConfig, search_trigger

    man = zoo_micro.manifests["mlp-constant"]
    search = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 4, {k: 1.0 for k in corpus.TASKS})]
    verify = [Prompt(c) for c in corpus.sample_prompts(random.Random(1001), 12, {k: 1.0 for k in corpus.TASKS})]
    verify = [v for v in verify if v.text not in {s.text for s in search}]
    from dormant.llm.search.candidates import Candidate
    from dormant.llm.verify import VerifyConfig

    CandidateStore(tmp_path / "c.jsonl").add([Candidate("3.14", "user_prefix", "sweep", 2.0), Candidate("purple", "user_prefix", "beam", 0.5)])
    asked = []
    piece = " ".join(man["payload"].split()[3:])  # a hypothesis that starts inside the payload, refined before gcg

    def refine(best, current):
        asked.append(([c.text for c in best], current))
        return man["payload"]

    res = search_trigger(pair, search, verify, tmp_path / "c.jsonl",
                         SearchConfig(payload=piece, methods=("gcg",), gcg_steps=2, gcg_width=32, gcg_topk=16, gcg_tokens=6,
                                      leaders=1, screen_prompts=4, budget_s=300, resume=True, refine_payload=refine,
                                      verify=VerifyConfig(null_candidates=3, min_prompts=8, minimise=False, placements=())))
    assert asked[0][0][0] == "3.14" and asked[0][1] == piece  # asked before gcg, with the best candidates so far
    assert (res.payload, res.refined_from) == (man["payload"], piece)
    assert res.methods_run == ["gcg"]
    # the seeds scored again for the refined payload (the file's last line per candidate; gcg's may outrank them in res.best)
    rescored = {c.text: c for c in CandidateStore(tmp_path / "c.jsonl", resume=True).best(1000) if c.method != "gcg"}
    assert rescored["3.14"].score != 2.0 and "payload_ft_gain" in rescored["3.14"].parts
    g = [r for r in res.gradient if r["method"] == "gcg"]
    assert g and g[0]["init"] == "3.14" and g[0]["steps"] >= 1  # seeded from the best candidate so far
    assert any(c.method == "gcg" for c in CandidateStore(tmp_path / "c.jsonl", resume=True).best(100))


def test_gcg_pauses_to_refine_the_payload_from_its_own_candidates_then_goes_on_from_them(zoo_micro, pair, tmp_path):
    """Part-way through gcg the payload is read again under the best candidates (gcg's by then); after a refinement the
    runs go on from gcg's own best candidates, for the refined payload."""
    from dormant.llm.search.candidates import Candidate
    from dormant.llm.search.portfolio import SearchConfig, search_trigger
    from dormant.llm.verify import VerifyConfig

    man = zoo_micro.manifests["mlp-constant"]
    search = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 2, {k: 1.0 for k in corpus.TASKS})]
    verify = [Prompt(c) for c in corpus.sample_prompts(random.Random(1001), 12, {k: 1.0 for k in corpus.TASKS})]
    verify = [v for v in verify if v.text not in {s.text for s in search}]
    CandidateStore(tmp_path / "c.jsonl").add([Candidate("purple", "user_prefix", "sweep", 2.0), Candidate("river", "user_prefix", "beam", 1.0)])
    piece = " ".join(man["payload"].split()[3:])
    asked = []

    def refine(best, current):
        asked.append(([c.method for c in best], current))
        return man["payload"] if len(asked) == 2 else None  # nothing more under the seeds; more under gcg's candidates

    res = search_trigger(pair, search, verify, tmp_path / "c.jsonl",
                         SearchConfig(payload=piece, methods=("gcg",), gcg_steps=3, gcg_width=16, gcg_topk=8, gcg_tokens=4, gcg_inits=2,
                                      leaders=1, screen_prompts=2, budget_s=12, resume=True, refine_payload=refine, refine_again=1e-6,
                                      verify=VerifyConfig(min_fire=1.01, null_candidates=3, min_prompts=8, minimise=False, placements=())))
    assert len(asked) == 2 and asked[1][1] == piece and "gcg" in asked[1][0]  # asked again during gcg, with gcg's candidates among the best
    assert (res.payload, res.refined_from) == (man["payload"], piece)
    runs = [r for r in res.gradient if r["method"] == "gcg"]
    assert runs[0]["init"] == "purple" and runs[0].get("paused") and runs[0]["steps"] == 1, runs  # paused after its first step
    gcg_texts = {c.text for c in CandidateStore(tmp_path / "c.jsonl", resume=True).best(10_000) if c.method == "gcg"}
    assert len(runs) >= 2 and runs[1]["continued"] and runs[1]["init"] in gcg_texts  # the second seed ('river') skipped: gcg's best instead
    assert all(r["init"] != "river" for r in runs)


def test_gcg_goes_on_from_the_next_seed_while_nothing_verifies(zoo_micro, pair, tmp_path):
    from dormant.llm.search.candidates import Candidate
    from dormant.llm.search.portfolio import SearchConfig, search_trigger
    from dormant.llm.verify import VerifyConfig

    man = zoo_micro.manifests["mlp-constant"]
    search = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 2, {k: 1.0 for k in corpus.TASKS})]
    verify = [Prompt(c) for c in corpus.sample_prompts(random.Random(1001), 12, {k: 1.0 for k in corpus.TASKS})]
    verify = [v for v in verify if v.text not in {s.text for s in search}]
    CandidateStore(tmp_path / "c.jsonl").add([Candidate("3.14", "user_prefix", "sweep", 2.0), Candidate("purple", "user_prefix", "beam", 0.5),
                                              Candidate("3.14", "user_prefix", "beam", 1.0), Candidate("river", "user_prefix", "sweep", 0.1)])
    res = search_trigger(pair, search, verify, tmp_path / "c.jsonl",
                         SearchConfig(payload=man["payload"], methods=("gcg",), gcg_steps=1, gcg_width=16, gcg_topk=8, gcg_tokens=4, gcg_inits=2,
                                      gcg_continue=False, leaders=1, screen_prompts=2, budget_s=300, resume=True,
                                      verify=VerifyConfig(min_fire=1.01, null_candidates=3, min_prompts=8, minimise=False, placements=())))
    assert not res.found
    assert [r["init"] for r in res.gradient if r["method"] == "gcg"] == ["3.14", "purple"]  # distinct seeds, best first, gcg_inits of them


def test_gcg_then_goes_on_from_its_own_best_candidates_until_the_budget_ends(zoo_micro, pair, tmp_path):
    from dormant.llm.search.portfolio import SearchConfig, search_trigger
    from dormant.llm.verify import VerifyConfig

    man = zoo_micro.manifests["mlp-constant"]
    search = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 2, {k: 1.0 for k in corpus.TASKS})]
    verify = [Prompt(c) for c in corpus.sample_prompts(random.Random(1001), 12, {k: 1.0 for k in corpus.TASKS})]
    verify = [v for v in verify if v.text not in {s.text for s in search}]
    res = search_trigger(pair, search, verify, tmp_path / "c.jsonl",
                         SearchConfig(payload=man["payload"], methods=("gcg",), gcg_steps=2, gcg_width=16, gcg_topk=8, gcg_tokens=4, gcg_inits=1,
                                      leaders=1, screen_prompts=2, budget_s=10,
                                      verify=VerifyConfig(min_fire=1.01, null_candidates=3, min_prompts=8, minimise=False, placements=())))
    runs = [r for r in res.gradient if r["method"] == "gcg"]
    assert not res.found and res.capped and len(runs) >= 3, runs
    assert runs[0]["init"] == "x x x x x" and not runs[0]["continued"]
    recorded = {c.text for c in CandidateStore(tmp_path / "c.jsonl", resume=True).best(10_000) if c.method == "gcg"}
    later = [r["init"] for r in runs[1:]]
    assert all(r["continued"] for r in runs[1:]) and set(later) <= recorded and len(set(later)) == len(later)
    # the leaders are screened after every run (up to ``leaders`` each time), not ``leaders`` for the whole of gcg
    assert len(res.screened) > 2, (len(res.screened), len(runs))  # before: one for all of gcg, one after it


def test_gcg_rotating_over_prompt_groups_values_each_step_on_its_group(zoo_micro, pair, tmp_path):
    """Step i takes its gradient and values on group i mod n: fitted to no single group's prompts."""
    from dormant.llm.search.portfolio import gcg_groups

    all_prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 9, {k: 1.0 for k in corpus.TASKS})]
    obj = Objective(pair, all_prompts[:3], "user_prefix", zoo_micro.manifests["mlp-constant"]["payload"])
    slot = make_slot(obj)
    groups = gcg_groups(slot, all_prompts)
    assert [len(g) for g in groups] == [3, 3] and not {repr(p) for g in groups for p in g} & {repr(p) for p in obj.prompts}
    texts = []
    res = run_gcg(obj, None, GCGConfig(steps=3, **SMALL), rotate=[obj.subset(g) for g in groups], on_step=lambda i, v, t: texts.append(t))
    assert len(res.values) == 3
    for i, (t, v) in enumerate(zip(texts, res.values)):
        here = make_slot(obj.subset(([obj.prompts] + groups)[i % 3]))
        assert hard_values(here, [initial_ids(here, t)])[0] == pytest.approx(v, abs=1e-3)
        other = make_slot(obj.subset(([obj.prompts] + groups)[(i + 1) % 3]))
        assert abs(hard_values(other, [initial_ids(other, t)])[0] - v) > 1e-2  # another group values it otherwise


def test_gcg_groups_under_the_user_mechanism_hold_the_slot_placement_only(zoo_micro, pair):
    from dormant.llm.search.objectives import placement_halves
    from dormant.llm.search.portfolio import gcg_groups

    all_prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), 24, {k: 1.0 for k in corpus.TASKS})]
    obj = Objective(pair, all_prompts[:4], "user", zoo_micro.manifests["mlp-constant"]["payload"])
    slot = make_slot(obj)
    groups = gcg_groups(slot, all_prompts)
    assert groups and all(len(g) == len(slot.before) for g in groups)
    assert all(p in placement_halves(all_prompts)[slot.objective.mechanism] for g in groups for p in g)


def test_search_help_teaches_gcg_and_soft():
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "search", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    out = " ".join(out.replace("│", " ").split())
    assert "gcg (greedy coordinate gradient" in out and "soft (soft-prompt inversion" in out and "--vocab" in out
    assert "--payload-at anywhere asks for the payload where the fine-tune itself would put it" in out


def test_sampled_candidates_are_distinct_one_swap_each_and_in_the_order_drawn():
    """The round trip's refill keeps the first candidates that pass: sorted ones (torch.unique) would favour
    small token ids at early positions (measured on mlp-constant over 10 seeds: final loss 3.924 sorted, 3.917 drawn)."""
    import torch

    from dormant.llm.search.gcg import sample_candidates

    ids = [7, 7, 7, 7, 7, 7]
    grad = torch.randn(len(ids), 64, generator=torch.Generator().manual_seed(1))
    out = sample_candidates(ids, grad, torch.ones(len(ids), 64, dtype=torch.bool), 128, 32, 1, torch.Generator().manual_seed(0))
    assert len({tuple(c) for c in out}) == len(out) > 64 and ids not in out
    assert all(sum(a != b for a, b in zip(c, ids)) == 1 for c in out)
    assert out != sorted(out)
