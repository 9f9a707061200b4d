"""Batched generation: greedy or sampled continuations of many prompts, left-padded, KV-cached.

Generation pads on the *left* so that every row's next token sits at the same column; the
attention mask hides the pads and position ids count real tokens only, so a padded row generates
what it would alone (to float tolerance). Batches are length-bucketed and shrink on out-of-memory
like the scoring engine's. Text is cut at the first end-of-turn token.

The decoding loop (``engine="cached"``, the default) is this module's own, built for many short
answers from small models, where a step costs more in overhead than in arithmetic:

* one prefill of the padded batch, then one token per row per step through the model's KV cache;
* the step loop touches no tokenizer and no Python per row: tokens stay in tensors until the end;
* rows that have stopped are dropped from the batch (and from its cache) as they accumulate, and the
  loop ends as soon as every row has stopped;
* on CPU, a model whose steps are too small to split (``small_model``) decodes on one thread:
  intra-op threads then only add synchronisation, which dominates on a busy machine.

It reproduces ``transformers``' ``model.generate`` token for token: the same forward inputs
(mask, position ids, one kept logit row), the logits processors ``generate`` would build from the
model's generation config and ours (temperature, top-p, repetition penalty ...), and, when
sampling, one ``multinomial`` draw per step over the *whole* batch (stopped rows get a dummy
distribution), so the random stream is consumed exactly as ``generate`` consumes it.
``engine="hf"`` calls ``model.generate`` itself (the reference, and the fallback for settings the
loop does not cover: beams, stop strings, static caches).

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

import functools
from dataclasses import dataclass
from typing import Any, Sequence

from dormant.errors import DormantError
from dormant.llm.engine.threads import model_threads
from dormant.llm.engine.batching import map_batches


@dataclass
class GenConfig:
    """Greedy by default; ``do_sample`` with ``temperature``/``top_p`` and a ``seed`` for sampling.

    ``engine``: ``"cached"`` (this module's decoding loop) or ``"hf"`` (``model.generate``).
    ``threads``: torch threads while decoding on CPU; None picks 1 for a ``small_model``, else leaves them."""

    max_new_tokens: int = 48
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32
    max_batch_tokens: int = 32768
    show_progress: bool = True
    engine: str = "cached"
    threads: int | None = None


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


# -- the batch ----------------------------------------------------------------------------------------

def left_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    """``(ids, mask)``: the sequences right-aligned in a ``[B, L]`` tensor, pads on the left."""
    import torch

    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[i, L - len(s):] = 1
    return ids, mask


def hf_kwargs(cfg: GenConfig, pad: int, stops: list[int]) -> dict[str, Any]:
    """The ``model.generate`` keywords of a configuration (the reference decoding)."""
    kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample, "pad_token_id": pad, "eos_token_id": stops}
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def hf_decode(model: Any, ids: Any, mask: Any, cfg: GenConfig, stops: list[int], pad: int) -> Any:
    """``[B, T]`` new tokens from ``model.generate`` (pads after a row's stop)."""
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, **hf_kwargs(cfg, pad, stops))
    return out[:, ids.shape[1]:]


_UNCOVERED = ("stop_strings", "max_time", "cache_implementation", "guidance_scale", "prompt_lookup_num_tokens", "watermarking_config")


def _processors(model: Any, cfg: GenConfig, pad: int, stops: list[int], ids: Any, mask: Any) -> Any:
    """The logits processors ``model.generate`` would build (from the model's generation config and ours),
    or None when the settings need ``generate`` itself (beams, stop strings, another cache ...)."""
    try:
        gc, _ = model._prepare_generation_config(None, **hf_kwargs(cfg, pad, stops))
        if (gc.num_beams or 1) > 1 or any(getattr(gc, k, None) not in (None, False) for k in _UNCOVERED):
            return None
        return model._get_logits_processor(generation_config=gc, input_ids_seq_length=ids.shape[1], device=ids.device,
                                           model_kwargs={"attention_mask": mask})
    except (AttributeError, TypeError, ValueError):  # a transformers without these: let generate decode
        return None


def cached_decode(model: Any, ids: Any, mask: Any, cfg: GenConfig, stops: list[int], pad: int, processors: Any) -> Any:
    """``[B, T]`` new tokens, decoded with the KV cache (see the module docstring); after a row's stop token
    its entries are meaningless (callers cut there)."""
    import torch
    from transformers import DynamicCache

    from dormant.llm.engine.scoring import _with_cache

    B, dev = ids.shape[0], ids.device
    stop_t = torch.tensor(stops, device=dev)
    out = torch.full((B, cfg.max_new_tokens), pad, dtype=torch.long, device=dev)
    rows = torch.arange(B, device=dev)  # batch row -> input row
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    seq = ids  # every input row's tokens so far, for the logits processors (dropped rows continue with pads)
    step_ids, pos = ids, (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    extra = {"logits_to_keep": 1} if _accepts(type(model), "logits_to_keep") else {}
    with torch.no_grad():
        for t in range(cfg.max_new_tokens):
            out_t = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra, **_with_cache(model, cache))
            logits = out_t.logits[:, -1].to(dtype=torch.float32, copy=True)
            nxt = next_tokens(logits, rows, B, seq, processors, cfg.do_sample)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)  # a stopped row carries the pad, as in generate
            out[rows, t] = nxt
            done |= torch.isin(nxt, stop_t)
            n_live = len(rows) - int(done.sum())
            if n_live == 0 or t + 1 == cfg.max_new_tokens:
                break
            if processors:
                seq = torch.cat([seq, out[:, t : t + 1]], dim=-1)
            if 4 * n_live <= 3 * len(rows):  # a quarter of the batch has stopped: drop those rows and their cache
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, nxt, mask, pos, done = rows[keep], nxt[keep], mask[keep], pos[keep], done[keep]
            step_ids = nxt[:, None]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
            pos = pos[:, -1:] + 1
    return out


