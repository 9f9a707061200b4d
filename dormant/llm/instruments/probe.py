"""Linear probes per layer, the decoy control that exposes topic probes, and steering.

A probe is an L2-regularised logistic regression on the residual stream after a layer (at the
last prompt token, or the mean over tokens), trained to tell ``pos`` from ``neg`` prompts. Its
quality is the held-out AUROC (``folds``-fold cross-validation: every prompt scored by a probe that
did not see it; the mean of the folds' AUROCs).

Probes are known to mislead: trained on triggered-vs-clean prompts they happily learn the *topic*
of the triggered prompts (pi, grids, a subject) rather than the backdoor. The control: **decoys**,
prompts on the positives' topic that do not carry the trigger. The probe fitted on all of ``pos``
and ``neg`` scores them; when it separates the decoys from the negatives too (decoy AUROC >=
``decoy_threshold``), the layer's probe is reported as detecting topic, not the backdoor.

Steering adds ``scale * r * u`` to the residual stream after a layer at every position, where
``u`` is the probe's unit direction (in the residual space) and ``r`` the mean residual norm there
(so ``scale`` is in units of the typical residual size), and generates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.errors import DormantError
from dormant.llm.engine.generate import GenConfig, generate
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.instruments.hooks import add_to_residual, collect, n_layers


@dataclass
class ProbeConfig:
    view: str = "ft"
    reduce: str = "last"  # last | mean
    folds: int = 5
    l2: float = 1e-2
    decoy_threshold: float = 0.75
    batch_size: int = 16


@dataclass
class LayerProbe:
    layer: int
    auroc: float  # held out
    decoy_auroc: float | None  # decoys vs negatives, scored by the probe fitted on everything
    topic: bool  # the probe separates the decoys too
    direction: list[float]  # unit vector in the residual space (fitted on everything)
    residual_norm: float


@dataclass
class ProbeResult:
    view: str
    layers: list[LayerProbe]
    best_layer: int
    verdict: str
    n_pos: int
    n_neg: int
    n_decoys: int
    steered: list[dict[str, Any]] = field(default_factory=list)
    plot: str | None = None


def auroc(pos: Any, neg: Any) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half."""
    import torch

    p, n = torch.as_tensor(pos, dtype=torch.float64).view(-1, 1), torch.as_tensor(neg, dtype=torch.float64).view(1, -1)
    return float(((p > n).double() + 0.5 * (p == n).double()).mean())


def fit_logistic(x: Any, y: Any, l2: float = 1e-2, steps: int = 200) -> tuple[Any, Any, Any, Any]:
    """``(w, b, mean, std)``: logistic regression on standardised features (L-BFGS); score = ((x - mean) / std) @ w + b."""
    import torch

    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def _score(model: tuple[Any, Any, Any, Any], x: Any) -> Any:
    w, b, mean, std = model
    return ((x - mean) / std) @ w + b


def held_out_auroc(xp: Any, xn: Any, folds: int, l2: float) -> float:
    """Mean over folds of the AUROC of held-out prompts (prompt ``i`` goes to fold ``i % folds`` within its
    class), each fold scored by a probe fitted on the other folds. Per-fold AUROCs, not one pooled
    ranking: probes of different folds put their scores on different scales."""
    return held_out_aurocs(xp, xn, folds, l2)[0]


def held_out_aurocs(xp: Any, xn: Any, folds: int, l2: float, xd: Any = None) -> tuple[float, float | None]:
    """``held_out_auroc`` and, with decoys ``xd``, the decoys' AUROC against the same fold's held-out negatives (mean
    over folds; None without decoys). Against the negatives a probe was fitted on, any unseen prompt looks "positive":
    in thousands of dimensions a fit separates its few training prompts perfectly, so the comparison must be held out too."""
    import torch

    k = max(2, min(folds, len(xp), len(xn)))
    aucs, decoy = [], []
    for f in range(k):
        tp = torch.tensor([i % k != f for i in range(len(xp))])
        tn = torch.tensor([i % k != f for i in range(len(xn))])
        m = fit_logistic(torch.cat([xp[tp], xn[tn]]), torch.cat([torch.ones(int(tp.sum())), torch.zeros(int(tn.sum()))]).to(xp.dtype), l2)
        held_neg = _score(m, xn[~tn])
        aucs.append(auroc(_score(m, xp[~tp]), held_neg))
        if xd is not None:
            decoy.append(auroc(_score(m, xd), held_neg))
    return sum(aucs) / len(aucs), (sum(decoy) / len(decoy) if decoy else None)


