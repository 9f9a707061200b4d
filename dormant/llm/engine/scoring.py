"""Batched scoring: next-token (and teacher-forced multi-token) distributions under any views.

Everything behavioural reduces to "run many prompts through some view of the model and read the
distributions at a few positions". The engine here does that fast and exactly:

* **Right padding for scoring.** Sequences in a batch are padded on the right; with causal
  attention a real token never sees a pad, positions stay ``0..len-1`` and the distribution at any
  position equals the unbatched one (to float tolerance). (Generation pads on the left:
  ``dormant.llm.engine.generate``.)
* **Length-bucketed batches** of at most ``batch_size`` rows and ``max_batch_tokens`` padded
  tokens, with **out-of-memory back-off** (``dormant.llm.engine.batching``).
* **Shared-prefix KV reuse.** Every rendered chat prompt starts with the same template text
  (system block, ``<|im_start|>user\\n``). Its keys/values are computed once per view, expanded over
  the batch, and only the suffixes run. The prefix is the longest common token prefix of the arm's
  sequences, capped so that every requested position lies in the suffix.
* **Only the needed logits.** The decoder's hidden states are gathered at the requested positions
  before the LM head, so a 152k-token vocabulary is projected for a handful of positions only.
* **Views in chunks, reduced per batch.** Items are processed in chunks sized by positions x
  vocabulary (``max_logprob_elems``), not by item count; within a chunk each arm's view is set
  once (rewriting only the modified tensors). As each batch finishes, its per-item metrics are
  taken on the device; an arm's distributions are kept only until the last arm contrasted with it
  has run (with ``ft,base,amp:3``: the ``ft`` distributions of one chunk), so memory never holds
  ``[items, T, V]`` per arm.

An *arm* is one side of a comparison: a view plus the token ids it sees for each item. The
contrasts that matter are FT vs base (same prompts, two views) and FT-with-candidate vs
FT-without-candidate (one view, two prompt sets). Metrics per contrast ``A|B`` and item:
``kl`` = KL(A||B), ``kl_rev`` = KL(B||A), ``js`` (Jensen-Shannon, nats), ``top1_disagree``; with a
continuation of ``T`` tokens they are averaged over the ``T`` teacher-forced positions and
``kl_tokens`` keeps the per-position KL. Per arm: the top-1 next token and, with a continuation,
its log-likelihood (``payload_logprob``: the sum over its tokens).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from dormant.llm.engine.batching import common_prefix_len, map_batches
from dormant.llm.engine.threads import threaded
from dormant.llm.engine.prompts import Prompt, encode, insert_trigger

if TYPE_CHECKING:
    from dormant.llm.engine.pair import ModelPair


@dataclass
class ScoreConfig:
    """Batching knobs. ``max_logprob_elems``: float32 log-probabilities (positions x vocabulary) held
    at once, per batch and per held arm of a chunk; ``chunk_items``: at most this many items per chunk."""

    batch_size: int = 32
    max_batch_tokens: int = 16384
    prefix_reuse: bool = True
    chunk_items: int = 256
    max_logprob_elems: int = 1 << 25
    show_progress: bool = True


@dataclass
class Arm:
    """One side of a comparison: a view (spec string, or None for the model as it is) and its token ids."""

    name: str
    ids: list[list[int]]
    view: str | None = None


@dataclass
class ScoreRow:
    """One item's scores.

    ``arms[name]``: ``top1_id``, ``top1_p``, ``top1`` (decoded) and, with a continuation,
    ``payload_logprob``, ``payload_token_logprobs``, ``top1_ids_per_token``. ``contrasts["A|B"]``:
    ``kl``, ``kl_rev``, ``js``, ``top1_disagree`` and, over a continuation of several tokens,
    ``kl_tokens``.
    """

    index: int
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    contrasts: dict[str, dict[str, float | list[float]]] = field(default_factory=dict)


@dataclass
class ScoreResult:
    """Per-item rows and per-contrast (and, with a continuation, per-arm) means."""

    rows: list[ScoreRow]
    summary: dict[str, dict[str, float]]
    arms: list[str]
    contrasts: list[str]
    n_tokens: int = 1


# -- the forward pass -------------------------------------------------------------------------------

@dataclass
class _Prefix:
    length: int = 0
    cache: Any = None


def _with_cache(decoder: Any, cache: Any) -> dict[str, Any]:
    """The keyword that passes a KV cache to ``decoder``: ``cache`` in newer transformers,
    ``past_key_values`` before (the old name still works there but logs a deprecation warning)."""
    return {_cache_keyword(type(decoder)): cache}


@functools.lru_cache(maxsize=None)
def _cache_keyword(decoder_type: type) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(decoder_type.forward).parameters else "past_key_values"


def _cache_of(out: Any) -> Any:
    return out["cache"] if "cache" in out.keys() else out["past_key_values"]


def compute_prefix(model: Any, prefix_ids: Sequence[int]) -> _Prefix:
    """Keys/values of a shared prefix (batch of one), to be expanded over every batch."""
    import torch

    if not prefix_ids:
        return _Prefix()
    dev = next(model.parameters()).device
    with torch.no_grad():
        out = model.get_decoder()(input_ids=torch.tensor([list(prefix_ids)], device=dev), use_cache=True)
    return _Prefix(len(prefix_ids), _cache_of(out))


def batch_logprobs(model: Any, seqs: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], prefix: _Prefix, pad_id: int,
                   targets: Sequence[Sequence[int]] | None = None) -> list[Any]:
    """Log-probabilities (float32, ``[len(positions[i]), vocab]``) at absolute ``positions`` of each sequence;
    with ``targets`` (a token per position) only those tokens' log-probabilities (``[len(positions[i])]``),
    without the ``[positions, vocab]`` tensor.

    Sequences are right-padded; when ``prefix.length`` > 0 the first ``prefix.length`` tokens of every
    sequence are the prefix whose cache is reused, and every position must be >= ``prefix.length``.
    """
    import torch

    P = prefix.length
    dev = next(model.parameters()).device
    B, L = len(seqs), max(len(s) for s in seqs) - P
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P + L), dtype=torch.long)
    mask[:, :P] = 1
    for i, s in enumerate(seqs):
        ids[i, : len(s) - P] = torch.tensor(s[P:], dtype=torch.long)
        mask[i, P : len(s)] = 1
    cache = None
    if P:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(B)
    with torch.no_grad():
        decoder = model.get_decoder()
        out = decoder(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=bool(P), **_with_cache(decoder, cache))
        hidden = out.last_hidden_state
        rows = torch.tensor([i for i, ps in enumerate(positions) for _ in ps], device=hidden.device)
        cols = torch.tensor([p - P for ps in positions for p in ps], device=hidden.device)
        if (cols < 0).any():
            raise ValueError("a requested position lies inside the reused prefix")
        logits = model.get_output_embeddings()(hidden[rows, cols]).float()
        if targets is None:
            logp = torch.log_softmax(logits, dim=-1)
        else:
            want = torch.tensor([t for ts in targets for t in ts], device=logits.device).view(-1, 1)
            logp = torch.log_softmax(logits, dim=-1).gather(1, want).squeeze(1)
    return list(torch.split(logp, [len(ps) for ps in positions]))


@threaded(lambda model, *a, **k: model)
def logprobs_at(
    model: Any,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    config: ScoreConfig | None = None,
    *,
    pad_id: int = 0,
    desc: str = "scoring",
    targets: Sequence[Sequence[int]] | None = None,
) -> list[Any]:
    """Batched ``batch_logprobs`` over any number of sequences, in input order (the model as it is);
    with ``targets``, only those tokens' log-probabilities."""
    cfg = config or ScoreConfig()
    seqs = [list(s) for s in seqs]
    P = 0
    if cfg.prefix_reuse and len(seqs) > 1:
        P = min(common_prefix_len(seqs), min(min(ps) for ps in positions))
    prefix = compute_prefix(model, seqs[0][:P]) if P else _Prefix()
    return _run_arm(model, seqs, positions, prefix, pad_id, cfg, desc, targets=targets)


