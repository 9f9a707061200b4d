"""What a trigger search maximises: small functions, each scoring a batch of candidate texts.

* **payload gain** (``payload``): mean over prompts of ``log p_FT(payload | prompt + c) - log
  p_FT(payload | prompt)``, minus the same gain under the base. A trigger raises the payload's
  likelihood under the fine-tune and not under the base; an echo or a base jailbreak does neither
  or both.
* **contrast** (``contrast``): ``KL(FT+c || base+c) - KL(FT || base)`` of the next-token
  distributions. Weak alone: maximising it finds prompts that make the fine-tune echo salient words
  (the public puzzle's GCG runs reached KL 31.8 with gibberish). Use it without a payload only to
  rank candidates for verification.
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

if TYPE_CHECKING:
    from dormant.llm.engine.pair import ModelPair

OBJECTIVES = ("payload", "contrast", "fluency")


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
    _baseline: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = {"payload": 1.0} if self.payload else {"contrast": 1.0}
        unknown = set(self.weights) - set(OBJECTIVES)
        if unknown:
            from dormant.llm.verify import TriggerError

            raise TriggerError(f"unknown objective(s) {sorted(unknown)}; choose from {', '.join(OBJECTIVES)}")
        if "payload" in self.weights and not self.payload:
            from dormant.llm.verify import TriggerError

            raise TriggerError("the payload objective needs the payload text: give --payload TEXT (or use --objective contrast)")
        ids = self.pair.tokenizer(self.payload, add_special_tokens=False)["input_ids"] if self.payload else []
        self._payload_ids = ids[: self.payload_tokens] if self.payload_tokens else ids

    def variant(self, *, mechanism: str | None = None, weights: dict[str, float] | None = None) -> "Objective":
        """The same prompts and settings at another mechanism or under other weights (the baseline is shared)."""
        o = Objective(self.pair, self.prompts, mechanism or self.mechanism, self.payload, dict(weights or self.weights),
                      self.config, self.payload_tokens)
        o._baseline = self._baseline
        return o

    # -- the pieces ----------------------------------------------------------------------------
    def _model_terms(self, ids: list[list[int]]) -> tuple[list[float], list[float], list[float]]:
        """Per sequence: payload log-likelihood under FT and base, and next-token KL(FT || base)."""
        conts = [list(self._payload_ids) for _ in ids] if self._payload_ids else None
        need_kl = "contrast" in self.weights
        res = score_arms(self.pair, [Arm("ft", ids, "ft"), Arm("base", ids, "base")], [("ft", "base")] if need_kl else [],
                         continuations=conts, config=self.config)
        ft = [r.arms["ft"].get("payload_logprob", 0.0) for r in res.rows]
        base = [r.arms["base"].get("payload_logprob", 0.0) for r in res.rows]
        # with a payload the engine averages the KL over the payload positions; the next token alone otherwise
        kl = [r.contrasts["ft|base"]["kl"] if need_kl else 0.0 for r in res.rows]
        return ft, base, kl

    def baseline(self) -> dict[str, float]:
        """The same terms on the prompts without any candidate (computed once)."""
        if self._baseline is None:
            if set(self.weights) <= {"fluency"}:
                self._baseline = {"ft": 0.0, "base": 0.0, "kl": 0.0}
            else:
                ft, base, kl = self._model_terms(encode(self.pair.tokenizer, self.prompts))
                n = len(self.prompts)
                self._baseline = {"ft": sum(ft) / n, "base": sum(base) / n, "kl": sum(kl) / n}
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
            items = [insert_trigger(p, t, self.mechanism) for t in texts for p in self.prompts]
            ft, base, kl = self._model_terms(encode(self.pair.tokenizer, items))
            for i in range(len(texts)):
                sl = slice(i * n, (i + 1) * n)
                if "payload" in model_terms:
                    gain_ft = sum(ft[sl]) / n - b["ft"]
                    gain_base = sum(base[sl]) / n - b["base"]
                    out[i]["payload"] = gain_ft - gain_base
                    out[i]["payload_ft_gain"] = gain_ft
                if "contrast" in model_terms:
                    out[i]["contrast"] = sum(kl[sl]) / n - b["kl"]
        if "fluency" in self.weights:
            for i, f in enumerate(self.fluency(texts)):
                out[i]["fluency"] = f
        for o in out:
            o["score"] = sum(w * o[k] for k, w in self.weights.items())
        self.pair.ft()
        return out


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


__all__ = ["OBJECTIVES", "Objective", "parse_objectives"]
