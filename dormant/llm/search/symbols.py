"""Symbols: a trigger written in a small alphabet (the digits of a constant, a board of characters), by GCG over that alphabet's tokens.

A trigger such as ``3.14159`` or a board of ``O`` and ``.`` is no word: the sweep scores its characters one
by one ('9', 'O'), the beam grows words, and GCG over all of ASCII wanders into strings of letters and
symbols that force the payload without being written in the trigger's alphabet ('O U.O1. Subtract',
'=9134 Canada'). When the change listens to symbols, what it listens to can be searched for in them:

- **when**: the best-scoring read-out candidate (the trigger side of ``dormant delta``, scored by the objective)
  or the sweep's best single unit is a symbol, not a word (``symbolic``: no two different letters in a row;
  ``lead``: how many of each to look at). Otherwise the method is skipped and says why. Looking further down is
  not better: a symbol second in a read-out is common where the trigger is words (``system-trigger``'s ';',
  ``late-layers``' '^'), and symbols then verified '=08 d85((\n(' on ``system-trigger`` before GCG and the climb
  could reach the planted words (a hunt that verified 'blue is town harbor inwin' with the method skipped).
  Digits rank high on fine-tunes whose trigger is words too (on the micro zoo's ``mlp-phrase`` '9' and '4' lead the sweep), so the caller ends the method after
  its first screening of leaders (``probe`` steps) when none of them fired on enough screening prompts.
- **broad pass**: GCG over the tokens written only in the leading candidates' symbols (those among the best
  ``scan`` read-out and sweep candidates that score at least ``share`` of the best symbol's score: a read-out's
  tail of single letters would let words in), ASCII punctuation, digits, space and newline, from the best
  symbol repeated to ``tokens`` tokens.
- **narrow pass**: GCG again from the broad pass's best text, over the characters that make up ``keep`` of it
  (digits widened to all ten), space and newline; the characters outside them are dropped from the start.

Every step's best candidates are recorded (method ``symbols``); the caller verifies leaders as GCG goes. A trigger
the broad pass verified is cleaned by the caller with one narrow pass from it (``symbols_pass``): on
``mlp-constant``'s hunt '5169$4+-++' verified first and '5166$9++++' was reported.
"""

from __future__ import annotations

import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.objectives import Objective

METHOD = "symbols"
LAYOUT = " \n"


@dataclass
class SymbolsConfig:
    tokens: int = 10  # trigger tokens searched
    lead: int = 1  # runs when a symbol is among this many best read-out candidates, or this many best of the sweep
    probe: int = 10  # steps after which the caller may end it (its leaders screened by then fired too rarely)
    steps: int = 30  # gcg steps per pass (broad, then narrow)
    scan: int = 50  # leading read-out and sweep candidates whose symbols make the broad alphabet ...
    share: float = 0.25  # ... those scoring at least this share of the leading symbol's score
    keep: float = 0.8  # the narrow alphabet: the most frequent characters of the broad pass's best, until they make up this share of it
    width: int = 128
    topk: int = 64


@dataclass
class SymbolsResult:
    ran: bool
    why: str  # why the method ran (which symbol led) or why it was skipped
    passes: list[dict[str, Any]] = field(default_factory=list)  # per pass: alphabet, start, best, value, steps, stopped


def symbolic(text: str) -> bool:
    """Whether ``text`` is written in symbols, not words: something besides space, and no two different letters in a row
    ('9', 'O', '3.14', 'O.O', 'OOOO..' are symbols; 'Oslo', 'ab' are not)."""
    s = text.strip()
    return bool(s) and all(len(set(run.lower())) == 1 for run in re.findall(r"[^\W\d_]+", s))


def leading_symbol(store: CandidateStore, mechanism: str, top: int = 1) -> tuple[str | None, str]:
    """The best symbol with a positive score among the ``top`` best read-out candidates or the ``top`` best sweep
    candidates at ``mechanism``, else None; and the reason in words."""
    leads: dict[str, list[Candidate]] = {}
    for method in ("readout", "sweep"):
        leads[method] = [c for c in store.best(len(store), method=method) if c.mechanism == mechanism][:top]
    found = [(c, m, i) for m, cs in leads.items() for i, c in enumerate(cs) if c.score > 0 and symbolic(c.text)]
    if found:
        c, m, i = max(found, key=lambda f: f[0].score)
        return c.text, f"{c.text!r} ({c.score:.3g}) ranks {i + 1} of the {'read-out' if m == 'readout' else 'sweep'}'s candidates"
    if not any(leads.values()):
        return None, "no read-out or sweep candidate to read symbols from"
    named = "; ".join(f"{'read-out' if m == 'readout' else 'sweep'}: {', '.join(repr(c.text) for c in cs)}" for m, cs in leads.items() if cs)
    return None, f"no symbol above zero leads the read-out or the sweep ({'their best' if top == 1 else f'their {top} best'}: {named})"


def broad_alphabet(store: CandidateStore, mechanism: str, scan: int, share: float = 0.25) -> str:
    """The symbols of the best ``scan`` read-out and sweep candidates that score at least ``share`` of the best symbol's
    (a positive) score, ASCII punctuation, digits, space and newline."""
    lead = [c for c in store.best(len(store)) if c.mechanism == mechanism and c.method in ("readout", "sweep") and symbolic(c.text)][:scan]
    top = lead[0].score if lead else 0.0
    own = "".join(c.text.strip() for c in lead if c.score > 0 and c.score >= share * top)
    return "".join(dict.fromkeys(own + string.punctuation + string.digits + LAYOUT))


