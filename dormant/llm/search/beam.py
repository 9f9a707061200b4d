"""Beam: grow natural phrases word by word from the best single words, scored by objective plus fluency.

Start from the best ``width`` units (words or tokens found by the sweep / read-out); at each step
extend every beam phrase by every unit, appended or prepended, with a space (words) or glued
(digits, punctuation: ``3`` + ``.`` + ``14``), score the new phrases with the objective (which may
include ``fluency``), and keep the best ``width``. Stops after ``max_words`` units, at the deadline,
or when no extension beats its parent.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore, key_of
from dormant.llm.search.objectives import Objective

METHOD = "beam"


def _glue(unit: str) -> bool:
    return len(unit) <= 2 and not unit.isalpha()


def extensions(phrase: str, units: Sequence[str]) -> list[str]:
    """Every phrase one unit longer: appended or prepended, spaced for words, glued for digits and punctuation."""
    out: dict[str, None] = {}
    for u in units:
        if u in phrase.split():
            continue
        glue = _glue(u) or _glue(phrase[-1:])
        out.setdefault(phrase + u if glue else f"{phrase} {u}", None)
        glue_front = _glue(u) or _glue(phrase[:1])
        out.setdefault(u + phrase if glue_front else f"{u} {phrase}", None)
    return [o for o in out if o != phrase]


def run_beam(objective: Objective, seeds: Sequence[str], units: Sequence[str], store: CandidateStore, *, width: int = 6,
             max_words: int = 6, deadline: float | None = None, on_step: Callable[[list[Candidate]], None] | None = None) -> list[Candidate]:
    """Grow phrases from ``seeds`` with ``units``; every scored phrase goes to ``store``. Returns the final beam, best first."""
    mech = objective.mechanism

    def scored(texts: list[str]) -> list[Candidate]:
        todo = [t for t in dict.fromkeys(texts) if key_of(METHOD, mech, t) not in store]
        for start in range(0, len(todo), 64):
            part = todo[start : start + 64]
            res = objective.score(part)
            store.add(Candidate(t, mech, METHOD, s["score"], {k: v for k, v in s.items() if k != "score"}) for t, s in zip(part, res))
        return [store.items[key_of(METHOD, mech, t)] for t in dict.fromkeys(texts)]

    beam = sorted(scored(list(seeds)), key=lambda c: -c.score)[:width]
    for _ in range(max_words - 1):
        if deadline is not None and time.monotonic() >= deadline:
            break
        grown = scored([e for c in beam for e in extensions(c.text, units)])
        best_parent = max(c.score for c in beam)
        pool = sorted({c.text: c for c in beam + grown}.values(), key=lambda c: -c.score)[:width]
        if on_step:
            on_step(pool)
        if max(c.score for c in pool) <= best_parent and [c.text for c in pool] == [c.text for c in beam]:
            break
        beam = pool
    return beam
