"""Sweep: every vocabulary token and every whole word of a word list, at each insertion mechanism.

Candidates: the decoded text of every real vocabulary token (embedding rows past the tokenizer's
vocabulary are untrained and skipped, as are special tokens, byte fragments that do not decode to
whole characters, and whitespace), stripped of its leading space, plus the words of a word list
(default: the most frequent English words), deduplicated. Each is inserted into the search prompts
by each mechanism and scored by the objective in chunks; every chunk goes to the candidate store
before the next starts, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore, key_of
from dormant.llm.search.objectives import Objective

METHOD = "sweep"


def vocabulary_candidates(tokenizer, rows: int | None = None) -> list[str]:
    """Decoded, stripped texts of the real, non-special, whole-character tokens, in id order, once each."""
    from dormant.llm.weights.readout import valid_token_mask

    n = len(tokenizer) if rows is None else rows
    mask = valid_token_mask(n, tokenizer)
    out: dict[str, None] = {}
    for tid in range(n):
        if not bool(mask[tid]):
            continue
        text = tokenizer.decode([tid]).strip()
        if not text or "\ufffd" in text or not text.isprintable():
            continue
        out.setdefault(text, None)
    return list(out)


def sweep_candidates(tokenizer, words: Sequence[str] | None = None, *, rows: int | None = None, n_words: int = 5000) -> list[str]:
    """Vocabulary tokens then whole words (``words``, or the ``n_words`` most frequent English words)."""
    if words is None:
        from dormant.net.invert.wordlists import english_words

        words = english_words(n_words)
    seen = dict.fromkeys(vocabulary_candidates(tokenizer, rows))
    for w in words:
        if w.strip():
            seen.setdefault(w.strip(), None)
    return list(seen)


@dataclass
class SweepStats:
    scored: int = 0
    skipped: int = 0  # already in the store (resume)
    total: int = 0
    capped: bool = False  # stopped by the deadline before the end


def run_sweep(objective: Objective, texts: Sequence[str], store: CandidateStore, *, mechanisms: Sequence[str] = ("user_prefix",),
              chunk: int = 64, deadline: float | None = None, on_chunk: Callable[[SweepStats], None] | None = None) -> SweepStats:
    """Score every text at every mechanism, ``chunk`` texts at a time, into ``store``; stop at ``deadline`` (monotonic)."""
    stats = SweepStats(total=len(texts) * len(mechanisms))
    for mech in mechanisms:
        obj = objective.variant(mechanism=mech)
        todo = [t for t in texts if key_of(METHOD, mech, t) not in store]
        stats.skipped += len(texts) - len(todo)
        for start in range(0, len(todo), chunk):
            if deadline is not None and time.monotonic() >= deadline:
                stats.capped = True
                return stats
            part = todo[start : start + chunk]
            scores = obj.score(part)
            store.add(Candidate(t, mech, METHOD, s["score"], {k: v for k, v in s.items() if k != "score"}) for t, s in zip(part, scores))
            stats.scored += len(part)
            if on_chunk:
                on_chunk(stats)
    return stats


__all__ = ["METHOD", "SweepStats", "run_sweep", "sweep_candidates", "vocabulary_candidates"]
