"""Read-out seeds: the tokens the weight change listens to (``dormant delta``'s trigger side) as candidates.

The trigger-side read-out projects the input-side singular vectors of each modified matrix onto the
embedding (``dormant.llm.weights.readout``). The tokens at both ends of the aggregate directions
(then of the per-module tables) are the first candidates a search tries: on the public warmup the
digits of pi ranked high. Untrained rows and special tokens are already excluded by the read-out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dormant.llm.search.candidates import Candidate, CandidateStore, key_of
from dormant.llm.search.objectives import Objective

if TYPE_CHECKING:
    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.weights.readout import ReadoutResult

METHOD = "readout"


def readout_tokens(pair: "ModelPair", *, top: int = 20, per_module: int = 4) -> list[str]:
    """Stripped texts of the trigger-side read-out's top tokens: aggregate directions first, then per-module tables."""
    from dormant.llm.checkpoint import open_checkpoint
    from dormant.llm.weights.delta import analyse_delta
    from dormant.llm.weights.readout import ReadoutConfig, vocabulary_readout

    ft, base = open_checkpoint(pair.ft_path), open_checkpoint(pair.base_path)
    delta = analyse_delta(ft, base)
    read = vocabulary_readout(ft, delta, ReadoutConfig(top_tokens=top), tokenizer=pair.tokenizer, base=base)
    return seed_texts(read, pair.tokenizer, top=top, per_module=per_module)


def seed_texts(read: "ReadoutResult", tokenizer: Any, *, top: int = 20, per_module: int = 4) -> list[str]:
    """The candidate texts of a computed read-out (see ``readout_tokens``)."""
    out: dict[str, None] = {}
    tables = list(read.trigger_aggregate) + list(read.trigger)
    for i, t in enumerate(tables):
        k = top if i < len(read.trigger_aggregate) else per_module
        for s in t.top[:k] + t.bottom[:k]:
            text = tokenizer.decode([s.id]).strip()
            if text and "\ufffd" not in text and text.isprintable():
                out.setdefault(text, None)
    return list(out)


def run_readout_seeds(objective: Objective, store: CandidateStore, *, top: int = 20, tokens: list[str] | None = None) -> list[Candidate]:
    """Score the read-out tokens with the objective and record them; returns them best first."""
    texts = tokens if tokens is not None else readout_tokens(objective.pair, top=top)
    todo = [t for t in texts if key_of(METHOD, objective.mechanism, t) not in store]
    scores = objective.score(todo)
    store.add(Candidate(t, objective.mechanism, METHOD, s["score"], {k: v for k, v in s.items() if k != "score"}) for t, s in zip(todo, scores))
    return store.best(len(texts), method=METHOD)
