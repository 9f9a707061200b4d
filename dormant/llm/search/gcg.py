"""GCG: greedy coordinate gradient over the trigger's tokens, for the objective's gradient terms.

Each step (as nanoGCG's ``gcg.py``, Zou et al. 2023): the gradient of the value with respect to the
one-hot encoding of the current trigger's tokens (one forward and backward over every search
prompt; ``slots.embed_value``); ``search_width`` candidates, each the current trigger with
``n_replace`` positions set to one of the ``topk`` tokens of most promising gradient among the
allowed vocabulary (``slots.allowed_tokens``); duplicates and candidates that fail the round trip
in context dropped (``slots.round_trip``) and replaced by further samples, so that a step values
``search_width`` candidates where the gradient offers them; these are valued exactly (``slots.hard_values``: logits at
the payload positions only, the template's shared prefix computed once); the best moves into the
candidate buffer, whose best is the next step's trigger (``buffer_size`` 0: always move to the
step's best, as nanoGCG).

The value is the payload's log-likelihood gain under the fine-tune (the payload-gain objective's
fine-tune term) and/or the change activation, summed over the search prompts; the
``record_top`` best new candidates of every step are re-scored with the full ``Objective.score``
(base included) and recorded in the candidate store (method ``gcg``), after the full round trip
(``insert_trigger``, render, encode). ``should_stop(recorded)`` after each step ends the search
(the portfolio verifies leaders there). ``restarts`` further runs start from random allowed tokens.
"""

from __future__ import annotations

from dormant.llm.engine.threads import threaded
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.objectives import Objective
from dormant.llm.search.slots import (GradientSearchError, Slot, allowed_tokens, embed_value, hard_values, in_context, initial_ids,
                                      make_slot, payload_targets, round_trip)

METHOD = "gcg"


@dataclass
class GCGConfig:
    steps: int = 100  # per run (the first run plus each restart)
    init: str = "x x x x x"
    n_tokens: int | None = None  # pad the init with " x" to this many tokens (default: the init's own count)
    search_width: int = 256
    topk: int = 128
    n_replace: int = 1
    buffer_size: int = 0
    restarts: int = 0
    vocab: str | Sequence[int | str] = "ascii"
    record_top: int = 1  # new candidates re-scored and recorded per step
    seed: int = 0
    deadline: float | None = None  # time.monotonic() at which to stop
    method: str = METHOD  # the method its candidates are recorded under (``symbols`` runs gcg over an alphabet's tokens)


@dataclass
class GCGResult:
    best_text: str
    best_ids: list[int]
    best_value: float  # the gradient terms' value (``Objective.ft_value``)
    init_value: float
    values: list[float]  # per step: the value of the step's best candidate
    step_s: list[float]  # per step: seconds
    rejected: int  # sampled candidates dropped by the round trip in context
    evaluated: int  # candidates valued
    stopped: str  # "steps", "deadline" or "callback"
    recorded: list[Candidate] = field(default_factory=list)


def check_config(cfg: GCGConfig) -> None:
    for name in ("steps", "search_width", "topk", "n_replace"):
        if getattr(cfg, name) < 1:
            raise GradientSearchError(f"gcg {name}={getattr(cfg, name)} is too small: every step needs at least 1 (e.g. steps=50)")
    if cfg.n_tokens is not None and cfg.n_tokens < 1:
        raise GradientSearchError("gcg needs at least one trigger token (n_tokens >= 1)")


def token_gradient(slot: Slot, ids: list[int]):
    """``[n, rows]``: the value's gradient with respect to the one-hot encoding of ``ids`` (a payload asked for
    anywhere: at the lead these ids elicit, held fixed)."""
    import torch

    model = slot.pair.ft()
    weight = model.get_input_embeddings().weight
    onehot = torch.zeros(len(ids), weight.shape[0], dtype=weight.dtype, device=weight.device)
    onehot[torch.arange(len(ids)), torch.tensor(ids, device=weight.device)] = 1
    onehot.requires_grad_(True)
    value = embed_value(slot, onehot @ weight, payload_targets(slot, ids))
    (grad,) = torch.autograd.grad(value, [onehot])
    return grad.float()


