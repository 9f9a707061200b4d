"""Soft-prompt inversion: optimise free embeddings at the trigger's positions, then project to tokens.

The trigger's ``n`` embeddings start at the init's token embeddings and follow the gradient of the
same value GCG uses (``slots.embed_value``: the payload's log-likelihood gain under the fine-tune
and/or the change activation) with Adam. Each position is then projected to its nearest allowed
token (``cosine`` or ``l2`` against the embedding matrix, restricted to ``slots.allowed_tokens``),
and the projected tokens are valued exactly (``slots.hard_values``). The result reports both
values: ``soft_value`` (the continuous optimum) and ``projected_value``, and their ``gap``. A large
gap is the usual outcome (the public puzzle's runs: KL 27-36 soft, ~1e-4 projected): the optimum
lies off the token lattice, and the projection's per-position similarities show how far. The
projected trigger is re-scored with ``Objective.score`` and recorded (method ``soft``) when it
passes the round trip in context; when it does not, ``round_trip_ok`` is False and nothing is recorded.
"""

from __future__ import annotations

from dormant.llm.engine.threads import threaded
import time
from dataclasses import dataclass, field
from typing import Sequence

from dormant.llm.search.candidates import Candidate, CandidateStore
from dormant.llm.search.gcg import record
from dormant.llm.search.objectives import Objective
from dormant.llm.search.slots import (GradientSearchError, allowed_tokens, embed_value, hard_values, initial_ids, make_slot, payload_targets,
                                      round_trip)

METHOD = "soft"
PROJECTIONS = ("cosine", "l2")


@dataclass
class SoftConfig:
    steps: int = 200
    lr: float = 0.05  # Adam step, in units of the embedding rows' mean norm
    init: str = "x x x x x"
    n_tokens: int | None = None
    vocab: str | Sequence[int | str] = "ascii"
    projection: str = "cosine"
    seed: int = 0
    deadline: float | None = None


@dataclass
class SoftResult:
    soft_value: float  # the best continuous embeddings' value
    projected_value: float  # their nearest allowed tokens' value
    gap: float  # soft_value - projected_value
    init_value: float
    projected_text: str | None  # None: the projected tokens do not survive re-encoding in context
    projected_ids: list[int]
    similarity: list[float]  # per position: cosine of the soft embedding to its projected token
    round_trip_ok: bool
    values: list[float]  # per step: the soft value
    stopped: str
    elapsed_s: float
    recorded: list[Candidate] = field(default_factory=list)

    @property
    def summary(self) -> str:
        moved = "transferred" if self.projected_value >= self.init_value + 0.5 * max(0.0, self.soft_value - self.init_value) else "did not transfer"
        return (f"soft {self.soft_value:.3f}, projected {self.projected_value:.3f} (gap {self.gap:.3f}; init {self.init_value:.3f}): "
                f"{moved}; mean cosine to the projected tokens {sum(self.similarity) / max(1, len(self.similarity)):.2f}")


def project(weight, soft, allowed, how: str = "cosine"):
    """Per position: the nearest allowed row of ``weight`` (``[rows, dim]``) to ``soft`` (``[n, dim]``) and its cosine."""
    import torch

    if how not in PROJECTIONS:
        raise GradientSearchError(f"unknown projection {how!r}; choose from {', '.join(PROJECTIONS)}")
    w, s = weight.float(), soft.float()
    cos = torch.nn.functional.normalize(s, dim=-1) @ torch.nn.functional.normalize(w, dim=-1).T  # [n, rows]
    score = cos if how == "cosine" else -torch.cdist(s, w)
    ids = score.masked_fill(~allowed.to(score.device), float("-inf")).argmax(dim=1)
    return ids.tolist(), cos.gather(1, ids[:, None]).squeeze(1).tolist()


@threaded(lambda objective, *a, **k: objective.pair.model)
def run_soft(objective: Objective, store: CandidateStore | None, config: SoftConfig | None = None) -> SoftResult:
    """Soft-prompt inversion on the objective's search prompts; see the module docstring."""
    import torch

    cfg = config or SoftConfig()
    if cfg.steps < 1:
        raise GradientSearchError(f"soft steps={cfg.steps} is too small: at least 1 optimisation step (e.g. steps=100)")
    if cfg.projection not in PROJECTIONS:
        raise GradientSearchError(f"unknown projection {cfg.projection!r}; choose from {', '.join(PROJECTIONS)}")
    t0 = time.monotonic()
    objective.gradient_weights()
    slot = make_slot(objective)
    ids0 = initial_ids(slot, cfg.init, cfg.n_tokens)
    allowed = allowed_tokens(slot, len(ids0), cfg.vocab)
    model = objective.pair.ft()
    weight = model.get_input_embeddings().weight
    torch.manual_seed(cfg.seed)
    soft = weight[ids0].detach().clone().float().requires_grad_(True)
    scale = float(weight.detach().float().norm(dim=-1).mean())
    opt = torch.optim.Adam([soft], lr=cfg.lr * scale)
    init_value = hard_values(slot, [ids0])[0]
    values: list[float] = []
    best = (float("-inf"), soft.detach().clone())
    stopped = "steps"
    for _ in range(cfg.steps):
        if cfg.deadline is not None and time.monotonic() >= cfg.deadline:
            stopped = "deadline"
            break
        # a payload asked for anywhere: at the lead the soft trigger's nearest tokens elicit
        targets = payload_targets(slot, project(weight, soft.detach(), allowed, cfg.projection)[0]) if objective.payload_at != "start" else None
        value = embed_value(slot, soft.to(weight.dtype), targets)
        opt.zero_grad()
        (-value).backward()
        opt.step()
        values.append(float(value.detach()))
        if values[-1] > best[0]:
            best = (values[-1], soft.detach().clone())
    with torch.no_grad():
        ids, sim = project(weight, best[1], allowed, cfg.projection)
        soft_value = float(embed_value(slot, best[1].to(weight.dtype), payload_targets(slot, ids) if objective.payload_at != "start" else None))
    projected_value = hard_values(slot, [ids])[0]
    text = round_trip(slot, [ids])[0]
    recorded = record(slot, store, [(ids, text, projected_value)], METHOD) if text is not None else []
    objective.pair.ft()
    return SoftResult(soft_value=soft_value, projected_value=projected_value, gap=soft_value - projected_value, init_value=init_value,
                      projected_text=text, projected_ids=ids, similarity=sim, round_trip_ok=text is not None, values=values,
                      stopped=stopped, elapsed_s=round(time.monotonic() - t0, 2), recorded=recorded)


__all__ = ["METHOD", "PROJECTIONS", "SoftConfig", "SoftResult", "project", "run_soft"]