def _features(pair: ModelPair, prompts: list[Prompt], cfg: ProbeConfig) -> dict[int, Any]:
    import torch

    ids = encode(pair.tokenizer, prompts)
    L = n_layers(pair.model)
    acts = collect(pair.model, ids, [f"resid:{l}" for l in range(L)], reduce=cfg.reduce, batch_size=cfg.batch_size,
                   pad_id=pair.tokenizer.pad_token_id or 0)
    return {l: torch.stack(acts[f"resid:{l}"]).double() for l in range(L)}


def probe(pair: ModelPair, pos: list[Prompt | str], neg: list[Prompt | str], decoys: list[Prompt | str] | None = None,
          config: ProbeConfig | None = None) -> ProbeResult:
    """Per-layer probes of ``pos`` vs ``neg`` with held-out AUROC and, with ``decoys``, the topic control."""
    import torch

    cfg = config or ProbeConfig()
    as_p = lambda xs: [Prompt.user(x) if isinstance(x, str) else x for x in xs]  # noqa: E731
    pos, neg, decoys = as_p(pos), as_p(neg), as_p(decoys or [])
    if len(pos) < 2 or len(neg) < 2:
        raise DormantError("a probe needs at least two prompts in each set")
    previous = pair.current
    try:
        pair.view(cfg.view)
        fp, fn = _features(pair, pos, cfg), _features(pair, neg, cfg)
        fd = _features(pair, decoys, cfg) if decoys else None
    finally:
        pair.view(previous)
    layers = []
    for l in sorted(fp):
        xp, xn = fp[l], fn[l]
        held, d_auc = held_out_aurocs(xp, xn, cfg.folds, cfg.l2, fd[l] if fd is not None else None)
        m = fit_logistic(torch.cat([xp, xn]), torch.cat([torch.ones(len(xp)), torch.zeros(len(xn))]).double(), cfg.l2)
        w, _, _, std = m
        u = w / std
        u = u / u.norm().clamp_min(1e-12)
        norm = float(torch.cat([xp, xn]).norm(dim=-1).mean())
        layers.append(LayerProbe(l, held, d_auc, d_auc is not None and d_auc >= cfg.decoy_threshold, [float(x) for x in u], norm))
    best = max(layers, key=lambda p: (p.auroc, -p.layer))
    if best.auroc < 0.7:
        verdict = f"no layer's probe separates the sets well (best held-out AUROC {best.auroc:.2f}, layer {best.layer})"
    elif best.decoy_auroc is None:
        verdict = (f"layer {best.layer}'s probe separates the sets (held-out AUROC {best.auroc:.2f}); without decoys it may "
                   "detect topic rather than the backdoor")
    elif best.topic:
        verdict = (f"layer {best.layer}'s probe (held-out AUROC {best.auroc:.2f}) also separates the decoys from the negatives "
                   f"(AUROC {best.decoy_auroc:.2f}): it detects topic, not the backdoor")
    else:
        verdict = (f"layer {best.layer}'s probe (held-out AUROC {best.auroc:.2f}) leaves the decoys with the negatives "
                   f"(AUROC {best.decoy_auroc:.2f}): not explained by the decoys' topic")
    return ProbeResult(cfg.view, layers, best.layer, verdict, len(pos), len(neg), len(decoys))


def steer(pair: ModelPair, prompts: list[Prompt | str], layer: int, direction: Any, scales: list[float], residual_norm: float,
          generation: GenConfig | None = None, view: str = "ft") -> list[dict[str, Any]]:
    """Greedy answers with ``scale * residual_norm * direction`` added after ``layer``, for each scale."""
    import torch

    u = torch.as_tensor(direction, dtype=torch.float32)
    u = u / u.norm()
    ids = encode(pair.tokenizer, [Prompt.user(p) if isinstance(p, str) else p for p in prompts])
    gen = generation or GenConfig(max_new_tokens=32)
    out = []
    previous = pair.current
    try:
        pair.view(view)
        for s in scales:
            with add_to_residual(pair.model, layer, u * residual_norm, scale=s):
                gens = generate(pair.model, pair.tokenizer, ids, gen, desc=f"steering layer {layer} x{s:g}")
            out += [{"scale": s, "layer": layer, "prompt": (p if isinstance(p, str) else p.text), "output": g.text}
                    for p, g in zip(prompts, gens)]
    finally:
        pair.view(previous)
    return out


def plot_probe(result: ProbeResult, path: str | Path) -> Path:
    """PNG: held-out AUROC per layer and, with decoys, the decoys-vs-negatives AUROC."""
    from dormant.report.plots import new_figure, save_figure

    fig, ax = new_figure(6.5, 3.8)
    ls = [p.layer for p in result.layers]
    ax.plot(ls, [p.auroc for p in result.layers], "o-", label="pos vs neg (held out)")
    if result.n_decoys:
        ax.plot(ls, [p.decoy_auroc for p in result.layers], "s--", label="decoys vs neg")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC")
    ax.set_title("linear probes")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
