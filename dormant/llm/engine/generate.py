"""Batched generation: greedy or sampled continuations of many prompts, left-padded.

Generation pads on the *left* so that every row's next token sits at the same column; the
attention mask hides the pads and transformers derives position ids from it, so a padded row
generates what it would alone (to float tolerance). Batches are length-bucketed and shrink on
out-of-memory like the scoring engine's. Text is cut at the first end-of-turn token.

    gens = generate(model, tok, encode(tok, prompts), GenConfig(max_new_tokens=48))
    gens[0].text, gens[0].ids
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
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(list(s))
        mask[i, L - len(s):] = 1
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


def generate_view(pair: Any, view: str, prompts: Sequence[Any], config: GenConfig | None = None, *, desc: str | None = None) -> list[str]:
    """Greedy (or configured) answer texts of ``prompts`` (``Prompt`` objects) under one view of a ``ModelPair``."""
    from dormant.llm.engine.prompts import encode

    if not prompts:
        return []
    pair.view(view)
    ids = encode(pair.tokenizer, list(prompts))
    return [g.text for g in generate(pair.model, pair.tokenizer, ids, config, desc=desc or f"generating {view}")]
