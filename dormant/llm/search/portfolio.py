"""The portfolio: read-out seeds, memory extraction and the sweep, then beam and GCG from the best, verifying leaders as it goes.

Search prompts and verification prompts are disjoint (the caller passes both). After each method
the best unverified candidates (``leaders``) are screened on a few verification prompts and the
ones that fire there are fully verified (``dormant.llm.verify``); the search stops at the first
verified trigger (GCG verifies its leaders every ``gcg_verify_every`` steps and stops there too).
GCG starts from the best sweep/beam candidate of each mechanism, padded with `` x`` to
``gcg_tokens`` tokens (``"x x x x x"`` when there is none or it does not survive re-encoding).
Before the beam, ``symbols`` runs where a symbol, not a word, leads the read-out or the sweep, scored by
the objective (the digits of a constant, the cells of a board): GCG over that alphabet's tokens
(``dormant.llm.search.symbols``), ended after its first screening where its leaders fire too rarely
(about 10 CPU-seconds on the micro zoo where the trigger is words, against the beam's 150 where it is
symbols); the beam never grows from its strings. When it verifies nothing, the payload is refined from
the answers under the best candidates so far (as before GCG) and its leaders are screened again; a trigger of symbols is not read for words by climb and pieces, nor is one memory extraction leaked whole (``leaked``). Soft-prompt inversion runs only
when asked (``methods`` naming ``soft``). Last, while the budget
lasts: ``climb`` follows the change activation alone by GCG from the verified trigger, grows the
words it keeps into phrases and verifies the best (``dormant.llm.search.climb``); ``pieces`` reads
the whole words behind the fragments of the verified trigger and of what the climb kept (or, when
none verified, of GCG's best candidates) and verifies its best phrases. A verified phrase of whole
words is reported as the trigger in place of a token-level one (which is kept, ``also_verified``),
since a natural trigger is what was most likely planted and what a user can read; of the verified
triggers of whole words, the strongest (``climb.strength`` on the search prompts: with a payload, its
gain under the fine-tune with the change scaled to 0.7, i.e. the one that needs the least of the
change; without one, the change activation) is reported, since the full fine-tune's payload gain
barely tells them apart (``strongest``; see ``climb`` for where this finds the planted text and
where not). A budget caps the methods
(checked between chunks, beam steps and GCG steps); a capped search says so. Every scored
candidate goes to the JSONL store; ``resume`` continues a killed run.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dormant.errors import DormantError
from dormant.llm.engine.prompts import MECHANISMS, Prompt, dedupe, prompt_key
from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.climb import ClimbConfig, strength_of
from dormant.llm.search.climb import strength as climb_strength
from dormant.llm.search.extract import ExtractConfig, leaked_texts
from dormant.llm.search.objectives import Objective
from dormant.llm.search.pieces import PiecesConfig
from dormant.llm.search.sweep import DEFAULT_WORDS
from dormant.llm.search.symbols import SymbolsConfig, symbolic
from dormant.llm.verify import Pace, TriggerError, VerifyConfig, VerifyResult, check_mechanism, check_payload, screen_fire, screen_needs, verify_trigger

if TYPE_CHECKING:
    from dormant.llm.engine.pair import ModelPair

METHODS = ("readout", "extract", "sweep", "symbols", "beam", "gcg", "soft", "climb", "pieces")
DEFAULT_METHODS = ("readout", "extract", "sweep", "symbols", "beam", "gcg", "climb", "pieces")


class SearchBudgetError(DormantError):
    """A search budget that cannot be parsed or is too small for one chunk of work."""


def parse_budget(text: str | float | int) -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"1.5h"`` or a plain number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise SearchBudgetError(f"budget {text!r} is not a duration; write e.g. --budget 90s, 10m or 1h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if seconds <= 0:
        raise SearchBudgetError(f"budget {text!r} leaves no time; write e.g. --budget 90s, 10m or 1h")
    return seconds


@dataclass
class SearchConfig:
    payload: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    mechanisms: tuple[str, ...] = ("user_prefix",)
    objectives: dict[str, float] = field(default_factory=dict)  # default: payload gain (contrast without a payload)
    payload_at: str = "start"  # where in the answer the payload is asked for: "start", or "anywhere" after the model's own lead
    beam_fluency: float = 0.2  # weight of fluency added to the objective in the beam
    budget_s: float = 600.0
    chunk: int = 64
    search_prompts: int = 4  # prompts each candidate is scored on
    n_words: int = DEFAULT_WORDS  # words of the English list added to the vocabulary in the sweep
    sweep_coarse_prompts: int = 1  # with a payload: every unit on this many prompts under the fine-tune first (0: no coarse pass)
    sweep_refine: int = 256  # ... then this many of the best scored in full
    words: list[str] | None = None
    beam_seeds: int = 6
    beam_units: int = 24
    beam_width: int = 6
    beam_max_words: int = 6
    beam_pool: bool = True  # also try every word of the word list and the vocabulary beside the best phrases (coarse pass first)
    beam_pool_max: int = 8000  # at most this many pool words (the word list first, then the vocabulary's words in id order)
    beam_share: float = 0.5  # of the budget left when the beam starts, the most it may use when gcg or soft follow it
    gcg_steps: int = 60  # per run
    gcg_inits: int = 4  # gcg runs per mechanism, each from the next best distinct seed, while the budget lasts and nothing verified
    gcg_continue: bool = True  # then further runs, each from gcg's best candidate not yet a start, until the budget ends or one verifies
    gcg_tokens: int = 5  # trigger tokens optimised (the seed is padded with " x" up to this)
    gcg_width: int = 128
    gcg_topk: int = 64
    gcg_vocab: str = "ascii"  # ascii, words or all (gcg and soft)
    gcg_verify_every: int = 10  # steps between verifications of the leaders
    gcg_prompts: int = 16  # search prompts gcg rotates over, a group of the objective's size per step (the first group: the objective's own)
    soft_steps: int = 100
    leaders: int = 3  # candidates screened after each method
    screen_prompts: int = 10
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    resume: bool = False
    readout_tokens: list[str] | None = None  # the trigger-side read-out's texts, when already computed (default: computed here)
    extract: ExtractConfig = field(default_factory=ExtractConfig)  # memory extraction's sampling and thresholds
    # called with the best candidates so far and the current payload, before the first gradient method while
    # nothing verified, and again once ``refine_again`` of gcg's time has passed: a longer payload that holds
    # the current one (read off the fine-tune's answers under them), or None
    refine_payload: Callable[[list[Candidate], str], str | None] | None = None
    refine_again: float = 0.4  # share of the time left when gcg starts after which gcg pauses to refine again (0: only before gcg)
    rescore: int = 64  # on a refined payload, the best candidates so far scored again for it (the others no longer rank)
    pieces: PiecesConfig = field(default_factory=PiecesConfig)  # the words behind the fragments of a token-level trigger
    climb: ClimbConfig = field(default_factory=ClimbConfig)  # from the verified trigger along the change's activation: phrases, and words for pieces
    symbols: SymbolsConfig = field(default_factory=SymbolsConfig)  # gcg over a small alphabet, when a symbol leads the read-out and sweep
    symbols_share: float = 0.5  # of the budget left when symbols starts, the most it may use when gcg or soft follow it

    def __post_init__(self) -> None:
        if not self.methods:
            raise DormantError(f"no search method given: give --method with one or more of {', '.join(METHODS)}")
        if not self.mechanisms:
            raise DormantError(f"no insertion mechanism given: give --mechanism with one or more of {', '.join(MECHANISMS)}")
        for value, option, least in ((self.chunk, "--chunk", 1), (self.search_prompts, "--search-prompts", 1), (self.n_words, "--words", 0)):
            if value < least:
                raise DormantError(f"{option} {value} is too small: give {option} {least} or more")
        if self.budget_s <= 0:
            raise SearchBudgetError(f"a budget of {self.budget_s:g}s leaves no time: give e.g. --budget 90s, 10m or 1h")


@dataclass
class SearchResult:
    found: bool
    trigger: str | None
    mechanism: str | None
    verification: VerifyResult | None
    verdict: str
    capped: bool
    elapsed_s: float
    candidates_path: str
    n_candidates: int
    resumed: int
    best: list[dict[str, Any]]
    screened: list[dict[str, Any]] = field(default_factory=list)  # leaders tried and what stopped them
    methods_run: list[str] = field(default_factory=list)
    extracted: dict[str, Any] | None = None  # memory extraction's verdict and clusters (its payload candidates listed apart)
    gradient: list[dict[str, Any]] = field(default_factory=list)  # per gcg/soft run: its start, best, and (soft) the soft-to-hard gap
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per method run: CPU seconds of this process (with its leaders' verification)
    payload: str | None = None  # the payload searched for at the end (``refined_from``: the one given, when refined)
    refined_from: str | None = None
    pieces: dict[str, Any] | None = None  # the words behind the fragments: read from which triggers, the fragments, the best phrases
    climb: dict[str, Any] | None = None  # the climb from the verified trigger: start, best, activations, words kept, phrases, what verified
    symbols: dict[str, Any] | None = None  # per mechanism: why symbols ran or was skipped, and its passes (alphabet, start, best)
    also_verified: list[dict[str, Any]] = field(default_factory=list)  # triggers that verified beside the one reported
    files_note: str | None = None  # what became of an earlier run's candidates file (set aside; nothing to resume)
    unscreened: list[str] = field(default_factory=list)  # leaders never screened: the budget ran out (best first)
    leaked: bool = False  # the trigger is a text memory extraction found the fine-tune writing whole (climb and pieces then not run)


def check_verify_prompts(verify_prompts: Sequence[Prompt], min_prompts: int) -> None:
    """Refuse, before any work, verification prompts too few for a verdict (distinct ones counted): no leader could
    be verified, and none screened on the prompts the record would name."""
    n = len(dedupe(list(verify_prompts)))
    if n < min_prompts:
        raise TriggerError(f"{n} distinct verification prompts, {min_prompts} needed for a verdict; give more with --prompts FILE "
                           f"(at least {2 * min_prompts} distinct: the search uses one half, verification the other)")


def search_trigger(pair: "ModelPair", search_prompts: Sequence[Prompt], verify_prompts: Sequence[Prompt], store_path: str | Path,
                   config: SearchConfig | None = None, *, on_progress: Callable[[str, Candidate | None], None] | None = None) -> SearchResult:
    """Run the selected methods in order on ``search_prompts``; verify leaders on ``verify_prompts``."""
    cfg = config or SearchConfig()
    started = time.monotonic()
    deadline = started + cfg.budget_s
    tok = pair.tokenizer
    payload = check_payload(tok, cfg.payload)
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise DormantError(f"unknown search method(s) {unknown}; choose from {', '.join(METHODS)}")
    shared = {prompt_key(p) for p in search_prompts} & {prompt_key(p) for p in verify_prompts}
    if shared:
        raise DormantError(f"{len(shared)} prompts are both search and verification prompts; verification needs unseen prompts")
    check_verify_prompts(verify_prompts, cfg.verify.min_prompts)
    for m in cfg.mechanisms:
        check_mechanism(tok, m, list(search_prompts))
    prompts = list(search_prompts)[: cfg.search_prompts]

    def scale_of(payload: str | None) -> str:
        """What a score depends on (the store's ``scale``): a resumed search ranks only scores made for its own."""
        import hashlib
        import json

        digest = hashlib.sha256("\x1e".join(prompt_key(p) for p in prompts).encode()).hexdigest()[:16]
        return json.dumps({"payload": payload, "objectives": dict(sorted(dict(cfg.objectives).items())), "payload_at": cfg.payload_at,
                           "prompts": digest, "ft": str(getattr(pair, "ft_path", "")), "base": str(getattr(pair, "base_path", ""))},
                          sort_keys=True)

    store = CandidateStore(store_path, resume=cfg.resume, scale=scale_of(payload))
    other = (f"; {store.other_scale} of its candidates were scored for another objective (another payload, objective, prompts "
             "or model pair) and are scored again where met" if store.other_scale else "")
    files_note = (f"an earlier search's candidates were set aside as {store.set_aside}" if store.set_aside else
                  f"nothing to resume in {store.path}: a new search" if cfg.resume and not store.resumed and not store.other_scale else
                  f"resumed {store.resumed} candidates from {store.path}{other}" if other else None)
    def objective_for(payload: str | None) -> Objective:
        """The search's objective for ``payload`` (at the start, and again for a refined payload)."""
        return Objective(pair, prompts, cfg.mechanisms[0], payload, dict(cfg.objectives), payload_at=cfg.payload_at)

    objective = objective_for(payload)
    vcfg = VerifyConfig(**{**vars(cfg.verify), "payload": payload})

    # calibrate: one chunk must fit in the budget
    t0 = time.monotonic()
    objective.baseline()
    objective.score(["the"] * min(4, cfg.chunk))
    per_chunk = (time.monotonic() - t0) / min(4, cfg.chunk) * cfg.chunk
    if per_chunk > cfg.budget_s:
        raise SearchBudgetError(f"budget {cfg.budget_s:.0f}s is smaller than one chunk of {cfg.chunk} candidates (~{per_chunk:.0f}s here); "
                                f"give --budget {math.ceil(per_chunk * 4 / 10) * 10}s or more, or a smaller --chunk")

    def note(stage: str, cand: Candidate | None = None) -> None:
        if on_progress:
            on_progress(stage, cand or (store.best(1) or [None])[0])

    screened: list[dict[str, Any]] = []
    unscreened: list[str] = []  # leaders the budget left unscreened (a verification started past it overran it by minutes on a real-size model)
    thresholds: dict[tuple[str, int], float] = {}  # payload-free screening: the nulls' divergence threshold per (mechanism, words)
    pace = Pace(deadline)  # none starts that the budget would end during (judged by the longest screening + verification so far)
    tried: set[tuple[str, str]] = set()
    capped = False
    methods_run: list[str] = []
    gradient: list[dict[str, Any]] = []

    def verify_leaders(method: str | None = None, leaders: int | None = None, distinct: bool = False,
                       rank: Callable[[list[Candidate]], list[Candidate]] | None = None,
                       keep: Callable[[str], bool] | None = None) -> VerifyResult | None:
        """Screen (then verify) up to ``leaders`` (default ``cfg.leaders``) of the best candidates not tried yet (of
        ``method`` only, when given; ``distinct``: none sharing half its words with one screened before it): after
        each method, and every ``gcg_verify_every`` steps of gcg. ``rank``: reorders the best ``4 x leaders`` such
        candidates before the first ``leaders`` are taken; ``keep``: only texts it accepts. None starts that the budget would end during (``Pace``):
        those leaders are listed in ``unscreened``."""
        leaders = leaders or cfg.leaders
        want = leaders * (4 if rank else 1)  # candidates taken (``rank`` reorders them first)
        seen: list[set[str]] = []  # with ``distinct``: the word sets taken in this call
        pool: list[Candidate] = []
        for c in store.best(want * (50 if distinct or keep else 4), method=method):
            if len(pool) >= want:
                break
            if (c.text, c.mechanism) in tried or c.score <= 0 or (keep is not None and not keep(c.text)):
                continue
            words = set(c.text.lower().split())
            if distinct and any(2 * len(words & w) >= len(words) for w in seen):
                continue  # a near copy of a phrase taken already ('granger forest forestry' after 'sanger forest forestry')
            seen.append(words)
            pool.append(c)
        for c in (rank(pool) if rank and pool else pool)[:leaders]:
            if not pace.fits():
                if c.text not in unscreened:
                    unscreened.append(c.text)
                continue
            tried.add((c.text, c.mechanism))
            note(f"screening {c.text!r}", c)
            vc = VerifyConfig(**{**vars(vcfg), "mechanism": c.mechanism})
            with pace.timing():
                quick = screen_fire(pair, c.text, list(verify_prompts)[: cfg.screen_prompts], vc, thresholds)
                entry: dict[str, Any] = {"text": c.text, "mechanism": c.mechanism, "score": c.score, "screen_fire": quick, "round": len(methods_run)}
                screened.append(entry)
                if quick < screen_needs(vc):
                    entry["stopped"] = f"fires on {quick:.0%} of {cfg.screen_prompts} screening prompts"
                    continue
                note(f"verifying {c.text!r}", c)
                res = verify_trigger(pair, c.text, verify_prompts, vc)
            entry.update(verified=res.verified, failed=res.failed, fire=res.fire)
            if res.verified:
                return res
        return None

    found: VerifyResult | None = None
    refined_from: str | None = None
    asked = False  # refine_payload is asked before the first gradient method only

    def refine() -> None:
        """Ask ``refine_payload`` with the best candidates so far; on a new payload, search for it from now on."""
        nonlocal payload, objective, vcfg, refined_from
        new = cfg.refine_payload(store.best(cfg.leaders * 4), payload) if cfg.refine_payload is not None and payload else None
        if new and new != payload:
            note(f"payload refined to {new!r}")
            refined_from, payload = refined_from or payload, check_payload(tok, new)
            objective = objective_for(payload)
            vcfg = VerifyConfig(**{**vars(vcfg), "payload": payload})
            tried.clear()  # the leaders are screened again, for the refined payload
            # scores for the old payload do not rank beside new ones: the best so far are scored again for the new one
            old = store.best(cfg.rescore)
            store.new_scale(scale_of(payload))
            for mech in cfg.mechanisms:
                mine = [c for c in old if c.mechanism == mech]
                if mine:
                    scores = objective.variant(mechanism=mech).score([c.text for c in mine])
                    store.add([Candidate(c.text, mech, c.method, sc["score"], {k: v for k, v in sc.items() if k != "score"})
                               for c, sc in zip(mine, scores)])
            pair.ft()
            for m in gcg_state.queues:  # gcg goes on from its own best candidates, which elicited the longer payload
                gcg_state.queues[m] = []

    gcg_state = _GcgState()
    symbols_run: dict[str, Any] | None = None
    also: list[dict[str, Any]] = []  # triggers verified beside the one reported
    units: list[str] = []
    extracted: dict[str, Any] | None = None
    seconds: dict[str, float] = {}
    cut: list[str] = []  # the methods the budget cut short, in order

    def cut_by_budget(method: str, hit: bool) -> bool:
        if hit and method not in cut:
            cut.append(method)
        return hit

    for method in cfg.methods:
        if time.monotonic() >= deadline:
            capped = True
            break
        note(method)
        m_start = time.process_time()
        if method == "readout":
            from dormant.llm.search.readout_seeds import run_readout_seeds

            for mech in cfg.mechanisms:
                run_readout_seeds(objective.variant(mechanism=mech), store, tokens=cfg.readout_tokens)
        elif method == "extract":
            from dormant.llm.search.extract import run_extract_method, summary

            ex = run_extract_method(objective, store, cfg.extract, mechanisms=cfg.mechanisms, deadline=deadline, resume=cfg.resume,
                                    on_progress=note)
            extracted = summary(ex)
            capped = cut_by_budget(method, ex.capped) or capped
        elif method == "sweep":
            from dormant.llm.search.sweep import run_sweep, sweep_candidates

            texts = sweep_candidates(tok, cfg.words, n_words=cfg.n_words)
            stats = run_sweep(objective, texts, store, mechanisms=cfg.mechanisms, chunk=cfg.chunk, deadline=deadline,
                              on_chunk=lambda s: note(f"sweep {s.scored + s.skipped}/{s.total}"),
                              coarse_prompts=cfg.sweep_coarse_prompts, refine=cfg.sweep_refine)
            capped = cut_by_budget(method, stats.capped) or capped
        elif method == "beam":
            from dormant.llm.search.beam import run_beam, symbol_units

            later = [m for m in cfg.methods[cfg.methods.index(method) + 1:] if m in ("gcg", "soft")]
            until = time.monotonic() + (deadline - time.monotonic()) * (cfg.beam_share if later else 1.0)

            words = []
            if cfg.beam_pool:
                from dormant.net.invert.wordlists import english_words

                from dormant.llm.search.sweep import vocabulary_words

                listed = [w.strip() for w in (cfg.words or english_words(cfg.n_words))]
                words = [w for w in dict.fromkeys(listed + vocabulary_words(tok)) if w.isalpha()][: cfg.beam_pool_max]
            for mech in cfg.mechanisms:
                units, seeds = beam_units(store, mech, cfg)
                units = list(dict.fromkeys(units + symbol_units(tok)))
                if not seeds:
                    continue
                weights = dict(objective.weights)
                weights["fluency"] = weights.get("fluency", 0.0) + cfg.beam_fluency
                obj = objective.variant(mechanism=mech, weights=weights)
                run_beam(obj, seeds, units, store, width=cfg.beam_width, max_words=cfg.beam_max_words, deadline=until,
                         on_step=lambda pool: note("beam", pool[0]), pool=words if cfg.beam_pool else ())
                if time.monotonic() >= until:
                    capped = cut_by_budget(method, True)
        elif method == "symbols":
            found, symbols_run, also = _symbols(objective, store, cfg, deadline, verify_leaders, note, screened,
                                                pool=list(search_prompts)[: max(cfg.gcg_prompts, cfg.search_prompts)])
            capped = cut_by_budget(method, time.monotonic() >= deadline) or capped
            if found:
                methods_run.append(method)
                seconds[method] = round(time.process_time() - m_start, 1)
                break
            if cfg.refine_payload is not None and payload and any(r["ran"] for r in symbols_run.values()):
                # its strings may elicit more of the payload than the seeds did; its leaders are then screened again below
                # (attn-grid-large's hunt: 'Cells now' fired nowhere, the answers under 'OOOOOOOO.O' gave the whole sentence)
                refine()
        elif method in ("gcg", "soft"):
            again = cfg.refine_payload is not None and payload and method == "gcg" and cfg.refine_again > 0 and not asked
            if cfg.refine_payload is not None and payload and not asked:
                asked = True
                refine()
            pool = list(search_prompts)[: max(cfg.gcg_prompts, cfg.search_prompts)]
            pause = time.monotonic() + (deadline - time.monotonic()) * cfg.refine_again if again else None
            found = _gradient_method(method, objective, store, cfg, deadline, verify_leaders, note, gradient, pool=pool, pause_at=pause,
                                     state=gcg_state)
            if not found and gcg_state.paused:  # gcg's candidates elicit more of the payload than the seeds did: read it again
                gcg_state.paused = False
                refine()
                found = _gradient_method(method, objective, store, cfg, deadline, verify_leaders, note, gradient, pool=pool, state=gcg_state)
            capped = cut_by_budget(method, time.monotonic() >= deadline) or capped
            if found:
                methods_run.append(method)
                seconds[method] = round(time.process_time() - m_start, 1)
                break
        elif method in ("climb", "pieces"):
            continue  # after the others (below): they start from their verified trigger
        methods_run.append(method)
        found = verify_leaders()
        seconds[method] = round(time.process_time() - m_start, 1)
        if found:
            break
    pieces: dict[str, Any] | None = None
    climbed: dict[str, Any] | None = None
    readings: list[tuple[VerifyResult, str]] = []  # further triggers verified after ``found``, each with the method that gave it
    strength: dict[str, float] = {}  # ``climb.strength`` of each text measured (phrases ranked, triggers verified)
    act_obj = (objective.subset(list(search_prompts)[: max(cfg.climb.rank_prompts, cfg.search_prompts)], mechanism=found.mechanism)
               if found is not None else None)

    def measured(texts: list[str]) -> list[float]:
        """``climb.strength`` of each text on ``act_obj``, each measured once (the record quotes one number per text)."""
        new = [t for t in dict.fromkeys(texts) if t not in strength]
        if new:
            strength.update(zip(new, climb_strength(act_obj, new)[0]))
        return [strength[t] for t in texts]

    def by_strength(cands: list[Candidate]) -> list[Candidate]:
        """The strongest first (``climb.strength``): of phrases that all raise the payload, the ones that need the least
        of the change to do it (without a payload: that switch the change on most)."""
        measured([c.text for c in cands])
        return sorted(cands, key=lambda c: -strength[c.text])

    # climb and pieces look for a more natural or stronger reading of what was found: not after a trigger of symbols, nor
    # after one memory extraction leaked whole (the fine-tune writes it itself: what it was trained on, not a look-alike)
    leaked = found is not None and found.trigger.strip() in leaked_texts(extracted)
    words_after = found is None or not (symbolic(found.trigger) or leaked)
    late_skipped: list[str] = []  # climb or pieces, due after a verified trigger, that the budget left no time for
    climb_due = found is not None and words_after and "climb" in cfg.methods and cfg.climb.steps > 0
    if climb_due and time.monotonic() >= deadline:
        late_skipped.append("climb")
    elif climb_due:
        from dormant.llm.search.climb import run_climb

        m_start, n_screened = time.process_time(), len(screened)
        note(f"climb: the change's activation from {found.trigger!r}")
        weights = dict(objective.weights)
        weights["fluency"] = weights.get("fluency", 0.0) + cfg.beam_fluency
        c = run_climb(objective.variant(mechanism=found.mechanism, weights=weights), found.trigger, store, cfg.climb,
                      prompts=list(search_prompts)[: max(cfg.climb.prompts, cfg.search_prompts)], deadline=deadline)
        reading = verify_leaders(method="climb", leaders=cfg.climb.leaders, distinct=True, rank=by_strength) if c.phrases else None
        climbed = {"start": c.start, "best": c.best_text, "start_value": c.start_value, "best_value": c.best_value, "steps": c.steps,
                   "stopped": c.stopped, "words": c.words, "phrases": [{"text": p.text, "score": p.score} for p in c.phrases[:5]],
                   "screened": screened[n_screened:], "verified": reading.trigger if reading else None}
        if reading is not None:
            readings.append((reading, "climb"))
        methods_run.append("climb")
        seconds["climb"] = round(time.process_time() - m_start, 1)
        capped = cut_by_budget("climb", c.stopped == "deadline" or time.monotonic() >= deadline) or capped
    pieces_due = "pieces" in cfg.methods and words_after
    if pieces_due and found is not None and time.monotonic() >= deadline:
        late_skipped.append("pieces")
    elif pieces_due and time.monotonic() < deadline:
        # from the verified trigger; then from what the climb kept: its best text (where it rose) and its most persistent
        # words (mlp-word-pair: 'cast' stays in the climb's steps but not in its best text; the words behind it give 'castle')
        kept = (([climbed["best"]] if climbed["best_value"] > climbed["start_value"] else []) + climbed["words"][: cfg.climb.pieces_words]
                if climbed else [])
        passes = ([[found.trigger]] + ([kept] if kept else []) if found else
                  [[c.text for c in store.best(len(store), method="gcg") if c.mechanism == objective.mechanism][:3]])
        m_start = time.process_time()
        for k, from_texts in enumerate(passes):
            if not from_texts or time.monotonic() >= deadline:
                break
            n_screened = len(screened)
            part, reading = _pieces(objective.variant(mechanism=found.mechanism) if found else objective, from_texts, store, cfg,
                                    deadline, note, verify_leaders, rank=by_strength if found else None)
            part["screened"] = screened[n_screened:]
            if k == 0:
                pieces = part
            else:
                pieces["of_climb"] = part  # (its phrases are verified with the first pass's untried ones, strongest first)
            if reading is not None and found is None:
                found = reading
            elif reading is not None:
                readings.append((reading, "pieces" if k == 0 else "pieces of the climb"))
        if pieces is not None:
            methods_run.append("pieces")
            seconds["pieces"] = round(time.process_time() - m_start, 1)
            capped = cut_by_budget("pieces", time.monotonic() >= deadline) or capped
    if found is not None and readings:
        verified = [(found, "verified first")] + readings
        found, ranked = strongest(verified, measured([v.trigger for v, _ in verified]), strength_of(act_obj))
        also = merged_also(ranked, also, found.trigger)
    for e in screened:
        if e["text"] in strength:
            e.update(strength=strength[e["text"]], strength_of=strength_of(act_obj))
    capped = capped or bool(unscreened) or bool(late_skipped)
    elapsed = time.monotonic() - started
    best = [{"text": c.text, "mechanism": c.mechanism, "method": c.method, "score": c.score, **c.parts} for c in store.best(10)]
    if found:
        least = (f"; its shortest form that still fires is {found.minimal!r} ({found.minimal_fire:.0%}{found.on_detail})"
                 if found.minimal and found.minimal != found.trigger and found.minimal_fire is not None else "")
        behind = "".join(f"; {a['trigger']!r} ({a['from']}) verified too ({a['fire']:.0%}; {a['why']})" for a in also)
        # (the methods a verified trigger made unnecessary are not "never ran": only climb and pieces run after one)
        short = _cut_short(capped, cut, late_skipped, cfg.budget_s, len(unscreened))
        written = ("; memory extraction leaked it whole (the fine-tune writes it itself), so climb and pieces, which look for "
                   "a more natural or stronger reading of a found string, did not run" if leaked else "")
        verdict = (f"found: {found.verdict}{least}{behind}{written}{_pieces_failed(pieces)}{short}. It works as a trigger; its effect alone "
                   "cannot tell whether it is the one planted (searches often find other strings that force the same payload)")
    else:
        not_run = [m for m in cfg.methods if m not in methods_run]
        cap = (f"capped by the budget of {cfg.budget_s:.0f}s (ran {', '.join(methods_run) or 'no method'}"
               + (f"; cut short: {', '.join(cut)}" if cut else "; the verification of its leaders was cut short" if unscreened
                  else "; the last one was cut short")
               + (f"; never ran {', '.join(not_run)}" if not_run else "") + "); ") if capped else ""
        left = (f"the budget ran out before {len(unscreened)} leading candidate{'s' if len(unscreened) > 1 else ''} could be screened "
                f"({', '.join(repr(t) for t in unscreened[:3])}; dormant verify tests one)") if unscreened else ""
        if screened:
            tried_n = "1 leading candidate tried, it did not pass" if len(screened) == 1 else f"{len(screened)} leading candidates tried, none passed"
            verdict = (f"no verified trigger: {cap}{tried_n} verification{_pieces_failed(pieces)}"
                       + (f"; {left}" if left else ""))
        else:
            verdict = f"no verified trigger: {cap}{left or 'no candidate raised the objective above zero'}"
    pair.ft()
    return SearchResult(found=found is not None, trigger=found.trigger if found else None, mechanism=found.mechanism if found else None,
                        verification=found, verdict=verdict, capped=capped, elapsed_s=round(elapsed, 1), candidates_path=str(store.path),
                        n_candidates=len(store), resumed=store.resumed, best=best, screened=screened, methods_run=methods_run,
                        extracted=extracted, gradient=gradient, cpu_seconds=seconds, payload=payload, refined_from=refined_from,
                        pieces=pieces, also_verified=also, files_note=files_note, unscreened=unscreened, climb=climbed, symbols=symbols_run,
                        leaked=leaked)


def strongest(verified: list[tuple[VerifyResult, str]], strengths: Sequence[float], strength_of: str) -> tuple[VerifyResult, list[dict[str, Any]]]:
    """Of the verified triggers (each with where it came from, the first verified first) the one reported: whole words
    before token-level text, then the stronger (``strengths``, in the same order, of ``climb.strength``, which
    ``strength_of`` names; ties: the earlier); and the others' ``also_verified`` entries, each with why it was not reported."""
    from dormant.llm.search.pieces import natural

    order = sorted(range(len(verified)), key=lambda i: (not natural(verified[i][0].trigger), -strengths[i], i))
    top = order[0]
    also = [{"trigger": verified[i][0].trigger, "mechanism": verified[i][0].mechanism, "fire": verified[i][0].fire, "from": verified[i][1],
             "strength": strengths[i], "reported_strength": strengths[top], "strength_of": strength_of,
             "why": ("not whole words" if not natural(verified[i][0].trigger) else _weaker(strengths[i], strengths[top], strength_of))}
            for i in order[1:]]
    return verified[top][0], also


def merged_also(ranked: list[dict[str, Any]], earlier: list[dict[str, Any]], reported: str) -> list[dict[str, Any]]:
    """The ``also_verified`` entries after ``strongest`` ranked the verified triggers: its entries, then the earlier ones
    (``symbols``' cleaning lists the uncleaned string it verified) that name neither one of them nor the reported trigger."""
    named = {a["trigger"] for a in ranked} | {reported}
    return ranked + [a for a in earlier if a["trigger"] not in named]


def _weaker(strength: float, top: float, strength_of: str) -> str:
    """Why a verified trigger of whole words was not the one reported: weaker, or as strong and verified after it."""
    if strength == top:
        return f"as strong ({strength_of} {strength:.2f}) and verified after it"
    digits = 2 if f"{strength:.2f}" != f"{top:.2f}" else 4
    return f"weaker: {strength_of} {strength:.{digits}f} against {top:.{digits}f}"


def _cut_short(capped: bool, cut: list[str], not_run: list[str], budget_s: float, unscreened: int = 0) -> str:
    """What a found verdict says of a budget that ended before every method had its turn (empty when it did not):
    the methods it cut short, those due after the verified trigger it left no time for (``not_run``), and how many
    leading candidates it left unscreened."""
    if not capped:
        return ""
    left = f"{unscreened} leading candidate{'s' if unscreened != 1 else ''} unscreened" if unscreened else ""
    if cut:
        return (f"; the budget of {budget_s:.0f}s cut short {', '.join(cut)}" + (f" ({', '.join(not_run)} never ran)" if not_run else "")
                + (f"; it left {left}" if left else ""))
    if not_run:
        return f"; the budget of {budget_s:.0f}s ran out before {', '.join(not_run)} could run" + (f" and left {left}" if left else "")
    return f"; the budget of {budget_s:.0f}s ran out with {left}" if left else f"; the budget of {budget_s:.0f}s ran out"


def _pieces_failed(pieces: dict[str, Any] | None) -> str:
    """What the verdict says of a ``pieces`` run whose phrases did not verify: the best one tried and why. Nothing when
    either pass verified one (the pass from the climb's words verifies the first pass's untried phrases too)."""
    if not pieces or pieces.get("verified") or (pieces.get("of_climb") or {}).get("verified") or not pieces.get("screened"):
        return ""
    e = pieces["screened"][0]
    why = e.get("stopped") or "; ".join(e.get("failed") or []) or "not verified"
    return f"; the whole words behind the fragments of {pieces['from'][0]!r} did not verify (best tried: {e['text']!r}, {why})"


def _pieces(objective: Objective, from_texts: list[str], store: CandidateStore, cfg: SearchConfig, deadline: float,
            note: Callable[..., None], verify_leaders: Callable[..., VerifyResult | None],
            rank: Callable[[list[Candidate]], list[Candidate]] | None = None) -> tuple[dict[str, Any], VerifyResult | None]:
    """Run ``pieces`` on ``from_texts`` (with the beam's fluency weight) and verify its best phrases (in ``rank``'s order,
    when given); the first phrase that verifies is returned (the caller reports one of the verified triggers: ``strongest``)."""
    from dormant.llm.search.pieces import run_pieces, word_pool

    weights = dict(objective.weights)
    weights["fluency"] = weights.get("fluency", 0.0) + cfg.beam_fluency
    pool = word_pool(objective.pair.tokenizer, cfg.pieces.n_words)
    note(f"pieces: the words behind the fragments of {from_texts[0]!r}")
    res = run_pieces(objective.variant(weights=weights), from_texts, store, cfg.pieces, words=pool, deadline=deadline,
                     on_step=lambda beam: note("pieces", beam[0]))
    out: dict[str, Any] = {"from": from_texts, "fragments": res.fragments, "words": sum(len(w) for w in res.words.values()),
                           "best": [{"text": c.text, "score": c.score} for c in res.best[:5]], "verified": None}
    if not res.best or time.monotonic() >= deadline:
        out["skipped"] = "no word holds its fragments" if not res.best else "the budget ended"
        return out, None
    found = verify_leaders(method="pieces", leaders=cfg.pieces.leaders, distinct=True, rank=rank)
    if found is not None:
        out["verified"] = found.trigger
    return out, found


def gradient_weights(objective: Objective) -> dict[str, float]:
    """The objective's weights, with the change activation added when none of them has a gradient (no payload)."""
    from dormant.llm.search.objectives import GRADIENT_OBJECTIVES

    weights = dict(objective.weights)
    if not set(weights) & set(GRADIENT_OBJECTIVES):
        weights["activation"] = 1.0
    return weights


def _gradient_objective(objective: Objective, mechanism: str, weights: dict[str, float], pool: Sequence[Prompt]) -> tuple[Objective, Any, list[Objective]]:
    """``objective`` at ``mechanism`` with ``weights``, its gradient slot, and the same objective on each group of ``pool``
    that GCG rotates over (``gcg_groups``; none for an empty pool)."""
    from dormant.llm.search.slots import make_slot

    obj = objective.variant(mechanism=mechanism, weights=weights)
    slot = make_slot(obj)
    return obj, slot, [obj.subset(g) for g in gcg_groups(slot, pool)] if pool else []


def beam_units(store: CandidateStore, mechanism: str, cfg: SearchConfig) -> tuple[list[str], list[str]]:
    """The beam's units (the best ``beam_units`` candidates at ``mechanism``) and its seeds (the best ``beam_seeds`` of
    them): of every method but the beam itself and ``symbols``, whose strings of symbols are no units to grow words from
    (grown from them, the beam and then GCG went on to junk around a board on ``attn-grid-large``)."""
    singles = [c.text for c in store.best(len(store)) if c.mechanism == mechanism and c.method not in ("beam", "symbols")]
    return singles[: cfg.beam_units], singles[: cfg.beam_seeds]


def _symbols(objective: Objective, store: CandidateStore, cfg: SearchConfig, deadline: float,
             verify_leaders: Callable[..., VerifyResult | None], note: Callable[..., None], screened: list[dict[str, Any]],
             pool: Sequence[Prompt]) -> tuple[VerifyResult | None, dict[str, Any], list[dict[str, Any]]]:
    """``symbols`` at each mechanism (each its share of ``symbols_share`` of the time left when gcg or soft follow), verifying
    its leaders every ``gcg_verify_every`` steps and at its end; after ``symbols.probe`` steps it ends at a mechanism where
    none of its leaders screened so far fired on half the screening prompts a trigger must fire on (``screened``: the
    search's record of leaders tried). A verified trigger with characters outside its own narrow alphabet is cleaned
    (``_clean_symbols``): a cleaner one that verifies is reported instead, the first listed in ``also_verified``. Returns
    the trigger, what each mechanism's run did, and the ``also_verified`` entries."""
    from dormant.llm.search.symbols import run_symbols

    later = [m for m in cfg.methods[cfg.methods.index("symbols") + 1:] if m in ("gcg", "soft")]
    until = time.monotonic() + (deadline - time.monotonic()) * (cfg.symbols_share if later else 1.0)
    found: list[VerifyResult] = []
    steps = [0]
    out: dict[str, Any] = {}
    abandoned: list[str] = []
    need = cfg.verify.min_fire / 2

    def should_stop(new: list[Candidate]) -> bool:
        steps[0] += 1
        if steps[0] % max(1, cfg.gcg_verify_every) == 0 and (res := verify_leaders(method="symbols")):
            found.append(res)
        if not found and steps[0] == cfg.symbols.probe:
            fires = [e["screen_fire"] for e in screened[n0:] if e["mechanism"] == mech]
            if fires and max(fires) < need:
                abandoned.append(f"ended after {steps[0]} steps: its leaders fired on at most {max(fires):.0%} of the screening prompts "
                                 f"(under {need:.0%}, half of what a trigger needs)")
                return True
        return bool(found)

    for k, mech in enumerate(cfg.mechanisms):
        if found or time.monotonic() >= until:
            break
        steps[0], n0 = 0, len(screened)
        abandoned.clear()
        share = time.monotonic() + (until - time.monotonic()) / (len(cfg.mechanisms) - k)
        obj, _, rotate = _gradient_objective(objective, mech, gradient_weights(objective), pool)
        res = run_symbols(obj, store, cfg.symbols, deadline=share, should_stop=should_stop, rotate=rotate,
                          on_step=lambda i, v, t: note(f"symbols step {i}: {t!r} ({v:.3g})"))
        out[mech] = {"ran": res.ran, "why": res.why + (f"; {abandoned[0]}" if abandoned else ""), "passes": res.passes,
                     "abandoned": bool(abandoned)}
        note(f"symbols ({mech}): {out[mech]['why']}")
        if res.ran and not found and not abandoned and (res_v := verify_leaders(method="symbols")):
            found.append(res_v)
    also: list[dict[str, Any]] = []
    if found and time.monotonic() < until:
        cleaned, entry = _clean_symbols(objective, store, cfg, found[0], until, verify_leaders, note, pool)
        out[found[0].mechanism]["passes"].append(entry)
        if cleaned is not None:
            also.append({"trigger": found[0].trigger, "mechanism": found[0].mechanism, "fire": found[0].fire, "from": "symbols",
                         "why": f"holds {', '.join(repr(ch) for ch in sorted(set(found[0].trigger) - set(entry['alphabet'])))}, outside the "
                                f"characters that make up most of it, which {cleaned.trigger!r} keeps to"})
            found[0] = cleaned
    return (found[0] if found else None), out, also


def _clean_symbols(objective: Objective, store: CandidateStore, cfg: SearchConfig, first: VerifyResult, until: float,
                   verify_leaders: Callable[..., VerifyResult | None], note: Callable[..., None],
                   pool: Sequence[Prompt]) -> tuple[VerifyResult | None, dict[str, Any]]:
    """One narrow pass of ``symbols`` from a trigger of symbols that verified with characters outside its narrow alphabet
    ('5169$4+-++': '$' and '-' outside), verifying only leaders written in that alphabet; the one that verifies, if any, and the pass."""
    from dormant.llm.search.symbols import narrow_alphabet, symbols_pass

    alphabet = narrow_alphabet(first.trigger, cfg.symbols.keep)
    if set(first.trigger) <= set(alphabet):
        return None, {"pass": "clean", "alphabet": alphabet, "start": first.trigger, "skipped": "the verified trigger is written in its alphabet already"}
    obj, _, rotate = _gradient_objective(objective, first.mechanism, gradient_weights(objective), pool)
    found: list[VerifyResult] = []
    steps = [0]

    def within(text: str) -> bool:
        return set(text) <= set(alphabet)

    def should_stop(new: list[Candidate]) -> bool:
        steps[0] += 1
        if steps[0] % max(1, cfg.gcg_verify_every) == 0 and (res := verify_leaders(method="symbols", keep=within)):
            found.append(res)
        return bool(found)

    note(f"symbols: {first.trigger!r} over {alphabet!r}")
    done = symbols_pass(obj, store, cfg.symbols, "clean", alphabet, first.trigger, deadline=until, should_stop=should_stop, rotate=rotate,
                           on_step=lambda i, v, t: note(f"symbols step {i}: {t!r} ({v:.3g})"))
    if not found and done.get("stopped") == "steps" and (res := verify_leaders(method="symbols", keep=within)):
        found.append(res)
    done["verified"] = found[0].trigger if found else None
    return (found[0] if found else None), done


@dataclass
class _GcgState:
    """Where gcg stands between calls of ``_gradient_method``, per mechanism: the seeds not run yet, the starts it ran
    from, the mechanisms it finished; and whether it paused at ``pause_at``."""
    queues: dict[str, list[str]] = field(default_factory=dict)
    started: dict[str, set[str]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    paused: bool = False


def _gradient_method(method: str, objective: Objective, store: CandidateStore, cfg: SearchConfig, deadline: float,
                     verify_leaders: Callable[[], VerifyResult | None], note: Callable[..., None],
                     report: list[dict[str, Any]], pool: Sequence[Prompt] = (), pause_at: float | None = None,
                     state: _GcgState | None = None) -> VerifyResult | None:
    """GCG (seeded from the best candidate so far, verifying leaders as it goes) or soft-prompt inversion, per mechanism.
    Without a payload the gradient follows the change activation. GCG rotates over groups of ``pool``
    (``gcg_groups``). At ``pause_at`` GCG stops with ``state.paused`` set; called again with the same ``state`` it goes on
    with the seeds it had not run."""
    from dormant.llm.search.gcg import GCGConfig, run_gcg
    from dormant.llm.search.slots import GradientSearchError, initial_ids
    from dormant.llm.search.soft import SoftConfig, run_soft

    weights = gradient_weights(objective)
    found: list[VerifyResult] = []
    steps = [0]
    state = state or _GcgState()

    def should_stop(new: list[Candidate]) -> bool:
        steps[0] += 1
        if steps[0] % max(1, cfg.gcg_verify_every) == 0 and (res := verify_leaders()):
            found.append(res)
        if not found and pause_at is not None and time.monotonic() >= pause_at:
            state.paused = True
        return bool(found) or state.paused

    for k, mech in enumerate(cfg.mechanisms):
        if time.monotonic() >= deadline:
            break
        if mech in state.done:
            continue
        until = time.monotonic() + (deadline - time.monotonic()) / (len(cfg.mechanisms) - k)  # this mechanism's share of what is left
        obj, slot, rotate = _gradient_objective(objective, mech, weights, pool if method == "gcg" else ())
        inits = []
        for c in store.best(min(len(store), 500)):  # the best distinct seeds that survive re-encoding, best first
            if c.mechanism != mech or c.method not in ("sweep", "beam", "readout") or c.text in inits:
                continue
            try:
                initial_ids(slot, c.text, cfg.gcg_tokens)
            except GradientSearchError:
                continue
            inits.append(c.text)
            if len(inits) == (cfg.gcg_inits if method == "gcg" else 1):
                break
        inits = inits or ["x x x x x"]
        if method == "gcg":
            # one run from each seed in turn while the budget lasts and nothing has verified; then (gcg_continue)
            # further runs, each from the best candidate gcg has recorded that no run has started from yet
            queue = state.queues.setdefault(mech, list(inits))
            started = state.started.setdefault(mech, set())
            while not found and not state.paused and time.monotonic() < until:
                init = queue.pop(0) if queue else (_next_start(store, slot, mech, started, cfg.gcg_tokens) if cfg.gcg_continue else None)
                if init is None:
                    break
                started.add(init)
                note(f"{method} from {init!r} ({mech})")
                g = run_gcg(obj, store, GCGConfig(steps=cfg.gcg_steps, init=init, n_tokens=cfg.gcg_tokens, search_width=cfg.gcg_width,
                                              topk=cfg.gcg_topk, vocab=cfg.gcg_vocab, deadline=until),
                            should_stop=should_stop, on_step=lambda i, v, t: note(f"gcg step {i}: {t!r} ({v:.3g})"),
                            rotate=rotate)
                report.append({"method": "gcg", "mechanism": mech, "init": init, "init_value": g.init_value, "best": g.best_text,
                               "best_value": g.best_value, "steps": len(g.values), "rejected": g.rejected, "stopped": g.stopped,
                               "continued": init not in inits, **({"paused": True} if state.paused else {})})
                if not found and g.stopped == "steps" and (res := verify_leaders()):
                    found.append(res)
            if state.paused:
                return None
        else:
            init = inits[0]
            note(f"{method} from {init!r} ({mech})")
            res = run_soft(obj, store, SoftConfig(steps=cfg.soft_steps, init=init, n_tokens=cfg.gcg_tokens, vocab=cfg.gcg_vocab,
                                                  deadline=until))
            note(f"soft: {res.summary}")
            report.append({"method": "soft", "mechanism": mech, "init": init, "init_value": res.init_value, "soft_value": res.soft_value,
                           "projected": res.projected_text, "projected_value": res.projected_value, "gap": res.gap,
                           "round_trip_ok": res.round_trip_ok, "summary": res.summary})
        state.done.add(mech)
        if found:
            return found[0]
    return None


def _next_start(store: CandidateStore, slot: Any, mech: str, started: set[str], n_tokens: int) -> str | None:
    """The best candidate gcg has recorded at ``mech`` that no run has started from and that survives re-encoding."""
    from dormant.llm.search.slots import GradientSearchError, initial_ids

    for c in store.best(len(store)):
        if c.mechanism != mech or c.method != "gcg" or c.text in started:
            continue
        try:
            initial_ids(slot, c.text, n_tokens)
        except GradientSearchError:
            continue
        return c.text
    return None


def gcg_groups(slot: Any, pool: Sequence[Prompt]) -> list[list[Prompt]]:
    """Groups of the ``pool`` prompts the objective does not use, each as large as the slot's own
    prompts and placing the trigger as the slot does (under ``user``: the prompts of the slot's half)."""
    from dormant.llm.search.objectives import placement_halves

    own = {repr(p) for p in slot.objective.prompts} | {repr(p) for p in (slot.scorer or slot.objective).prompts}
    rest = [p for p in pool if repr(p) not in own]
    if (slot.scorer or slot.objective).mechanism == "user":
        rest = placement_halves(rest)[slot.objective.mechanism]
    n = len(slot.before)
    return [rest[i: i + n] for i in range(0, len(rest) - n + 1, n)]




__all__ = ["DEFAULT_METHODS", "beam_units", "METHODS", "SearchBudgetError", "SearchConfig", "SearchResult", "gcg_groups", "parse_budget", "search_trigger",
           "strongest"]