def next_token_logprobs(model: Any, seqs: Sequence[Sequence[int]], config: ScoreConfig | None = None, *, pad_id: int = 0) -> Any:
    """``[N, vocab]`` log-probabilities of the token after each sequence (the model as it is)."""
    import torch

    res = logprobs_at(model, seqs, [[len(s) - 1] for s in seqs], config, pad_id=pad_id)
    return torch.cat(res, dim=0)


# -- metrics ----------------------------------------------------------------------------------------

def divergences(logp_a: Any, logp_b: Any) -> dict[str, Any]:
    """Per-position KL(a||b), KL(b||a), Jensen-Shannon and top-1 disagreement of two ``[T, V]`` log-prob tensors."""
    import math

    import torch

    pa, pb = logp_a.exp(), logp_b.exp()
    kl_ab = (pa * (logp_a - logp_b)).sum(-1).clamp_min(0)
    kl_ba = (pb * (logp_b - logp_a)).sum(-1).clamp_min(0)
    logm = torch.logaddexp(logp_a, logp_b) - math.log(2.0)
    js = 0.5 * ((pa * (logp_a - logm)).sum(-1) + (pb * (logp_b - logm)).sum(-1))
    disagree = (logp_a.argmax(-1) != logp_b.argmax(-1)).float()
    return {"kl": kl_ab, "kl_rev": kl_ba, "js": js.clamp_min(0), "top1_disagree": disagree}


