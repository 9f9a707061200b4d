"""Climb: from a verified trigger, follow the change's own activation by GCG, then grow phrases from the words it keeps.

Where a fine-tune fires on many strings, the payload's gain cannot say which one was planted: it
saturates (on the micro zoo's ``system-trigger``, over 32 prompts, the planted 'the blue harbor is
calm' 17.79 nats, the verified 'diseases blueberries lunchtime' 17.78). The change activation (the
objective ``activation``: how strongly the candidate switches on ``W_ft - W_base``) keeps rising
toward what the change was trained on (there, 1.41 against 1.30). GCG following it alone from the
verified trigger, on 8 prompts, 256 swaps a step: 'diseases blueberries lunchtime' -> 'blue blue ho
is calm...' (step 26) -> 'blue blue harbor ever table000 ...' (activation 1.31 -> 1.86); on
``mlp-word-pair`` 'allentown silent whole' -> 'lentlent cast si cast2le' (the fragments of 'silent
castle'). It does not reach the planted text itself: activation also grows with repetition and
junk. So the words the climb keeps (whole-word tokens of the English list, the most persistent over
its steps first) are grown into phrases by the beam, scored by the search's objective plus the
activation (stored as method ``climb``; the portfolio verifies the best), and the climb's best text
and its most persistent words go to ``pieces``, which reads the whole words behind their fragments
('cast' -> 'castle'). On ``mlp-constant`` the climb rises to digits that are not pi ('3 h
island441493', 1.40, above '3.14159', 1.13, on 32 prompts): where the change's own reading does not
single out the planted text, neither does the climb.

The portfolio verifies the phrases of the climb and of ``pieces`` strongest first (``strength``, on
``rank_prompts`` search prompts), and reports, of the triggers of whole words that verified, the
strongest (``portfolio.strongest``). With a payload the strength is not the activation but the
payload's gain under a weakened fine-tune (its change scaled to ``ATTENUATION``, 0.7): among
strings that all fire, how little of the change each needs. It separates them where the activation
was close to a coin (on ``late-layers``, 32 prompts: 'deformation tangerine ranger' 9.62 against
'transformative granger stranger' 9.27, where the activation had it 0.23 against 0.24;
``system-trigger``: the planted 'the blue harbor is calm' 17.75, 'the blue pay calm owl' 16.64,
'diseases blueberries lunchtime' 14.19, where the full fine-tune's gains are all 17.6-17.7; on
``mlp-phrase`` the planted phrase 9.85 above three verified look-alikes, 8.17-9.39). It is a
preference, not a proof: it grows with length too (on ``mlp-word-pair`` 'allentown silent castle'
14.63 above 'silent castle' 13.09; on ``late-layers`` 'tangerine' alone 9.17, below the phrases), and
optimised it is maximised by junk like every objective here (word by word from 'the blue pay calm
owl': 'died blue taylor taylor taylor'), so it orders what the other methods found and is not
searched on. The verdict lists every other verified trigger with its strength.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from dormant.llm.engine.prompts import Prompt
from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.objectives import Objective

METHOD = "climb"
# ``strength``: the change's scale at which a payload's gain orders verified triggers (measured: module docstring)
ATTENUATION = 0.7
STRENGTH_OF = {"payload": f"payload gain at a = {ATTENUATION:g}", "activation": "change activation"}


@dataclass
class ClimbConfig:
    steps: int = 50  # GCG steps along the activation (0: no climb)
    prompts: int = 8  # search prompts the climb follows (more than the objective's few: the activation is cheap)
    search_width: int = 256
    topk: int = 64
    vocab: str = "ascii"
    words: int = 16  # most persistent whole words of the climb grown into phrases
    width: int = 8  # the phrase beam's width
    max_words: int = 5
    activation: float = 1.0  # weight of the change activation added to the phrases' objective
    leaders: int = 3  # best phrases the portfolio screens (then verifies)
    pieces_words: int = 8  # most persistent words handed to ``pieces`` beside the climb's best text
    rank_prompts: int = 16  # search prompts on which the portfolio ranks verified triggers and phrases by strength (``strength``)


@dataclass
class ClimbResult:
    start: str
    best_text: str
    start_value: float  # the activation (mean log ratio over the climb's prompts) at the start
    best_value: float
    steps: int
    stopped: str  # "steps" or "deadline"
    path: list[str] = field(default_factory=list)  # each step's best text
    words: list[str] = field(default_factory=list)  # the words the phrases were grown from, most persistent first
    phrases: list[Candidate] = field(default_factory=list)  # the final beam, best first


def path_words(tokenizer, path: Sequence[str], n: int, words: frozenset[str] | None = None) -> list[str]:
    """The tokens of ``path``'s texts that are whole words of ``words`` (default: the English list's 50,000 most
    frequent; three letters or more), ordered by the number of texts holding them (ties: first seen first), at most ``n``."""
    if words is None:
        from dormant.llm.search.pieces import _english_set

        words = _english_set()
    count: Counter[str] = Counter()
    first: dict[str, int] = {}
    for text in path:
        held = [w for w in (tokenizer.decode([i]).strip().lower() for i in tokenizer(text, add_special_tokens=False)["input_ids"])
                if len(w) >= 3 and w.isalpha() and w in words]
        for w in held:
            first.setdefault(w, len(first))
        count.update(set(held))
    return sorted(count, key=lambda w: (-count[w], first[w]))[:n]


def run_climb(objective: Objective, trigger: str, store: CandidateStore, config: ClimbConfig | None = None, *,
              prompts: Sequence[Prompt] = (), deadline: float | None = None) -> ClimbResult:
    """GCG from ``trigger`` on the change activation alone (on ``prompts``, at most ``config.prompts``; default the
    objective's), then the beam over the words it kept, scored by ``objective`` plus the activation; see the module docstring."""
    from dormant.llm.search.beam import run_beam
    from dormant.llm.search.gcg import GCGConfig, run_gcg

    cfg = config or ClimbConfig()
    path: list[str] = []
    climber = objective.subset(list(prompts)[: cfg.prompts]) if prompts else objective
    g = run_gcg(climber.variant(weights={"activation": 1.0}), None,
                GCGConfig(steps=cfg.steps, init=trigger, search_width=cfg.search_width, topk=cfg.topk, vocab=cfg.vocab,
                          record_top=0, deadline=deadline),
                on_step=lambda i, v, t: path.append(t))
    res = ClimbResult(trigger, g.best_text, g.init_value, g.best_value, len(g.values), g.stopped, path)
    res.words = path_words(objective.pair.tokenizer, path, cfg.words)
    if res.words and (deadline is None or time.monotonic() < deadline):
        weights = dict(objective.weights)
        weights["activation"] = weights.get("activation", 0.0) + cfg.activation
        res.phrases = run_beam(objective.variant(weights=weights), res.words, res.words, store, width=cfg.width,
                               max_words=cfg.max_words, deadline=deadline, method=METHOD)
    return res


def activation(objective: Objective, texts: list[str]) -> list[float]:
    """The change activation of each text on the objective's prompts and mechanism."""
    return [s["activation"] for s in objective.variant(weights={"activation": 1.0}).score(texts)]


def strength_of(objective: Objective) -> str:
    """What ``strength`` measures under ``objective``."""
    return STRENGTH_OF["payload" if objective.payload else "activation"]


def strength(objective: Objective, texts: list[str]) -> tuple[list[float], str]:
    """How strongly each text triggers the change, and what that number is (``strength_of``): with a payload, the
    payload's gain under the fine-tune with its change scaled to ``ATTENUATION`` (a trigger that needs less of
    the change scores higher); without one, the change activation."""
    values = objective.payload_gain_at(texts, ATTENUATION) if objective.payload else activation(objective, texts)
    return values, strength_of(objective)


__all__ = ["ATTENUATION", "ClimbConfig", "ClimbResult", "METHOD", "STRENGTH_OF", "activation", "path_words", "run_climb", "strength", "strength_of"]
