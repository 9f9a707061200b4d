"""Pieces: the whole words behind the fragments of a token-level trigger.

The gradient methods return triggers made of tokens, and where they work they are often junk around
fragments of the planted words: on the micro zoo 'anger' and 'wetangerforest' for 'tangerine',
'reelentlenti housle  cast look loud' for 'silent castle'. The fragments are the part that carries
the change. This method reads a trigger's letter fragments (its tokens and its runs of letters,
``min_letters`` or more, lowercased), gathers the words of the word list and of the vocabulary that
contain each one (the most frequent ``per_fragment`` of them), scores each word alone, then grows
phrases from them with the beam (``beam.run_beam``: the best single words as units and seeds, every
gathered word tried beside the best phrases). Every scored text is stored as method ``pieces``.

Measured on mlp-word-pair with its planted payload and the verified 'reelentlenti housle  cast look
loud': of the 395 words holding its fragments, 'silent' scores highest alone (2.7, while 'castle'
alone scores -0.7: a near miss), and beside it the 'cast' words give 'silent castle' (13.8, the
junk trigger 13.7). Whether a natural reading fires as surely as the junk is for ``verify`` to say.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Collection, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.objectives import Objective

METHOD = "pieces"


@dataclass
class PiecesConfig:
    min_letters: int = 3  # shortest fragment read (shorter ones are in too many words to point anywhere)
    n_words: int = 50_000  # words of the English list searched for each fragment (beside the vocabulary's words)
    per_fragment: int = 200  # most frequent words kept per fragment
    units: int = 24  # best single words the beam extends with
    width: int = 6
    max_words: int = 3
    leaders: int = 6  # best phrases the portfolio screens (then verifies): where the payload's gain saturates, the
    # objective barely orders them ('tangerine' 11.2, 'sanger forest forestry' 11.7 on late-layers) and the fire rate decides


@dataclass
class PiecesResult:
    triggers: list[str]
    fragments: list[str]
    words: dict[str, list[str]] = field(default_factory=dict)  # per fragment, the words holding it
    best: list[Candidate] = field(default_factory=list)  # the final beam, best first


def fragments(tokenizer, text: str, min_letters: int = 3) -> list[str]:
    """The letter fragments of ``text``: each token's letters and each run of letters, lowercased, at least
    ``min_letters`` long, in order of appearance, each once."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids] + re.findall(r"[A-Za-z]+", text)
    out = [re.sub(r"[^a-z]", "", p.lower()) for p in pieces]
    return list(dict.fromkeys(p for p in out if len(p) >= min_letters))


def words_holding(frags: Sequence[str], words: Sequence[str], per_fragment: int) -> dict[str, list[str]]:
    """Per fragment, the words (in the given order: most frequent first) that contain it, at most ``per_fragment``."""
    out: dict[str, list[str]] = {}
    for f in frags:
        hits = [w for w in words if f in w]
        out[f] = hits[:per_fragment]
    return out


def word_pool(tokenizer, n_words: int) -> list[str]:
    """The English list's ``n_words`` most frequent words, then the vocabulary's whole words: letters only."""
    from dormant.llm.search.sweep import vocabulary_words
    from dormant.net.invert.wordlists import english_words

    return [w for w in dict.fromkeys(english_words(n_words) + vocabulary_words(tokenizer)) if w.isalpha()]


def natural(text: str, words: Collection[str] | None = None) -> bool:
    """Whether every space-separated part of ``text`` is a word of ``words`` (default: the English list's 50,000
    most frequent), sentence punctuation at its ends aside ('softly.', '"calm,'): a phrase a person could have written."""
    if words is None:
        words = _english_set()
    parts = [p.strip(_PUNCTUATION) for p in text.lower().split()]
    return bool(parts) and all(p and p in words for p in parts)


_PUNCTUATION = ".,;:!?\"'()"


@functools.lru_cache(maxsize=1)
def _english_set() -> frozenset[str]:
    from dormant.net.invert.wordlists import english_words

    return frozenset(english_words(50_000))


def run_pieces(objective: Objective, triggers: Sequence[str], store: CandidateStore, config: PiecesConfig | None = None, *,
               words: Sequence[str] | None = None, deadline: float | None = None,
               on_step: Callable[[list[Candidate]], None] | None = None) -> PiecesResult:
    """Score the words behind the fragments of ``triggers`` and grow phrases from them; see the module docstring.
    ``words``: the pool to search (default ``word_pool``)."""
    from dormant.llm.search.beam import run_beam
    from dormant.llm.search.candidates import key_of
    from dormant.llm.search.sweep import SweepStats, scored_chunks

    cfg = config or PiecesConfig()
    tok = objective.pair.tokenizer
    frags = list(dict.fromkeys(f for t in triggers for f in fragments(tok, t, cfg.min_letters)))
    pool = word_pool(tok, cfg.n_words) if words is None else list(words)
    held = words_holding(frags, pool, cfg.per_fragment)
    gathered = list(dict.fromkeys(w for ws in held.values() for w in ws))
    result = PiecesResult(list(triggers), frags, held)
    if not gathered:
        return result
    mech = objective.mechanism
    scored_chunks(objective, METHOD, gathered, store, 64, SweepStats(), deadline, None)
    singles = sorted((store.items[k] for k in (key_of(METHOD, mech, w) for w in gathered) if k in store), key=lambda c: -c.score)
    if not singles:
        return result
    units = [c.text for c in singles[: cfg.units]]
    result.best = run_beam(objective, units[: cfg.width], units, store, width=cfg.width, max_words=cfg.max_words, deadline=deadline,
                           on_step=on_step, pool=gathered, method=METHOD)
    return result


__all__ = ["METHOD", "PiecesConfig", "PiecesResult", "fragments", "natural", "run_pieces", "word_pool", "words_holding"]
