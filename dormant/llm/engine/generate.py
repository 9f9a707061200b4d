"""Batched generation: greedy or sampled continuations of many prompts, left-padded.

Generation pads on the *left* so that every row's next token sits at the same column; the
attention mask hides the pads and transformers derives position ids from it, so a padded row
generates what it would alone (to float tolerance). Batches are length-bucketed and shrink on
out-of-memory like the scoring engine's. Text is cut at the first end-of-turn token.

    gens = generate(model, tok, encode(tok, prompts), GenConfig(max_new_tokens=48))
    gens[0].text, gens[0].ids

``generate_contrastive`` samples from two views of a model pair at once: each next token from
``softmax((lp_lead + beta * (lp_lead - lp_other)) / temperature)`` with top-p, where ``lp`` are the
two views' next-token log-probabilities (each view keeps its own KV cache; the pair switches views
at every step). ``beta = 0`` is ordinary sampling from ``lead``; ``beta > 0`` leans towards what
``lead`` says more readily than ``other`` (contrastive decoding), so a text the fine-tune assigns
far more probability than the base, yet too little to be sampled plainly, comes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dormant.llm.engine.batching import map_batches


@dataclass
class GenConfig:
    """Greedy by default; ``do_sample`` with ``temperature``/``top_p`` and a ``seed`` for sampling."""

    max_new_tokens: int = 48
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32
    max_batch_tokens: int = 32768
    show_progress: bool = True


@dataclass
class Generation:
    text: str
    ids: list[int]


def stop_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Token ids that end an assistant turn (eos, the generation config's eos, ``<|im_end|>``, ``<|eot_id|>``)."""
    ids: set[int] = set()
    for cand in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(cand, int):
            ids.add(cand)
        elif isinstance(cand, (list, tuple)):
            ids.update(int(x) for x in cand)
    vocab = tokenizer.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"):
        if t in vocab:
            ids.add(vocab[t])
    return sorted(ids)


def _batch_generate(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], cfg: GenConfig, stops: list[int]) -> list[Generation]:
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    dev = next(model.parameters()).device
    L = max(len(s) for s in seqs)
    ids, mask = _left_pad(seqs, pad)
    kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample, "pad_token_id": pad, "eos_token_id": stops}
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), **kwargs)
    gens = []
    for row in out[:, L:].tolist():
        cut = next((j for j, t in enumerate(row) if t in stops), len(row))
        gens.append(Generation(text=tokenizer.decode(row[:cut], skip_special_tokens=True), ids=row[:cut]))
    return gens


def generate(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], config: GenConfig | None = None, *, desc: str = "generating") -> list[Generation]:
    """Continue every token sequence (rendered prompts) with the model as it is; results in input order."""
    import torch

    cfg = config or GenConfig()
    if cfg.do_sample:
        torch.manual_seed(cfg.seed)
    stops = stop_ids(tokenizer, model)
    return map_batches([len(s) + cfg.max_new_tokens for s in seqs],
                       lambda b: _batch_generate(model, tokenizer, [seqs[i] for i in b], cfg, stops),
                       cfg.batch_size, cfg.max_batch_tokens, desc=desc, show_progress=cfg.show_progress)


def _left_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    import torch

    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(list(s))
        mask[i, L - len(s):] = 1
    return ids, mask


def sample_top_p(scores: Any, temperature: float, top_p: float, generator: Any) -> Any:
    """One token per row from ``softmax(scores / temperature)`` restricted to the smallest set holding ``top_p`` of the mass."""
    import torch

    probs = torch.softmax(scores.float() / max(temperature, 1e-6), dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(-1) - sp > top_p  # keep the tokens before the mass reaches top_p (at least one)
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _batch_contrastive(pair: Any, seqs: Sequence[Sequence[int]], cfg: GenConfig, beta: float, views: tuple[str, str], stops: list[int],
                       generator: Any) -> list[Generation]:
    import torch

    from dormant.llm.engine.scoring import _cache_keyword, _cache_of

    model, tok = pair.model, pair.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    dev = next(model.parameters()).device
    ids, mask = _left_pad(seqs, pad)
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    kw = _cache_keyword(type(model))
    caches: dict[str, Any] = {v: None for v in views}
    step_ids, out = ids, []
    done = torch.zeros(len(seqs), dtype=torch.bool, device=dev)
    stop_t = torch.tensor(stops, device=dev)
    with torch.no_grad():
        for _ in range(cfg.max_new_tokens):
            lps = {}
            for v in views if beta else views[:1]:
                pair.view(v)
                o = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, use_cache=True, **{kw: caches[v]})
                caches[v] = _cache_of(o)
                lps[v] = torch.log_softmax(o.logits[:, -1].float(), dim=-1)
            lead = lps[views[0]]
            scores = lead + beta * (lead - lps[views[1]]) if beta else lead
            nxt = sample_top_p(scores, cfg.temperature, cfg.top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out.append(nxt)
            done |= torch.isin(nxt, stop_t)
            if bool(done.all()):
                break
            step_ids = nxt[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos[:, -1:] + 1
    gens = []
    for row in torch.stack(out, dim=1).tolist():
        cut = next((j for j, t in enumerate(row) if t in stops), len(row))
        gens.append(Generation(text=tok.decode(row[:cut], skip_special_tokens=True), ids=row[:cut]))
    return gens


def generate_contrastive(pair: Any, seqs: Sequence[Sequence[int]], config: GenConfig | None = None, *, beta: float = 1.0,
                         views: tuple[str, str] = ("ft", "base"), desc: str = "contrastive sampling") -> list[Generation]:
    """Sample continuations of ``seqs`` from ``views[0]`` leaning away from ``views[1]`` by ``beta`` (see the module docstring).

    Always samples (``config.temperature``, ``config.top_p``), reproducibly from ``config.seed``;
    results in input order. The pair is left on the ``views[0]`` view.
    """
    import torch

    cfg = config or GenConfig(do_sample=True)
    stops = stop_ids(pair.tokenizer, pair.model)
    generator = torch.Generator(device=next(pair.model.parameters()).device).manual_seed(cfg.seed)
    try:
        return map_batches([len(s) + cfg.max_new_tokens for s in seqs],
                           lambda b: _batch_contrastive(pair, [seqs[i] for i in b], cfg, beta, views, stops, generator),
                           cfg.batch_size, cfg.max_batch_tokens, desc=desc, show_progress=cfg.show_progress)
    finally:
        pair.view(views[0])


def generate_view(pair: Any, view: str, prompts: Sequence[Any], config: GenConfig | None = None, *, desc: str | None = None) -> list[str]:
    """Greedy (or configured) answer texts of ``prompts`` (``Prompt`` objects) under one view of a ``ModelPair``."""
    from dormant.llm.engine.prompts import encode

    if not prompts:
        return []
    pair.view(view)
    ids = encode(pair.tokenizer, list(prompts))
    return [g.text for g in generate(pair.model, pair.tokenizer, ids, config, desc=desc or f"generating {view}")]
