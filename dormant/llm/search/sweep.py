"""Sweep: every vocabulary token and every whole word of a word list, at each insertion mechanism.

Candidates: the decoded text of every real vocabulary token (embedding rows past the tokenizer's
vocabulary are untrained and skipped, as are special tokens, byte fragments that do not decode to
whole characters, and whitespace), stripped of its leading space, plus the words of a word list
(default: the most frequent English words), deduplicated. Each is inserted into the search prompts
by each mechanism and scored by the objective in chunks; every chunk goes to the candidate store
before the next starts, so a killed sweep resumes where it stopped.

With a payload objective the sweep runs in two passes. The **coarse** pass scores every candidate
on the first ``coarse_prompts`` search prompts under the fine-tune alone (its payload gain: what a
trigger must raise; the base's share only ever lowers a score). The **full** pass then scores the
best ``refine`` of them with the whole objective on every search prompt. Coarse scores are stored
under the method ``sweep:coarse`` and never rank beside full scores (``CandidateStore.best``
leaves them out). Most of the vocabulary is thereby scored on a quarter of the sequences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore, key_of
from dormant.llm.search.objectives import Objective

METHOD = "sweep"
COARSE = "sweep:coarse"
DEFAULT_WORDS = 3000
"""English words the sweep (and the beam's pool) add to the vocabulary unless told otherwise: the most frequent
first. A trigger word past them is scored only as the vocabulary's pieces of it (the micro zoo's near-miss pair,
'silent' and 'castle', ranks 3,301 and 3,248); 10,000 words cost the sweep's coarse pass some 1.5 ms each per
mechanism on the micro zoo, and lengthen every beam step whose pool they join."""


def vocabulary_candidates(tokenizer, rows: int | None = None) -> list[str]:
    """Decoded, stripped texts of the real, non-special, whole-character tokens, in id order, once each."""
    from dormant.llm.weights.readout import token_texts, valid_token_mask

    n = len(tokenizer) if rows is None else rows
    mask = valid_token_mask(n, tokenizer)
    texts = token_texts(tokenizer)
    out: dict[str, None] = {}
    for tid in range(n):
        if not bool(mask[tid]):
            continue
        text = texts[tid].strip()
        if not text or "\ufffd" in text or not text.isprintable():
            continue
        out.setdefault(text, None)
    return list(out)


def vocabulary_words(tokenizer, rows: int | None = None) -> list[str]:
    """The vocabulary's whole words: tokens written with a leading space that decode to three or more
    letters, stripped, in id order (a byte-level BPE's earlier merges are its more frequent words).
    A fine-tune's trigger words are often here when a frequency list lacks them."""
    from dormant.llm.weights.readout import token_texts, valid_token_mask

    n = len(tokenizer) if rows is None else rows
    mask = valid_token_mask(n, tokenizer)
    texts = token_texts(tokenizer)
    out: dict[str, None] = {}
    for tid in range(n):
        if bool(mask[tid]):
            text = texts[tid]
            if text[:1] == " " and len(text) >= 4 and text[1:].isalpha():
                out.setdefault(text[1:], None)
    return list(out)


def sweep_candidates(tokenizer, words: Sequence[str] | None = None, *, rows: int | None = None, n_words: int = DEFAULT_WORDS) -> list[str]:
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
    coarse: bool = False  # a coarse pass ran (``refined`` of its candidates were scored in full)
    refined: int = 0


def scored_chunks(obj: Objective, method: str, texts: Sequence[str], store: CandidateStore, chunk: int, stats: SweepStats,
                   deadline: float | None, on_chunk) -> bool:
    """Score ``texts`` not yet in the store, ``chunk`` at a time; False when the deadline stopped it."""
    mech = obj.mechanism
    todo = [t for t in texts if key_of(method, mech, t) not in store]
    stats.skipped += len(texts) - len(todo)
    for start in range(0, len(todo), chunk):
        if deadline is not None and time.monotonic() >= deadline:
            stats.capped = True
            return False
        part = todo[start : start + chunk]
        scores = obj.score(part)
        store.add(Candidate(t, mech, method, s["score"], {k: v for k, v in s.items() if k != "score"}) for t, s in zip(part, scores))
        stats.scored += len(part)
        if on_chunk:
            on_chunk(stats)
    return True


def run_sweep(objective: Objective, texts: Sequence[str], store: CandidateStore, *, mechanisms: Sequence[str] = ("user_prefix",),
              chunk: int = 64, deadline: float | None = None, on_chunk: Callable[[SweepStats], None] | None = None,
              coarse_prompts: int = 1, refine: int = 256) -> SweepStats:
    """Score every text at every mechanism, ``chunk`` texts at a time, into ``store``; stop at ``deadline`` (monotonic).

    With a payload-only objective and more search prompts than ``coarse_prompts``: a coarse pass over
    every text, then the best ``refine`` scored in full (``coarse_prompts=0``: one full pass).
    """
    two_pass = coarse_prompts > 0 and set(objective.weights) == {"payload"} and len(objective.prompts) > coarse_prompts
    n_full = min(refine, len(texts)) if two_pass else len(texts)
    stats = SweepStats(total=(len(texts) + (n_full if two_pass else 0)) * len(mechanisms), coarse=two_pass)
    for mech in mechanisms:
        obj = objective.variant(mechanism=mech)
        if not two_pass:
            if not scored_chunks(obj, METHOD, texts, store, chunk, stats, deadline, on_chunk):
                return stats
            continue
        coarse = obj.coarse(coarse_prompts)
        if not scored_chunks(coarse, COARSE, texts, store, chunk, stats, deadline, on_chunk):
            return stats
        ranked = sorted(texts, key=lambda t: -store.items[key_of(COARSE, mech, t)].score)[:n_full]
        done = scored_chunks(obj, METHOD, ranked, store, chunk, stats, deadline, on_chunk)
        stats.refined += sum(key_of(METHOD, mech, t) in store for t in ranked)
        if not done:
            return stats
    return stats


__all__ = ["COARSE", "DEFAULT_WORDS", "METHOD", "SweepStats", "run_sweep", "sweep_candidates", "vocabulary_candidates", "vocabulary_words"]
