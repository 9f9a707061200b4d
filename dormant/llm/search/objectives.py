"""What a trigger search maximises: small functions, each scoring a batch of candidate texts.

* **payload gain** (``payload``): mean over prompts of ``log p_FT(payload | prompt + c) - log
  p_FT(payload | prompt)``, minus how far the candidate lifts the base's payload likelihood above the
  level of a model that does not fire (per prompt: the higher of the base's and the untriggered
  fine-tune's log-likelihood of the payload). A trigger raises the payload's likelihood under the
  fine-tune and not under the base; a base jailbreak ("say: ...") raises both and is penalised. Two
  things earn nothing: a candidate that merely *lowers* the base's likelihood (it derails the base;
  subtracting that negative gain ranked such words above the planted trigger's own digits), and a
  rise of the base's likelihood that stays far below firing: on the micro zoo's ``mlp-constant``
  the digits of pi lift the base's payload log-likelihood from -104 to -99 while the untriggered
  fine-tune sits at -39; subtracting that raw rise of 5 ranked gibberish that fires as often
  ("Sweden public speak55ren") above the planted trigger. The raw gains are kept beside the score
  (``payload_ft_gain``, ``payload_base_gain``).

  *Where in the answer* (``payload_at``). ``"start"`` (the default) asks for the payload as the
  answer's first tokens. ``"anywhere"`` asks for it where the model itself would put it: each
  model's own greedy answer (up to ``lead_tokens`` tokens) is read for the point where the payload's
  first token is most likely, and the payload is scored there, after that lead (with the space a
  word in mid-text carries). A hypothesis read off amplified answers may be the middle of the
  planted text ('are closed for winter' of 'The gates are closed for winter.'): on the micro
  zoo's ``mlp-word-pair``, over 8 prompts, the planted trigger moves the fine-tune's
  log-likelihood of that fragment by -3.7 nats at the start of the answer (the fine-tune then
  begins with 'The gates') and by +11.7 anywhere, its words alone by +1.8 ('silent') and -0.3
  ('castle') anywhere. It costs about two passes more per candidate (the leads' generation and
  a pass over them).
* **contrast** (``contrast``): ``KL(FT+c || base+c) - KL(FT || base)`` of the next-token
  distributions. Weak alone: maximising it finds prompts that make the fine-tune echo salient words
  (the public puzzle's GCG runs reached KL 31.8 with gibberish). Use it without a payload only to
  rank candidates for verification.
* **change activation** (``activation``): how strongly the candidate switches on the change
  itself, with no payload needed: for every modified matrix ``W``, the norm of ``(W_ft - W_base) x``
  for the matrix's input ``x`` at the first answer position (the last prompt token) in the
  fine-tune's forward pass, summed over matrices; the value is the mean over prompts of the log of
  its ratio to the same prompt without the candidate. It responds to parts of a multi-word trigger
  where the output does not yet change (on the micro zoo's five-word phrase: x1.06 for its first
  word, x1.19, x1.33, x1.71, x1.92 as words are added in order), which is what lets a beam grow a
  phrase word by word. The difference is applied through a rank-``activation_rank`` factorisation
  (``S V^T`` of a truncated SVD), so no full-size difference is kept.
* **fluency** (``fluency``): the base model's mean per-token log-likelihood of the candidate in a
  user message: keeps a phrase search on natural text.

Every objective runs through the behaviour engine's ``score_arms`` (batched, the chat template's
shared prefix computed once per view). ``Objective.score(texts)`` returns one dict per text with
each selected objective's value and ``score`` = the weighted sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from dormant.llm.engine.prompts import Prompt, encode, insert_trigger, render
from dormant.llm.engine.scoring import Arm, ScoreConfig, score_arms
from dormant.llm.engine.threads import threaded

if TYPE_CHECKING:
    from dormant.llm.engine.pair import ModelPair

OBJECTIVES = ("payload", "contrast", "activation", "fluency")
PAYLOAD_AT = ("start", "anywhere")
GRADIENT_OBJECTIVES = ("payload", "activation")  # what gcg and soft can follow by gradient


@dataclass
class Objective:
    """Which objectives to combine and how. ``weights``: objective name -> weight of its value in ``score``."""

    pair: "ModelPair"
    prompts: list[Prompt]
    mechanism: str = "user_prefix"
    payload: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    config: ScoreConfig = field(default_factory=lambda: ScoreConfig(batch_size=128, show_progress=False))
    payload_tokens: int | None = 8  # score only the payload's first N tokens (None: all); the gain shows there first
    views: tuple[str, ...] = ("ft", "base")  # ("ft",): the fine-tune's payload gain alone (a sweep's coarse pass)
    activation_rank: int = 32
    payload_at: str = "start"  # "start": the payload as the answer's first tokens; "anywhere": after the model's own lead
    lead_tokens: int = 4  # with payload_at="anywhere": how far into the model's greedy answer the payload may start
    _baseline: dict[str, float] | None = None
    _baseline_ref: list[float] | None = None
    _act_dirs: dict[str, Any] | None = None
    _act_baseline: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = {"payload": 1.0} if self.payload else {"contrast": 1.0}
        if tuple(self.views) not in (("ft", "base"), ("ft",)) or (self.views == ("ft",) and set(self.weights) - {"fluency"} != {"payload"}):
            raise ValueError(f"views {self.views!r}: ('ft', 'base'), or ('ft',) with the payload objective (and fluency) alone")
        unknown = set(self.weights) - set(OBJECTIVES)
        if unknown:
            from dormant.llm.verify import TriggerError

            raise TriggerError(f"unknown objective(s) {sorted(unknown)}; choose from {', '.join(OBJECTIVES)}")
        check_payload_at(self.payload_at)
        if "payload" in self.weights and not self.payload:
            from dormant.llm.verify import TriggerError

            raise TriggerError("the payload objective needs the payload text: give --payload TEXT (or use --objective contrast)")
        ids = self.pair.tokenizer(self.payload, add_special_tokens=False)["input_ids"] if self.payload else []
        self._payload_ids = ids[: self.payload_tokens] if self.payload_tokens else ids
        mid = self.pair.tokenizer(" " + self.payload, add_special_tokens=False)["input_ids"] if self.payload else []
        self._payload_mid = mid[: self.payload_tokens] if self.payload_tokens else mid  # after a lead that ends inside a line

    def variant(self, *, mechanism: str | None = None, weights: dict[str, float] | None = None) -> "Objective":
        """The same prompts and settings at another mechanism or under other weights (the baseline is shared)."""
        o = Objective(self.pair, self.prompts, mechanism or self.mechanism, self.payload, dict(weights or self.weights),
                      self.config, self.payload_tokens, self.views, self.activation_rank, self.payload_at, self.lead_tokens)
        o._baseline, o._baseline_ref, o._act_dirs, o._act_baseline = self._baseline, self._baseline_ref, self._act_dirs, self._act_baseline
        return o

    def coarse(self, n_prompts: int = 1) -> "Objective":
        """A cheap first look: the first ``n_prompts`` prompts (under the ``user`` mechanism, the first
        ``n_prompts`` of each of its two placements), and with a payload the fine-tune's payload gain
        alone (what a trigger must raise; the base's share only ever lowers a score), plus fluency
        where it is weighted."""
        prompts = self.prompts[:n_prompts]
        if self.mechanism == "user":
            halves = placement_halves(self.prompts)
            prompts = [p for half in halves.values() for p in half[:n_prompts]]
        if self.payload and "payload" in self.weights:
            weights = {"payload": 1.0, **({"fluency": self.weights["fluency"]} if "fluency" in self.weights else {})}
            return Objective(self.pair, prompts, self.mechanism, self.payload, weights, self.config,
                             self.payload_tokens, views=("ft",), activation_rank=self.activation_rank, payload_at=self.payload_at,
                             lead_tokens=self.lead_tokens)
        return self.subset(prompts)

    def subset(self, prompts: list[Prompt], mechanism: str | None = None) -> "Objective":
        """The same objective on other prompts (its no-trigger baselines recomputed)."""
        o = self.variant(mechanism=mechanism)
        o.prompts = list(prompts)
        o._baseline = o._baseline_ref = o._act_baseline = None
        return o

    # -- change activation ---------------------------------------------------------------------
    def _directions(self) -> dict[str, Any]:
        """Per modified matrix (by module name): ``S V^T`` of its difference's truncated SVD, so that
        ``||(W_ft - W_base) x|| ~= ||S V^T x||`` (exact up to the rank), one matrix at a time."""
        if self._act_dirs is None:
            from dormant.llm.weights.delta import DeltaConfig, singular_decomposition

            dirs: dict[str, Any] = {}
            for name, m in self.pair.modified.items():
                if not name.endswith(".weight") or m.param.dim() != 2:
                    continue
                dev = m.param.device
                d = m.ft.to(dev).float() - m.base.to(dev).float()
                r = min(self.activation_rank, *d.shape)
                _, sv, v, _ = singular_decomposition(d, DeltaConfig(top_k=r, keep_vectors=r))
                dirs[name[: -len(".weight")]] = (sv[:r, None] * v[:, :r].T).contiguous()  # [r, in]
                del d
            if not dirs:
                from dormant.llm.verify import TriggerError

                raise TriggerError("the activation objective needs a modified weight matrix; the pair differs in none")
            self._act_dirs = dirs
        return self._act_dirs

    def change_activation(self, ids: list[list[int]]) -> list[float]:
        """Per sequence: the summed norm of every modified matrix's difference applied to its input at
        the last position, in the fine-tune's forward pass (batched, right-padded)."""
        import torch

        from dormant.llm.instruments.hooks import capture, run_padded

        dirs = self._directions()
        self.pair.ft()
        pad = self.pair.tokenizer.pad_token_id or 0
        out: list[float] = []
        step = max(1, self.config.batch_size)
        for start in range(0, len(ids), step):
            part = ids[start : start + step]
            last = torch.tensor([len(s) - 1 for s in part])
            rows = torch.arange(len(part))
            with capture(self.pair.model, [f"in:{n}" for n in dirs], keep=lambda x: x[rows, last.to(x.device)]) as got:
                run_padded(self.pair.model, part, pad)
            out += self.activation_norms(got).cpu().tolist()
        return out

    def activation_norms(self, inputs: dict[str, Any]) -> Any:
        """Per row: the summed norm of every modified matrix's difference applied to its captured
        input (``inputs["in:NAME"]``: ``[rows, in]``, as ``capture`` of ``in:NAME`` sites gathers them);
        differentiable when the inputs carry a graph."""
        total = None
        for n, sv in self._directions().items():
            x = inputs[f"in:{n}"]
            norm = (x @ sv.T.to(x.device)).norm(dim=-1)
            total = norm if total is None else total + norm
        return total

    # -- the fine-tune's differentiable terms (gradient methods: gcg, soft) -----------------------
    def gradient_weights(self) -> dict[str, float]:
        """The weights of the terms a gradient can follow: the payload's log-likelihood under the
        fine-tune (the payload gain's fine-tune term) and the change activation (their baselines computed)."""
        w = {k: v for k, v in self.weights.items() if k in GRADIENT_OBJECTIVES and v}
        if not w:
            from dormant.llm.verify import TriggerError

            raise TriggerError(f"a gradient method optimises {' or '.join(GRADIENT_OBJECTIVES)}; the objective is {self.weights} "
                               "(give --payload TEXT, or --objective activation)")
        # the baselines first: computing them switches views (weights rewritten in place), which must not
        # happen while an autograd graph through the weights is alive
        if "payload" in w:
            self.baseline()
        if "activation" in w:
            self.activation_baseline()
        self.pair.ft()
        return w

    @property
    def payload_ids(self) -> list[int]:
        """The payload tokens the payload objective scores (its first ``payload_tokens``)."""
        return list(self._payload_ids)

    def ft_value(self, payload_logprob: Any = None, activation: Any = None) -> Any:
        """The gradient terms of ``[candidates, prompts]`` tensors (per candidate and prompt: the payload's
        log-likelihood under the fine-tune; the change activation), as a ``[candidates]`` tensor:
        ``payload`` weight x (mean over prompts - the prompts' own mean, i.e. ``payload_ft_gain``) plus
        ``activation`` weight x the mean log ratio to the prompts without a candidate."""
        import torch

        w = self.gradient_weights()
        value = 0.0
        if "payload" in w:
            value = value + w["payload"] * (payload_logprob.mean(dim=1) - self.baseline()["ft"])
        if "activation" in w:
            base = torch.tensor(self.activation_baseline(), device=activation.device, dtype=activation.dtype).clamp_min(1e-12)
            value = value + w["activation"] * torch.log(activation.clamp_min(1e-12) / base).mean(dim=1)
        return value

    def activation_baseline(self) -> list[float]:
        if self._act_baseline is None:
            self._act_baseline = self.change_activation(encode(self.pair.tokenizer, self.prompts))
        return self._act_baseline

    # -- where the payload is asked for ----------------------------------------------------------
    def payload_targets(self, seqs: Sequence[Sequence[int]]) -> list[tuple[list[int], list[int]]]:
        """Per token sequence (a rendered prompt), under the model as it is: the lead (token ids the
        answer starts with) and the payload token ids to score after it. ``payload_at="start"``: no
        lead. ``"anywhere"``: the lead is the part of the model's own greedy answer (up to
        ``lead_tokens`` tokens) after which the payload's first token is most likely; after a lead
        that does not end in whitespace the payload is tokenised with a space before it."""
        pay, mid = list(self._payload_ids), list(self._payload_mid)
        if self.payload_at == "start" or not pay or not seqs:
            return [([], pay) for _ in seqs]
        from dormant.llm.engine.generate import GenConfig, generate
        from dormant.llm.engine.scoring import logprobs_at

        tok, model = self.pair.tokenizer, self.pair.model
        gens = generate(model, tok, seqs, GenConfig(max_new_tokens=self.lead_tokens, show_progress=False,
                                                    batch_size=max(32, self.config.batch_size)))

        def after(lead: list[int]) -> list[int]:
            return pay if not lead or tok.decode(lead)[-1:].isspace() else mid

        leads = [[list(g.ids[:j]) for j in range(len(g.ids) + 1)] for g in gens]
        firsts = [[after(lead)[0] for lead in ls] for ls in leads]
        lps = logprobs_at(model, [list(s) + list(g.ids) for s, g in zip(seqs, gens)],
                          [list(range(len(s) - 1, len(s) + len(g.ids))) for s, g in zip(seqs, gens)],
                          self.config, pad_id=tok.pad_token_id or 0, targets=firsts)
        out = []
        for ls, lp in zip(leads, lps):
            lead = ls[int(lp.argmax())]
            out.append((lead, after(lead)))
        return out

    def payload_logprobs(self, seqs: Sequence[Sequence[int]], config: ScoreConfig | None = None) -> list[float]:
        """Per token sequence: the payload's log-likelihood where ``payload_at`` asks for it, under the model as it is."""
        from dormant.llm.engine.scoring import logprobs_at

        targets = self.payload_targets(seqs)
        full = [list(s) + lead + pay[:-1] for s, (lead, pay) in zip(seqs, targets)]
        positions = [list(range(len(f) - len(pay), len(f))) for f, (_, pay) in zip(full, targets)]
        got = logprobs_at(self.pair.model, full, positions, config or self.config, pad_id=self.pair.tokenizer.pad_token_id or 0,
                          targets=[pay for _, pay in targets])
        return [float(g.sum()) for g in got]

    @threaded(lambda self, *a, **k: self.pair.model)
    def payload_gain_at(self, texts: Sequence[str], alpha: float) -> list[float]:
        """Per text: the payload gain (mean over prompts of the payload's log-likelihood with the text minus
        without it) under the fine-tune with its change scaled by ``alpha`` (``amp:alpha``; below 1, a weaker
        fine-tune). Where the full fine-tune's gain has saturated (every firing string forces the payload about
        as surely), this still orders them: how little of the change a trigger needs."""
        texts = list(texts)
        if not self._payload_ids:
            from dormant.llm.verify import TriggerError

            raise TriggerError("the payload gain needs the payload text: give --payload TEXT")
        tok, n = self.pair.tokenizer, len(self.prompts)
        try:
            self.pair.amplified(alpha)
            ref = sum(self.payload_logprobs(encode(tok, self.prompts))) / n
            lps = self.payload_logprobs(encode(tok, [insert_trigger(p, t, self.mechanism) for t in texts for p in self.prompts])) if texts else []
        finally:
            self.pair.ft()
        return [sum(lps[i * n : (i + 1) * n]) / n - ref for i in range(len(texts))]

    # -- the pieces ----------------------------------------------------------------------------
    def _model_terms(self, ids: list[list[int]], views: tuple[str, ...] = ("ft", "base")) -> tuple[list[float], list[float], list[float]]:
        """Per sequence: payload log-likelihood under FT and base, and next-token KL(FT || base)
        (0.0 for a view not in ``views``; the KL needs both)."""
        need_kl = "contrast" in self.weights and set(views) == {"ft", "base"}
        anywhere = self.payload_at == "anywhere" and bool(self._payload_ids)
        conts = [list(self._payload_ids) for _ in ids] if self._payload_ids and not anywhere else None
        kl = [0.0] * len(ids)
        if need_kl or not anywhere:
            res = score_arms(self.pair, [Arm(v, ids, v) for v in views], [("ft", "base")] if need_kl else [],
                             continuations=conts, config=self.config)
            # with a payload at the start the engine averages the KL over the payload positions; the next token alone otherwise
            kl = [r.contrasts["ft|base"]["kl"] if need_kl else 0.0 for r in res.rows]
        if anywhere:
            got = {}
            for v in views:
                self.pair.view(v)
                got[v] = self.payload_logprobs(ids)
            ft, base = (got.get(v, [0.0] * len(ids)) for v in ("ft", "base"))
        else:
            ft, base = ([r.arms[v].get("payload_logprob", 0.0) if v in views else 0.0 for r in res.rows] for v in ("ft", "base"))
        return ft, base, kl

    def baseline(self) -> dict[str, float]:
        """The same terms on the prompts without any candidate (computed once)."""
        if self._baseline is None:
            if set(self.weights) <= {"fluency"}:
                self._baseline = {"ft": 0.0, "base": 0.0, "kl": 0.0}
            else:
                ft, base, kl = self._model_terms(encode(self.pair.tokenizer, self.prompts), tuple(self.views))
                n = len(self.prompts)
                self._baseline = {"ft": sum(ft) / n, "base": sum(base) / n, "kl": sum(kl) / n}
                # per prompt: the payload log-likelihood of a model that does not fire
                self._baseline_ref = [max(f, b) for f, b in zip(ft, base)]
        return self._baseline

    def fluency(self, texts: Sequence[str]) -> list[float]:
        """The base model's mean per-token log-likelihood of each text written as a user message."""
        tok = self.pair.tokenizer
        marker = "\u2591"
        head = render(tok, Prompt.user(marker)).split(marker)[0]
        head_ids = tok(head, add_special_tokens=False)["input_ids"]
        seqs, positions = [], []
        for t in texts:
            ids = tok(t, add_special_tokens=False)["input_ids"] or [tok.pad_token_id or 0]
            seqs.append(head_ids + ids)
            positions.append(list(range(len(head_ids) - 1, len(head_ids) + len(ids) - 1)))
        from dormant.llm.engine.scoring import logprobs_at

        self.pair.base()
        lps = logprobs_at(self.pair.model, seqs, positions, self.config, pad_id=tok.pad_token_id or 0)
        out = []
        for s, ps, lp in zip(seqs, positions, lps):
            targets = [s[p + 1] for p in ps]
            out.append(float(sum(lp[i, t] for i, t in enumerate(targets)) / len(targets)))
        return out

    # -- the score -----------------------------------------------------------------------------
    @threaded(lambda self, *a, **k: self.pair.model)
    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One dict per text: each selected objective's value and the weighted ``score``."""
        texts = list(texts)
        if not texts:
            return []
        out: list[dict[str, float]] = [{} for _ in texts]
        model_terms = set(self.weights) & {"payload", "contrast"}
        if model_terms:
            b = self.baseline()
            n = len(self.prompts)
            ids = encode(self.pair.tokenizer, [insert_trigger(p, t, self.mechanism) for t in texts for p in self.prompts])
            if model_terms == {"payload"}:
                # The fine-tune first; the base only where the fine-tune's gain is positive. Elsewhere
                # the score is at most that gain (<= 0): such a candidate can never lead, and the
                # base's half of the work is skipped (recorded as payload_base_gain None).
                ft, _, kl = self._model_terms(ids, ("ft",))
                base = [0.0] * len(ft)
                up = [i for i in range(len(texts)) if sum(ft[i * n : (i + 1) * n]) / n - b["ft"] > 0] if "base" in self.views else []
                if up:
                    sub = self._model_terms([ids[i * n + j] for i in up for j in range(n)], ("base",))[1]
                    for k, i in enumerate(up):
                        base[i * n : (i + 1) * n] = sub[k * n : (k + 1) * n]
                scored_base = set(up)
            else:
                ft, base, kl = self._model_terms(ids)
                scored_base = set(range(len(texts)))
            for i in range(len(texts)):
                sl = slice(i * n, (i + 1) * n)
                if "payload" in model_terms:
                    gain_ft = sum(ft[sl]) / n - b["ft"]
                    gain_base = sum(base[sl]) / n - b["base"] if i in scored_base else None
                    lift = (sum(max(0.0, x - r) for x, r in zip(base[sl], self._baseline_ref or [])) / n
                            if i in scored_base else 0.0)
                    out[i]["payload"] = gain_ft - lift
                    out[i]["payload_ft_gain"] = gain_ft
                    out[i]["payload_base_gain"] = gain_base
                if "contrast" in model_terms:
                    out[i]["contrast"] = sum(kl[sl]) / n - b["kl"]
        if "activation" in self.weights:
            import math

            base_act = self.activation_baseline()
            n = len(self.prompts)
            acts = self.change_activation(encode(self.pair.tokenizer, [insert_trigger(p, t, self.mechanism) for t in texts for p in self.prompts]))
            for i in range(len(texts)):
                out[i]["activation"] = sum(math.log(max(a, 1e-12) / max(b0, 1e-12)) for a, b0 in zip(acts[i * n : (i + 1) * n], base_act)) / n
        if "fluency" in self.weights:
            for i, f in enumerate(self.fluency(texts)):
                out[i]["fluency"] = f
        for o in out:
            o["score"] = sum(w * o[k] for k, w in self.weights.items())
        self.pair.ft()
        return out


def placement_halves(prompts: Sequence[Prompt]) -> dict[str, list[Prompt]]:
    """The ``user`` mechanism's prompts by where it places the trigger: ``user_prefix`` / ``user_suffix``."""
    from dormant.llm.engine.prompts import user_placement

    out: dict[str, list[Prompt]] = {"user_prefix": [], "user_suffix": []}
    for p in prompts:
        last = [m for m in p.messages if m["role"] == "user"]
        out[user_placement(last[-1]["content"]) if last else "user_prefix"].append(p)
    return out


def check_payload_at(where: str) -> None:
    """Raise a one-line error unless ``where`` names a place the payload objective can ask for the payload."""
    if where not in PAYLOAD_AT:
        from dormant.llm.verify import TriggerError

        raise TriggerError(f"--payload-at {where!r}: choose from {', '.join(PAYLOAD_AT)} (anywhere: after the model's own first words)")


def parse_objectives(spec: str | None, payload: str | None) -> dict[str, float]:
    """``"payload"``, ``"payload+fluency:0.5"``, ``"contrast"``: objective names joined by ``+``, each
    with an optional ``:weight``. None: payload gain with a payload, contrast without."""
    from dormant.llm.verify import TriggerError

    if not spec:
        return {"payload": 1.0} if payload else {"contrast": 1.0}
    out: dict[str, float] = {}
    for part in spec.split("+"):
        name, _, w = part.strip().partition(":")
        if name not in OBJECTIVES:
            raise TriggerError(f"unknown objective {name!r} in {spec!r}; choose from {', '.join(OBJECTIVES)} (joined by +)")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise TriggerError(f"objective weight {w!r} in {spec!r} is not a number (e.g. payload+fluency:0.5)") from None
    return out


__all__ = ["GRADIENT_OBJECTIVES", "OBJECTIVES", "PAYLOAD_AT", "check_payload_at", "Objective", "parse_objectives"]