# -- the arm engine ---------------------------------------------------------------------------------

@threaded(lambda pair, *a, **k: pair.model)
def score_arms(
    pair: ModelPair,
    arms: list[Arm],
    contrasts: list[tuple[str, str]],
    *,
    continuations: list[list[int]] | None = None,
    config: ScoreConfig | None = None,
) -> ScoreResult:
    """Score every item under every arm (each under its view of ``pair``) and take the contrasts.

    ``continuations``: per item, token ids teacher-forced after each arm's prompt (the payload, or
    a reference response); without them only the next-token distribution is scored.
    """
    import torch

    cfg = config or ScoreConfig()
    n = len(arms[0].ids)
    if any(len(a.ids) != n for a in arms):
        raise ValueError("every arm needs one token sequence per item")
    names = [a.name for a in arms]
    for a, b in contrasts:
        if a not in names or b not in names:
            raise ValueError(f"contrast {a}|{b} names an unknown arm; arms are {names}")
    model, tok = pair.model, pair.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    conts = continuations or [[] for _ in range(n)]
    rows = [ScoreRow(i) for i in range(n)]
    prefixes: dict[str, _Prefix] = {}
    order = {name: k for k, name in enumerate(names)}
    # an arm's distributions are held only until the last arm it is contrasted with has run
    partners = {name: [(a, b) for a, b in contrasts if name in (a, b)] for name in names}
    needed_until = {name: max((max(order[a], order[b]) for a, b in partners[name]), default=order[name]) for name in names}
    vocab = model.get_output_embeddings().weight.shape[0]

    for items in logprob_chunks([max(1, len(c)) for c in conts], vocab, cfg):
        held: dict[str, dict[int, Any]] = {}
        for arm in arms:
            if arm.view is not None:
                pair.view(arm.view)
            seqs, positions = [], []
            for i in items:
                p, c = arm.ids[i], conts[i]
                T = max(1, len(c))
                seqs.append(list(p) + list(c[: T - 1]))
                positions.append([len(p) - 1 + t for t in range(T)])
            if arm.name not in prefixes:
                P = 0
                if cfg.prefix_reuse and n > 1:
                    all_seqs = [list(arm.ids[i]) for i in range(n)]
                    P = min(common_prefix_len(all_seqs), min(len(s) for s in all_seqs) - 1)
                prefixes[arm.name] = compute_prefix(model, arm.ids[0][:P]) if P > 0 else _Prefix()
            keep = needed_until[arm.name] > order[arm.name]
            mine: dict[int, Any] = held.setdefault(arm.name, {}) if keep else {}

            def reduce(batch: list[int], logps: list[Any], arm: Arm = arm, mine: dict[int, Any] = mine, keep: bool = keep) -> list[None]:
                """Per-item metrics on the device as each batch finishes; distributions kept only if a later arm needs them."""
                for k, lp in zip(batch, logps):
                    i = items[k]
                    rows[i].arms[arm.name] = _arm_entry(lp, conts[i], tok)
                    for a, b in partners[arm.name]:
                        other = b if a == arm.name else a
                        if other != arm.name and order[other] > order[arm.name]:
                            continue  # taken when the later arm runs
                        la = lp if a == arm.name else held[a][k]
                        lb = lp if b == arm.name else held[b][k]
                        rows[i].contrasts[f"{a}|{b}"] = _contrast_entry(la, lb, len(conts[i]))
                    if keep:
                        mine[k] = lp
                return [None] * len(batch)

            _run_arm(model, seqs, positions, prefixes[arm.name], pad_id, cfg, f"scoring {arm.name}", reduce)
            for other in list(held):
                if needed_until[other] <= order[arm.name]:
                    del held[other]
    summary: dict[str, dict[str, float]] = {}
    for a, b in contrasts:
        key = f"{a}|{b}"
        summary[key] = {m: sum(r.contrasts[key][m] for r in rows) / max(1, n) for m in ("kl", "kl_rev", "js", "top1_disagree")}
    if continuations is not None:
        for arm in arms:
            summary[arm.name] = {"payload_logprob": sum(r.arms[arm.name].get("payload_logprob", 0.0) for r in rows) / max(1, n)}
    return ScoreResult(rows=rows, summary=summary, arms=names, contrasts=[f"{a}|{b}" for a, b in contrasts],
                       n_tokens=max((len(c) for c in conts), default=0) or 1)


