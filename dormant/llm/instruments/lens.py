"""Logit lens: read the residual stream after every layer through the final norm and the
unembedding, under each view, and follow tracked tokens' rank and probability layer by layer.

The public warmup's payload ("one point six ...") showed its first token jumping to rank 1 at
layer 22 of 28 under the fine-tune; under the base it never got there. ``lens`` reports, per view
and tracked token, the rank (1 = top) and probability at every layer at the last prompt position
(where the answer's first token is predicted), the first layer where it reaches rank 1 and the
layer of its largest rise (biggest drop in log-rank from the layer before).

A tracked text counts by its first token (the text tokenised without special tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.engine.views import View
from dormant.llm.instruments.hooks import capture, n_layers, run_padded, unembed


@dataclass
class LensConfig:
    views: tuple[str, ...] = ("base", "ft")
    track: tuple[str, ...] = ()
    top_k: int = 5


@dataclass
class TokenTrace:
    """One tracked token under one view: ``rank[l]`` and ``prob[l]`` after layer ``l`` (0-based)."""

    text: str
    token: str
    token_id: int
    rank: list[int]
    prob: list[float]
    first_top1: int | None
    largest_rise: int | None


@dataclass
class LensResult:
    prompt: str
    layers: int
    views: list[str]
    traces: dict[str, list[TokenTrace]]  # view -> one trace per tracked text
    top: dict[str, list[list[str]]]  # view -> per layer, the top-k tokens there
    plot: str | None = None
    summary: list[str] = field(default_factory=list)


def first_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"tracked text {text!r} has no tokens")
    return int(ids[0])


def layer_logprobs(model: Any, ids: list[int]) -> Any:
    """``[layers, vocab]`` log-probabilities read from the residual after each layer at the last position."""
    import torch

    L = n_layers(model)
    with capture(model, [f"resid:{l}" for l in range(L)], keep=lambda x: x[:, -1]) as store:
        run_padded(model, [ids])
    hidden = torch.stack([store[f"resid:{l}"][0] for l in range(L)])
    return torch.log_softmax(unembed(model, hidden), dim=-1)


def _largest_rise(rank: list[int]) -> int | None:
    if len(rank) < 2:
        return None
    drops = [math.log(rank[l - 1]) - math.log(rank[l]) for l in range(1, len(rank))]
    best = max(range(len(drops)), key=lambda i: drops[i])
    return best + 1 if drops[best] > 0 else None


def lens(pair: ModelPair, prompt: Prompt | str, config: LensConfig | None = None) -> LensResult:
    """Logit lens of ``prompt`` under each view of ``config.views``, tracking ``config.track``."""
    cfg = config or LensConfig()
    p = Prompt.user(prompt) if isinstance(prompt, str) else prompt
    ids = encode(pair.tokenizer, [p])[0]
    tracked = [(t, first_token(pair.tokenizer, t)) for t in cfg.track]
    traces: dict[str, list[TokenTrace]] = {}
    top: dict[str, list[list[str]]] = {}
    views = [str(View.parse(v)) for v in cfg.views]
    previous = pair.current
    try:
        for v in views:
            pair.view(v)
            lp = layer_logprobs(pair.model, ids)
            top[v] = [[pair.tokenizer.decode([int(i)]) for i in row] for row in lp.topk(cfg.top_k, dim=-1).indices]
            traces[v] = []
            for text, tid in tracked:
                ranks = (lp > lp[:, tid : tid + 1]).sum(-1).add(1).tolist()
                probs = lp[:, tid].exp().tolist()
                first = next((l for l, r in enumerate(ranks) if r == 1), None)
                traces[v].append(TokenTrace(text, pair.tokenizer.decode([tid]), tid, [int(r) for r in ranks],
                                            [float(x) for x in probs], first, _largest_rise(ranks)))
    finally:
        pair.view(previous)
    summary = []
    for v in views:
        for t in traces[v]:
            where = f"rank 1 first at layer {t.first_top1}" if t.first_top1 is not None else f"never rank 1 (best rank {min(t.rank)})"
            summary.append(f"{v}: {t.token!r} {where}; final-layer rank {t.rank[-1]}, p = {t.prob[-1]:.3f}")
    return LensResult(prompt=p.text, layers=len(top[views[0]]), views=views, traces=traces, top=top, summary=summary)


def plot_lens(result: LensResult, path: str | Path) -> Path:
    """PNG: rank (log scale) of each tracked token per layer, one line per view."""
    from dormant.report.plots import new_figure, save_figure

    fig, ax = new_figure(7.5, 4.2)
    for v in result.views:
        for t in result.traces[v]:
            ax.plot(range(result.layers), t.rank, "o-", label=f"{v}: {t.token!r}")
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.set_xticks(range(result.layers))
    ax.set_xlabel("layer (residual after it)")
    ax.set_ylabel("rank of tracked token (1 = top)")
    ax.set_title("logit lens")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)