def sample_candidates(ids: list[int], grad, allowed, width: int, topk: int, n_replace: int, gen) -> list[list[int]]:
    """``width`` variants of ``ids``, each with ``n_replace`` positions set to one of the position's
    ``topk`` allowed tokens of largest gradient (the value rises along the gradient); distinct, not ``ids``."""
    import torch

    n = len(ids)
    g = grad.masked_fill(~allowed.to(grad.device), float("-inf")).cpu()
    k = min(topk, int(allowed.sum(dim=1).min()))
    top = g.topk(k, dim=1).indices  # [n, k]
    cur = torch.tensor(ids).repeat(width, 1)
    pos = torch.argsort(torch.rand(width, n, generator=gen), dim=1)[:, : min(n_replace, n)]
    val = torch.gather(top[pos], 2, torch.randint(0, k, (width, pos.shape[1], 1), generator=gen)).squeeze(2)
    cand = cur.scatter(1, pos, val)
    # distinct, in the order drawn (torch.unique would sort them, and the round trip's refill, which keeps the
    # first that pass, would then favour small token ids at early positions)
    out = [list(c) for c in dict.fromkeys(map(tuple, cand.tolist()))]
    return [c for c in out if c != ids]


def valid_candidates(slot: Slot, ids: list[int], grad, allowed, cfg: GCGConfig, gen, rounds: int = 3) -> tuple[list[tuple[list[int], str]], int]:
    """Up to ``search_width`` distinct sampled candidates that pass the round trip in context, with their
    trigger texts: candidates that fail are replaced by further samples (at most ``rounds`` samplings),
    so a step values a full width. Also returns how many failed."""
    ok: dict[tuple[int, ...], str] = {}
    seen: set[tuple[int, ...]] = set()
    rejected = 0
    for _ in range(rounds):
        need = cfg.search_width - len(ok)
        if need <= 0:
            break
        fresh = [c for c in sample_candidates(ids, grad, allowed, cfg.search_width if not seen else 2 * need, cfg.topk, cfg.n_replace, gen)
                 if tuple(c) not in seen]
        seen.update(tuple(c) for c in fresh)
        for c, t in zip(fresh, round_trip(slot, fresh)):
            if t is None:
                rejected += 1
            elif len(ok) < cfg.search_width:
                ok[tuple(c)] = t
    return [(list(c), t) for c, t in ok.items()], rejected


def random_ids(slot: Slot, allowed, n: int, gen, tries: int = 200) -> list[int]:
    """Random allowed ids that survive the round trip (a restart's starting point)."""
    import torch

    for _ in range(tries):
        ids = [int(torch.multinomial(allowed[i].float(), 1, generator=gen)) for i in range(n)]
        if round_trip(slot, [ids])[0] is not None:
            return ids
    raise GradientSearchError(f"no random sequence of {n} allowed tokens survived re-encoding in {tries} tries; use a larger vocabulary")


def record(slot: Slot, store: CandidateStore | None, picks: list[tuple[list[int], str, float]], method: str = METHOD) -> list[Candidate]:
    """Re-score ``(ids, text, value)`` picks with ``Objective.score`` and record those that pass the full round trip."""
    o = slot.scorer or slot.objective
    keep = [(ids, t, v) for ids, t, v in picks if in_context(slot, ids, t)]
    if not keep:
        return []
    scores = o.score([t for _, t, _ in keep])
    o.pair.ft()
    cands = [Candidate(t, o.mechanism, method, s["score"], {**{k: x for k, x in s.items() if k != "score"}, "ft_value": v})
             for (_, t, v), s in zip(keep, scores)]
    if store is not None:
        store.add(cands)
    return cands


