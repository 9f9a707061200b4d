"""Restoration localisation: which layers (and which block kinds) carry the payload.

A restoration view ``restore:SEL`` is the fine-tune with the selected tensors set back to the base
(``amp:0@SEL`` in the view grammar: the same selection mechanism that ``amplify --select`` and
``amplify --localise`` use). On prompts where the fine-tune says the payload (triggered prompts),
``localise`` measures, under each candidate view, the payload's share of greedy answers (``fires``,
via ``amplify.payload_shares``) and its mean log-likelihood (teacher-forced after the prompt):

* **kill sweep**: restore each modified layer, each window of adjacent modified layers (up to
  ``max_window`` long) and each block kind (``self_attn``, ``mlp``); the payload is *killed* when
  its share falls to at most ``kill_fraction`` of its share under the fine-tune;
* **carry sweep**: keep only a window of layers from the fine-tune and restore every other
  modified layer; the window *carries* the payload when its share stays at least
  ``carry_fraction`` of the fine-tune's.

Reported: the smallest layer set whose restoration kills the payload and the smallest that alone
carries it (fewest layers; ties: the larger log-likelihood drop, resp. the larger share), or that
none does. Module kinds are reported beside (a kind spans many layers).
Tensors outside the decoder layers (embeddings, final norm, unembedding) are never restored here:
a change there is named in ``outside_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dormant.llm.behaviour.amplify import payload_shares
from dormant.llm.engine.generate import GenConfig
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.engine.scoring import Arm, ScoreConfig, continuation_ids, score_arms
from dormant.llm.engine.views import Selection, _format_layers
from dormant.llm.weights.names import layer_of


@dataclass
class LocaliseConfig:
    max_window: int = 3
    kill_fraction: float = 0.2
    carry_fraction: float = 0.8
    module_kinds: tuple[str, ...] = ("self_attn", "mlp")
    amplify: float | None = None  # measure under amp:A (restored layers at base, the rest at A) instead of the fine-tune
    generation: GenConfig = field(default_factory=lambda: GenConfig(max_new_tokens=24))


@dataclass
class Measure:
    view: str
    layers: list[int]
    share: float
    logprob: float


@dataclass
class LocaliseResult:
    payload: str
    ft_share: float
    ft_logprob: float
    base_share: float
    modified_layers: list[int]
    outside_layers: list[str]
    kill: list[Measure]
    carry: list[Measure]
    modules: list[Measure]
    smallest_kill: Measure | None
    smallest_carry: Measure | None
    summary: list[str]
    plot: str | None = None


def windows(layers: list[int], max_len: int) -> list[list[int]]:
    """Every run of up to ``max_len`` consecutive entries of the sorted layer list (single layers first)."""
    return [layers[i : i + n] for n in range(1, max_len + 1) for i in range(len(layers) - n + 1)]


def _sel(layers: list[int]) -> str:
    return _format_layers(frozenset(layers))


def localise_restoration(pair: ModelPair, prompts: list[Prompt], payload: str, config: LocaliseConfig | None = None,
                         score: ScoreConfig | None = None) -> LocaliseResult:
    """Restoration sweeps on ``prompts`` (where the fine-tune shows ``payload``, or, with
    ``config.amplify`` = A, where ``amp:A`` shows it); see the module docstring."""
    cfg = config or LocaliseConfig()
    A = cfg.amplify
    top = "ft" if A is None else f"amp:{A:g}"  # the view that shows the payload
    pre = "" if A is None else f"amp:{A:g}/"
    mod = pair.modified_layers()
    outside = sorted(n for n in pair.modified if layer_of(n) is None)
    wins = windows(mod, min(cfg.max_window, len(mod)))
    kill_views = {f"{pre}restore:{_sel(w)}": w for w in wins}
    carry_views = {}
    for w in wins:
        rest = [l for l in mod if l not in w]
        carry_views[f"{pre}restore:{_sel(rest)}" if rest else top] = w
    kinds = [k for k in cfg.module_kinds if any(Selection(module=k).matches(n) for n in pair.modified)]
    module_views = {f"{pre}restore:{k}": sorted({layer_of(n) for n in pair.modified if k in n and layer_of(n) is not None}) for k in kinds}
    all_views = [top, "base", *kill_views, *carry_views, *module_views]
    all_views = list(dict.fromkeys(all_views))
    shares = payload_shares(pair, prompts, payload, all_views, cfg.generation)
    ids = encode(pair.tokenizer, prompts)
    conts = continuation_ids(pair.tokenizer, len(ids), payload, None)
    sc = score or ScoreConfig(show_progress=False)
    previous = pair.current
    try:
        res = score_arms(pair, [Arm(v, ids, v) for v in all_views], [], continuations=conts, config=sc)
    finally:
        pair.view(previous)
    lp = {v: res.summary[v]["payload_logprob"] for v in all_views}

    def m(v: str, layers: list[int]) -> Measure:
        return Measure(v, layers, shares[v], lp[v])

    kill = [m(v, w) for v, w in kill_views.items()]
    carry = [m(v, w) for v, w in carry_views.items()]
    modules = [m(v, w) for v, w in module_views.items()]
    ft_share = shares[top]
    killed = [x for x in kill if x.share <= cfg.kill_fraction * ft_share]
    carried = [x for x in carry if x.share >= cfg.carry_fraction * ft_share]
    smallest_kill = min(killed, key=lambda x: (len(x.layers), x.logprob)) if killed and ft_share > 0 else None
    smallest_carry = min(carried, key=lambda x: (len(x.layers), -x.share)) if carried and ft_share > 0 else None
    summary = [f"payload share: {top} {ft_share:.0%}, base {shares['base']:.0%}; mean log-likelihood {top} {lp[top]:.2f}, base {lp['base']:.2f}"]
    if A is not None:
        summary.append(f"every view amplified by {A:g} (restored layers at base): the payload is localised without its trigger")
    if ft_share == 0:
        summary.append(f"{top} does not show the payload on these prompts: nothing to localise "
                       + ("(use triggered prompts, or --amplify A where amplification shows it)" if A is None else "(try a larger --amplify)"))
    else:
        summary.append(f"restoring layers {_sel(smallest_kill.layers)} kills the payload (share {smallest_kill.share:.0%}, "
                       f"log-likelihood {smallest_kill.logprob:.2f})" if smallest_kill else
                       f"no window of up to {cfg.max_window} modified layers kills the payload when restored")
        summary.append(f"layers {_sel(smallest_carry.layers)} alone carry the payload (share {smallest_carry.share:.0%} with every other "
                       f"modified layer restored{'' if A is None else f' and these amplified by {A:g}'})" if smallest_carry else
                       f"no window of up to {cfg.max_window} modified layers carries the payload alone")
        for x in modules:
            summary.append(f"restoring every {x.view.split(':', 1)[1]} tensor: share {x.share:.0%}")
    if outside:
        summary.append(f"modified outside the decoder layers (never restored here): {', '.join(outside)}")
    return LocaliseResult(payload, ft_share, lp[top], shares["base"], mod, outside, kill, carry, modules,
                          smallest_kill, smallest_carry, summary)


def plot_localise(result: LocaliseResult, path: str | Path) -> Path:
    """PNG: payload share under each restoration view (kill sweep, modules) with the fine-tune's share."""
    from dormant.report.plots import new_figure, save_figure

    rows = result.kill + result.modules
    fig, ax = new_figure(max(6.0, 0.5 * len(rows) + 2), 4.2)
    ax.bar(range(len(rows)), [x.share for x in rows], color="steelblue")
    ax.axhline(result.ft_share, color="crimson", ls="--", lw=1, label="ft")
    ax.axhline(result.base_share, color="grey", ls=":", lw=1, label="base")
    ax.set_xticks(range(len(rows)), [x.view for x in rows], rotation=60, fontsize=7)
    ax.set_ylabel("payload share")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("payload share with layers/blocks restored to base")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