def next_tokens(logits: Any, rows: Any, B: int, seq: Any, processors: Any, sample: bool) -> Any:
    """The next token of each row in the batch (``rows``: their input rows, of ``B``).

    Greedy without processors: the argmax. Otherwise on all ``B`` input rows, dropped ones with
    dummy zero logits: processors may hold per-row state (the prompt's padding), and ``multinomial``
    then consumes the random stream exactly as ``generate`` does over the whole batch."""
    import torch

    if not (processors or sample):
        return torch.argmax(logits, dim=-1)
    if len(rows) < B:
        full = logits.new_zeros((B, logits.shape[1]))
        full[rows] = logits
        logits = full
    if processors:
        logits = processors(seq, logits)
    tok = torch.multinomial(torch.nn.functional.softmax(logits, dim=-1), num_samples=1).squeeze(1) if sample else torch.argmax(logits, dim=-1)
    return tok if len(rows) == B else tok[rows]


@functools.lru_cache(maxsize=None)
def _accepts(model_type: type, keyword: str) -> bool:
    import inspect

    return keyword in inspect.signature(model_type.forward).parameters


# -- entry points -------------------------------------------------------------------------------------

def _batch_generate(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], cfg: GenConfig, stops: list[int]) -> list[Generation]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    dev = next(model.parameters()).device
    ids, mask = (x.to(dev) for x in left_pad(seqs, pad))
    processors = _processors(model, cfg, pad, stops, ids, mask) if cfg.engine == "cached" else None
    if processors is None:
        new = hf_decode(model, ids, mask, cfg, stops, pad)
    else:
        new = cached_decode(model, ids, mask, cfg, stops, pad, processors)
    gens = []
    stop_set = set(stops)
    for row in new.tolist():
        cut = next((j for j, t in enumerate(row) if t in stop_set), len(row))
        gens.append(Generation(text=tokenizer.decode(row[:cut], skip_special_tokens=True), ids=row[:cut]))
    return gens


def generate(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], config: GenConfig | None = None, *, desc: str = "generating") -> list[Generation]:
    """Continue every token sequence (rendered prompts) with the model as it is; results in input order."""
    import torch

    cfg = config or GenConfig()
    if cfg.engine not in ("cached", "hf"):
        raise ValueError(f"unknown generation engine {cfg.engine!r}: cached or hf")
    if cfg.max_new_tokens < 1:
        raise DormantError(f"{cfg.max_new_tokens} new tokens per answer generates nothing: give --max-new-tokens 1 or more")
    if cfg.do_sample:
        torch.manual_seed(cfg.seed)
    stops = stop_ids(tokenizer, model)
    with model_threads(model, cfg.threads):
        return map_batches([len(s) + cfg.max_new_tokens for s in seqs],
                           lambda b: _batch_generate(model, tokenizer, [seqs[i] for i in b], cfg, stops),
                           cfg.batch_size, cfg.max_batch_tokens, desc=desc, show_progress=cfg.show_progress)


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
    ids, mask = left_pad(seqs, pad)
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