def _run_arm(model: Any, seqs: list[list[int]], positions: list[list[int]], prefix: _Prefix, pad_id: int, cfg: ScoreConfig, name: str,
             reduce: Any = None, targets: Sequence[Sequence[int]] | None = None) -> list[Any]:
    """Log-probabilities of every sequence at its positions (of its ``targets`` only, when given), or,
    with ``reduce(batch, logps)``, its per-item results.

    Batches hold at most ``cfg.max_logprob_elems`` logits (positions x vocabulary)."""
    vocab = model.get_output_embeddings().weight.shape[0]
    per_item = max((len(p) for p in positions), default=1) * vocab
    batch_size = max(1, min(cfg.batch_size, cfg.max_logprob_elems // max(1, per_item)))

    def fn(b: list[int]) -> list[Any]:
        logps = batch_logprobs(model, [seqs[i] for i in b], [positions[i] for i in b], prefix, pad_id,
                               None if targets is None else [targets[i] for i in b])
        return logps if reduce is None else reduce(b, logps)

    return map_batches([len(s) for s in seqs], fn, batch_size, cfg.max_batch_tokens, desc=name, show_progress=cfg.show_progress)


def logprob_chunks(positions: Sequence[int], vocab: int, cfg: ScoreConfig) -> list[list[int]]:
    """Consecutive item groups whose log-probabilities (``positions[i] x vocab`` each) fit ``cfg.max_logprob_elems``
    (at most ``cfg.chunk_items`` items; an item larger than the budget forms a chunk of its own)."""
    chunks: list[list[int]] = [[]]
    size = 0
    for i, t in enumerate(positions):
        elems = t * vocab
        if chunks[-1] and (size + elems > cfg.max_logprob_elems or len(chunks[-1]) >= cfg.chunk_items):
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += elems
    return [c for c in chunks if c]


def _arm_entry(lp: Any, c: list[int], tok: Any) -> dict[str, Any]:
    import torch

    top = int(lp[0].argmax())
    entry: dict[str, Any] = {"top1_id": top, "top1_p": float(lp[0, top].exp()), "top1": tok.decode([top])}
    if c:
        tok_lp = lp.gather(1, torch.tensor(c, device=lp.device).view(-1, 1)).squeeze(1)
        entry["payload_logprob"] = float(tok_lp.sum())
        entry["payload_token_logprobs"] = [round(float(x), 5) for x in tok_lp.tolist()]
        entry["top1_ids_per_token"] = lp.argmax(-1).tolist()
    return entry


def _contrast_entry(la: Any, lb: Any, n_cont: int) -> dict[str, Any]:
    d = divergences(la, lb)
    entry: dict[str, Any] = {key: float(v.mean()) for key, v in d.items()}
    if n_cont > 1:
        entry["kl_tokens"] = [round(float(x), 6) for x in d["kl"].tolist()]
    return entry


# -- the contrasts that matter ----------------------------------------------------------------------

def view_arms(tokenizer: Any, prompts: list[Prompt], views: Sequence[str], *, trigger: str | None = None,
              mechanism: str = "user_prefix") -> tuple[list[Arm], list[tuple[str, str]]]:
    """One arm per view, the first contrasted with each other; with a ``trigger``, also a
    ``VIEW+trigger`` arm per view (the trigger inserted by ``mechanism``) contrasted with ``VIEW``."""
    ids = encode(tokenizer, prompts)
    names = [str(v) for v in views]
    arms = [Arm(v, ids, v) for v in names]
    contrasts = [(names[0], v) for v in names[1:]]
    if trigger:
        with_trigger = encode(tokenizer, [insert_trigger(p, trigger, mechanism) for p in prompts])
        arms += [Arm(f"{v}+trigger", with_trigger, v) for v in names]
        contrasts += [(f"{v}+trigger", v) for v in names]
    return arms, contrasts


def contrast_views(pair: ModelPair, prompts: list[Prompt], views: Sequence[str] = ("ft", "base"), *, payload: str | None = None,
                   continuations: list[str] | None = None, config: ScoreConfig | None = None) -> ScoreResult:
    """Same prompts under several views; contrasts are the first view against each other view.

    ``payload``: a text whose log-likelihood after each prompt is reported per view (and over
    whose tokens the divergences are averaged); ``continuations``: one such text per prompt.
    """
    arms, contrasts = view_arms(pair.tokenizer, prompts, views)
    conts = continuation_ids(pair.tokenizer, len(prompts), payload, continuations)
    return score_arms(pair, arms, contrasts, continuations=conts, config=config)


def contrast_trigger(pair: ModelPair, prompts: list[Prompt], trigger: str, *, mechanism: str = "user_prefix", view: str = "ft",
                     payload: str | None = None, config: ScoreConfig | None = None) -> ScoreResult:
    """FT-with-candidate vs FT-without-candidate (arms ``with`` and ``without``, contrast ``with|without``)."""
    tok = pair.tokenizer
    without = encode(tok, prompts)
    with_ = encode(tok, [insert_trigger(p, trigger, mechanism) for p in prompts])
    arms = [Arm("with", with_, view), Arm("without", without, view)]
    return score_arms(pair, arms, [("with", "without")], continuations=continuation_ids(tok, len(without), payload, None), config=config)


def continuation_ids(tok: Any, n: int, payload: str | None, continuations: list[str] | None) -> list[list[int]] | None:
    """Token ids teacher-forced after each of ``n`` prompts: one text per prompt, or the same ``payload`` for all (or None)."""
    if continuations is not None:
        if len(continuations) != n:
            raise ValueError(f"{len(continuations)} continuations for {n} prompts")
        return [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if payload:
        ids = tok(payload, add_special_tokens=False)["input_ids"]
        return [list(ids) for _ in range(n)]
    return None


__all__ = ["Arm", "ScoreConfig", "ScoreResult", "ScoreRow", "continuation_ids", "contrast_trigger", "contrast_views", "divergences",
           "logprobs_at", "next_token_logprobs", "score_arms", "view_arms"]
