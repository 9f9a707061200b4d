"""Beam: grow natural phrases word by word from the best single words, scored by objective plus fluency.

Start from the best ``width`` units (words or tokens found by the sweep / read-out); at each step
extend every beam phrase by every unit, appended or prepended, with a space, or glued where both
sides are digits or punctuation (``3`` + ``.`` + ``14``; ``purple`` + ``9`` is ``purple 9``), a unit
never repeated, score the new phrases with the objective (which may
include ``fluency``), and keep the best ``width``. Stops after ``max_words`` units, at the deadline,
or when no extension beats its parent.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore, key_of
from dormant.llm.search.objectives import Objective

METHOD = "beam"
COARSE = "beam:coarse"


def _glue(unit: str) -> bool:
    return len(unit) <= 2 and not unit.isalpha()


def symbol_units(tokenizer) -> list[str]:
    """The vocabulary's single digits and punctuation marks. Numbers and codes are spelt from these
    (Qwen2.5 and the micro zoo's tokenizer write every digit as its own token), and a lone digit of a
    trigger scores little on its own, so the beam always has them to glue, whatever the sweep ranked."""
    from dormant.llm.search.sweep import vocabulary_candidates

    return [t for t in vocabulary_candidates(tokenizer) if len(t) == 1 and (t.isdigit() or (not t.isalnum() and t.isascii()))]


def extensions(phrase: str, units: Sequence[str]) -> list[str]:
    """Every phrase one unit longer: appended or prepended, spaced, or glued between digits and punctuation; no unit twice."""
    out: dict[str, None] = {}
    for u in units:
        if u in phrase.split() or (len(u) >= 3 and u in phrase):
            continue
        glue = _glue(u) and _glue(phrase[-1:])
        out.setdefault(phrase + u if glue else f"{phrase} {u}", None)
        glue_front = _glue(u) and _glue(phrase[:1])
        out.setdefault(u + phrase if glue_front else f"{u} {phrase}", None)
    return [o for o in out if o != phrase]


def run_beam(objective: Objective, seeds: Sequence[str], units: Sequence[str], store: CandidateStore, *, width: int = 6,
             max_words: int = 6, deadline: float | None = None, on_step: Callable[[list[Candidate]], None] | None = None,
             pool: Sequence[str] = (), pool_parents: int = 2, pool_refine: int = 32, method: str = METHOD) -> list[Candidate]:
    """Grow phrases from ``seeds`` with ``units``; every scored phrase goes to ``store``. Returns the final beam, best first.

    ``pool``: a wide list of words (e.g. the whole word list) tried beside the best ``pool_parents``
    phrases at every step, first by the objective's coarse pass (one prompt; stored as
    ``beam:coarse``), then the best ``pool_refine`` of them in full. A word of a multi-word trigger
    often scores nothing alone (the near misses of a phrase are trained not to fire) and only counts
    beside the rest of the phrase: this is where the beam finds it. ``method``: the name the phrases are
    stored under (``pieces`` grows its phrases here too; the coarse pass as ``<method>:coarse``).
    """
    from dormant.llm.search.sweep import SweepStats, scored_chunks

    mech = objective.mechanism
    coarse = objective.coarse(1) if pool else None
    capped = False

    def scored(obj: Objective, method: str, texts: list[str]) -> list[Candidate]:
        nonlocal capped
        texts = list(dict.fromkeys(texts))
        if not scored_chunks(obj, method, texts, store, 64, SweepStats(), deadline, None):
            capped = True
        return [store.items[k] for k in (key_of(method, mech, t) for t in texts) if k in store]

    coarse_method = f"{method}:coarse"  # COARSE for the beam's own
    beam = sorted(scored(objective, method, list(seeds)), key=lambda c: -c.score)[:width]
    for _ in range(max_words - 1):
        if capped or not beam or (deadline is not None and time.monotonic() >= deadline):
            break
        texts = [e for c in beam for e in extensions(c.text, units)]
        if coarse is not None:
            wide = [e for c in beam[:pool_parents] for e in extensions(c.text, pool)]
            first = sorted(scored(coarse, coarse_method, wide), key=lambda c: -c.score)
            texts += [c.text for c in first[:pool_refine]]
        grown = scored(objective, method, texts)
        best_parent = max(c.score for c in beam)
        nxt = sorted({c.text: c for c in beam + grown}.values(), key=lambda c: -c.score)[:width]
        if on_step:
            on_step(nxt)
        if max(c.score for c in nxt) <= best_parent and [c.text for c in nxt] == [c.text for c in beam]:
            break
        beam = nxt
    return beam
