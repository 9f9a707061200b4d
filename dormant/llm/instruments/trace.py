"""Change tracing: where, layer by layer and position by position, the fine-tune's computation
departs from the base's, and how much each layer's change pushes the tracked tokens directly.

For each prompt the model runs under a reference view (default ``base``) and a view (default
``ft``); at every layer the attention block's and the MLP block's outputs (what each adds to the
residual stream) and the residual stream after the layer are captured. ``norm[module][layer][t]``
is ``||out_view - out_ref||`` at position ``t``; it includes what earlier layers' changes feed in
(the total difference of that block's output, not its weights' change alone).

Direct effect on a tracked token (its first token) at the last position: the block's output
difference read through the final norm, linearised at the view's final residual ``x``
(``g * delta / rms(x)``), and the unembedding row of the token. The direct effects of all blocks
need not sum to the total logit change (the norm is not linear and blocks interact).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.engine.views import View
from dormant.llm.instruments.hooks import capture, final_norm, n_layers, run_padded
from dormant.llm.instruments.lens import first_token

MODULES = ("attn", "mlp", "resid")


@dataclass
class TraceConfig:
    view: str = "ft"
    reference: str = "base"
    track: tuple[str, ...] = ()


@dataclass
class PromptTrace:
    prompt: str
    tokens: list[str]
    norm: dict[str, list[list[float]]]  # module -> layer -> position
    direct: dict[str, dict[str, list[float]]]  # tracked text -> module (attn, mlp) -> per layer, last position
    logit_change: dict[str, float]  # tracked text -> total change of its logit at the last position


@dataclass
class TraceResult:
    view: str
    reference: str
    layers: int
    prompts: list[PromptTrace]
    mean_last: dict[str, list[float]]  # module -> per layer: mean over prompts of the norm at the last position
    mean_max: dict[str, list[float]]  # module -> per layer: mean over prompts of the largest norm over positions
    mean_direct: dict[str, dict[str, list[float]]]  # tracked text -> module -> per layer
    changed_layers: list[int]  # layers whose blocks' outputs differ at all (norm > tolerance somewhere)
    plot: str | None = None
    summary: list[str] = field(default_factory=list)


def _run(pair: ModelPair, view: str, ids: list[int]) -> dict[str, Any]:
    L = n_layers(pair.model)
    sites = [f"{m}:{l}" for l in range(L) for m in MODULES]
    pair.view(view)
    with capture(pair.model, sites) as store:
        run_padded(pair.model, [ids])
    return {k: v[0] for k, v in store.items()}


def trace(pair: ModelPair, prompts: list[Prompt | str], config: TraceConfig | None = None, *, tolerance: float = 1e-6) -> TraceResult:
    """Trace the difference between ``config.view`` and ``config.reference`` over ``prompts``."""
    import torch

    cfg = config or TraceConfig()
    ps = [Prompt.user(p) if isinstance(p, str) else p for p in prompts]
    tok = pair.tokenizer
    tracked = [(t, first_token(tok, t)) for t in cfg.track]
    L = n_layers(pair.model)
    W = pair.model.get_output_embeddings().weight
    view, ref = str(View.parse(cfg.view)), str(View.parse(cfg.reference))
    previous = pair.current
    out: list[PromptTrace] = []
    try:
        for p, ids in zip(ps, encode(tok, ps)):
            a, b = _run(pair, view, ids), _run(pair, ref, ids)
            norm = {m: [(a[f"{m}:{l}"] - b[f"{m}:{l}"]).norm(dim=-1).tolist() for l in range(L)] for m in MODULES}
            pair.view(view)
            x = a[f"resid:{L - 1}"][-1]
            fn = final_norm(pair.model)
            # the view's own final norm and unembedding rows, copied: a view switch overwrites the weights in place
            g = fn.weight.detach().float().clone()
            rows = {tid: W[tid].detach().float().clone() for _, tid in tracked}
            eps = float(getattr(fn, "variance_epsilon", getattr(fn, "eps", 1e-6)))
            rms = torch.sqrt(x.pow(2).mean() + eps)
            with torch.no_grad():
                final_a = pair.model.get_output_embeddings()(fn(x.to(W.dtype))).float()
                pair.view(ref)
                final_b = pair.model.get_output_embeddings()(fn(b[f"resid:{L - 1}"][-1].to(W.dtype))).float()
            direct: dict[str, dict[str, list[float]]] = {}
            change: dict[str, float] = {}
            for text, tid in tracked:
                row = rows[tid]
                direct[text] = {m: [float(row @ (g * (a[f"{m}:{l}"][-1] - b[f"{m}:{l}"][-1]) / rms)) for l in range(L)]
                                for m in ("attn", "mlp")}
                change[text] = float(final_a[tid] - final_b[tid])
            out.append(PromptTrace(p.text, [tok.decode([i]) for i in ids], norm, direct, change))
    finally:
        pair.view(previous)
    n = max(1, len(out))
    mean_last = {m: [sum(t.norm[m][l][-1] for t in out) / n for l in range(L)] for m in MODULES}
    mean_max = {m: [sum(max(t.norm[m][l]) for t in out) / n for l in range(L)] for m in MODULES}
    mean_direct = {text: {m: [sum(t.direct[text][m][l] for t in out) / n for l in range(L)] for m in ("attn", "mlp")} for text, _ in tracked}
    changed = [l for l in range(L) if max(mean_max["attn"][l], mean_max["mlp"][l]) > tolerance]
    summary = []
    if changed:
        first = changed[0]
        summary.append(f"{view} departs from {ref} first at layer {first} "
                       f"({'attention' if mean_max['attn'][first] > tolerance else 'MLP'}); block outputs differ in layers {changed}")
    else:
        summary.append(f"{view} and {ref} compute the same block outputs on these prompts")
    for text, _ in tracked:
        best = max(((m, l) for m in ("attn", "mlp") for l in range(L)), key=lambda ml: mean_direct[text][ml[0]][ml[1]])
        summary.append(f"largest direct push on {text!r}: {best[0]} of layer {best[1]} ({mean_direct[text][best[0]][best[1]]:+.2f} logits, mean over prompts)")
    return TraceResult(view, ref, L, out, mean_last, mean_max, mean_direct, changed, summary=summary)


def plot_trace(result: TraceResult, path: str | Path, index: int = 0) -> Path:
    """PNG heatmap: rows = layer/block, columns = positions of prompt ``index``; colour = ||view - ref||."""
    import numpy as np

    from dormant.report.plots import new_figure, save_figure

    t = result.prompts[index]
    rows = [(m, l) for l in range(result.layers) for m in MODULES]
    data = np.array([t.norm[m][l] for m, l in rows])
    fig, ax = new_figure(max(6.0, 0.25 * len(t.tokens)), 0.3 * len(rows) + 2)
    im = ax.imshow(data, aspect="auto", cmap="magma")
    ax.set_yticks(range(len(rows)), [f"{m} {l}" for m, l in rows], fontsize=7)
    ax.set_xticks(range(len(t.tokens)), [repr(x)[1:-1][:8] for x in t.tokens], rotation=90, fontsize=6)
    ax.set_title(f"||{result.view} - {result.reference}|| per block output and position")
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path)