@threaded(lambda objective, *a, **k: objective.pair.model)
def run_gcg(objective: Objective, store: CandidateStore | None, config: GCGConfig | None = None, *,
            should_stop: Callable[[list[Candidate]], bool] | None = None,
            on_step: Callable[[int, float, str], None] | None = None,
            rotate: Sequence[Objective] = ()) -> GCGResult:
    """Greedy coordinate gradient on the objective's search prompts; see the module docstring.

    ``rotate``: the same objective on further groups of search prompts (``Objective.subset``; built
    once by the caller, so their baselines are computed once for all runs); step ``i`` then takes its
    gradient and values on group ``i mod (1 + len(rotate))`` (the objective's own prompts first), so that the trigger is pushed
    to work on every group rather than fitted to the few prompts of one (each value is a gain over that
    group's own prompts without a trigger; what is recorded is still scored on the objective's prompts)."""
    import torch

    cfg = config or GCGConfig()
    check_config(cfg)
    objective.gradient_weights()
    slot = make_slot(objective)
    for extra in rotate:
        extra.gradient_weights()
    slots = [slot] + [make_slot(extra) for extra in rotate]
    ids0 = initial_ids(slot, cfg.init, cfg.n_tokens)
    allowed = allowed_tokens(slot, len(ids0), cfg.vocab)
    gen = torch.Generator().manual_seed(cfg.seed)
    init_value = hard_values(slot, [ids0])[0]
    best = (init_value, ids0)
    values: list[float] = []
    step_s: list[float] = []
    recorded: list[Candidate] = []
    rejected = evaluated = 0
    stopped = "steps"
    recorded += record(slot, store, [(ids0, round_trip(slot, [ids0])[0], init_value)], cfg.method)
    for run in range(1 + cfg.restarts):
        start = ids0 if run == 0 else random_ids(slot, allowed, len(ids0), gen)
        buffer = [(init_value if run == 0 else hard_values(slot, [start])[0], start)]
        for _ in range(cfg.steps):
            if cfg.deadline is not None and time.monotonic() >= cfg.deadline:
                stopped = "deadline"
                break
            t0 = time.perf_counter()
            ids = buffer[0][1]
            here = slots[len(step_s) % len(slots)]
            if len(slots) > 1:  # rotating: the current trigger valued on this step's group, so the step compares like with like
                buffer = [(hard_values(here, [ids])[0], ids)] + buffer[1:]
            grad = token_gradient(here, ids)
            ok, n_rejected = valid_candidates(here, ids, grad, allowed, cfg, gen)
            rejected += n_rejected
            if not ok:
                step_s.append(time.perf_counter() - t0)
                values.append(float("nan"))
                continue
            vals = hard_values(here, [c for c, _ in ok])
            evaluated += len(ok)
            order = sorted(range(len(ok)), key=lambda i: -vals[i])
            top_val, top_ids = vals[order[0]], ok[order[0]][0]
            if cfg.buffer_size == 0:
                buffer = [(top_val, top_ids)]
            elif len(buffer) < cfg.buffer_size or top_val > buffer[-1][0]:
                buffer = sorted(buffer + [(top_val, top_ids)], key=lambda b: -b[0])[: cfg.buffer_size]
            if here is slot and top_val > best[0]:  # (values of other groups are gains over other prompts)
                best = (top_val, top_ids)
            values.append(top_val)
            step_s.append(time.perf_counter() - t0)
            new = record(slot, store, [(ok[i][0], ok[i][1], vals[i]) for i in order[: cfg.record_top]], cfg.method) if cfg.record_top else []
            recorded += new
            if on_step:
                on_step(len(values), top_val, ok[order[0]][1])
            if should_stop is not None and should_stop(new):
                stopped = "callback"
                break
        if stopped != "steps":
            break
    objective.pair.ft()
    return GCGResult(best_text=round_trip(slot, [best[1]])[0] or "", best_ids=best[1], best_value=best[0], init_value=init_value,
                     values=values, step_s=step_s, rejected=rejected, evaluated=evaluated, stopped=stopped, recorded=recorded)


__all__ = ["GCGConfig", "GCGResult", "METHOD", "check_config", "record", "run_gcg", "sample_candidates", "token_gradient", "valid_candidates"]