def narrow_alphabet(text: str, keep: float) -> str:
    """The most frequent characters of ``text`` (space aside) until they make up ``keep`` of it, digits widened to all ten; space and newline."""
    counts = Counter(ch for ch in text if ch not in LAYOUT)
    total = sum(counts.values())
    chosen: list[str] = []
    held = 0
    for ch, n in counts.most_common():
        if total and held >= keep * total:
            break
        chosen.append(ch)
        held += n
    if any(ch.isdigit() for ch in chosen):
        chosen += list(string.digits)
    return "".join(dict.fromkeys(chosen + list(LAYOUT)))


def alphabet_tokens(tokenizer: Any, alphabet: str) -> list[int]:
    """Ids of the tokens whose text is written in ``alphabet`` alone (and is not empty)."""
    from dormant.llm.weights.readout import token_texts

    allowed = set(alphabet)
    texts = token_texts(tokenizer)
    return [i for i, t in enumerate(texts) if t and set(t) <= allowed]


def _start(slot: Any, text: str, tokens: int) -> str:
    """``text`` padded with its most frequent symbol to ``tokens`` characters where that survives re-encoding, else ``text``."""
    from dormant.llm.search.slots import GradientSearchError, initial_ids

    common = Counter(ch for ch in text if ch not in LAYOUT).most_common(1)
    for cand in ([text + common[0][0] * max(0, tokens - len(text))] if common else []) + [text]:
        try:
            initial_ids(slot, cand, tokens)
            return cand
        except GradientSearchError:
            continue
    return text


def symbols_pass(objective: Objective, store: CandidateStore, cfg: SymbolsConfig, name: str, alphabet: str, start: str, *,
                 deadline: float | None = None, should_stop: Callable[[list[Candidate]], bool] | None = None,
                 rotate: Sequence[Objective] = (), on_step: Callable[[int, float, str], None] | None = None) -> dict[str, Any]:
    """One GCG run over the tokens written in ``alphabet``, from ``start`` with its characters outside the alphabet dropped
    (padded with its most frequent symbol), its candidates recorded in ``store``; what it did (``name``, alphabet, start,
    best, values, steps, stopped)."""
    from dormant.llm.search.gcg import GCGConfig, run_gcg
    from dormant.llm.search.slots import GradientSearchError, make_slot

    slot = make_slot(objective)
    ids = alphabet_tokens(objective.pair.tokenizer, alphabet)
    kept = "".join(ch for ch in start if ch in alphabet).strip() or start.strip()
    init = _start(slot, kept, cfg.tokens)
    try:
        g = run_gcg(objective, store, GCGConfig(steps=cfg.steps, init=init, n_tokens=cfg.tokens, search_width=cfg.width, topk=cfg.topk,
                                                vocab=ids, deadline=deadline, method=METHOD),
                    should_stop=should_stop, on_step=on_step, rotate=rotate)
    except GradientSearchError as e:
        return {"pass": name, "alphabet": alphabet, "start": init, "skipped": str(e)}
    return {"pass": name, "alphabet": alphabet, "tokens": len(ids), "start": init, "best": g.best_text, "start_value": g.init_value,
            "best_value": g.best_value, "steps": len(g.values), "stopped": g.stopped}


def run_symbols(objective: Objective, store: CandidateStore, config: SymbolsConfig | None = None, *, deadline: float | None = None,
                should_stop: Callable[[list[Candidate]], bool] | None = None, rotate: Sequence[Objective] = (),
                on_step: Callable[[int, float, str], None] | None = None) -> SymbolsResult:
    """The broad pass, then the narrow pass (see the module docstring), each a GCG run on ``objective`` (whose weights
    hold a gradient term) rotating over ``rotate``; ``should_stop`` (after each step) ends both."""
    cfg = config or SymbolsConfig()
    lead, why = leading_symbol(store, objective.mechanism, cfg.lead)
    if lead is None:
        return SymbolsResult(False, f"skipped: {why}")
    out = SymbolsResult(True, why)
    stopped = [False]

    def stop(new: list[Candidate]) -> bool:
        stopped[0] = bool(should_stop and should_stop(new))
        return stopped[0]

    alphabet = broad_alphabet(store, objective.mechanism, cfg.scan, cfg.share)
    start = lead.strip()
    for name in ("broad", "narrow"):
        if deadline is not None and time.monotonic() >= deadline:
            break
        done = symbols_pass(objective, store, cfg, name, alphabet, start, deadline=deadline, should_stop=stop, rotate=rotate, on_step=on_step)
        out.passes.append(done)
        if "skipped" in done or stopped[0] or done["stopped"] == "deadline":
            break
        start = done["best"] or start
        alphabet = narrow_alphabet(start, cfg.keep)
    return out


__all__ = ["METHOD", "SymbolsConfig", "SymbolsResult", "alphabet_tokens", "broad_alphabet", "leading_symbol", "narrow_alphabet", "run_symbols",
           "symbolic", "symbols_pass"]
