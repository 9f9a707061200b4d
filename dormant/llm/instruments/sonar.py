"""The sonar: project activations on a direction and measure how far two prompt sets sit apart.

Default directions are the change's own: for each modified weight matrix of a layer
(``W_ft - W_base``), its top ``k`` right singular vectors, the input directions the change reads.
The module's input is captured (e.g. the normed residual for q/k/v/gate/up, the MLP's hidden
activation for down_proj) at every position, under ``view`` (default ``ft``); a prompt's score on
a direction is the largest ``|v . x|`` over its positions, and its score for the module is the
change's response ``max_t ||S_k V_k^T x_t||``. The control: as many random orthonormal directions
per module, scored the same way (``null_sigma``): a separation that random directions match says
the prompt sets differ in a way any direction hears (e.g. a token present in every positive), not
that the change listens for them. A direction given as a vector (``.npy``, or a
``.safetensors`` with one tensor per layer named ``L`` or ``layer.L``, or one tensor for all
layers) or learnt by a probe is applied to the residual stream after each layer (largest
``|v . x|`` over positions).

Separation: ``sigma = |mean_pos - mean_neg| / sqrt((var_pos + var_neg) / 2)`` (Cohen's d, in
pooled standard deviations) for each score; a layer's sigma is its best score's, and the result's
``best`` is the layer with the largest sigma. The public model-1 solve separated Game-of-Life
grids from controls by 9.5 sigma this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.errors import DormantError
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.instruments.hooks import collect, n_layers
from dormant.llm.weights.delta import DeltaConfig, singular_decomposition
from dormant.llm.weights.names import layer_of


@dataclass
class SonarConfig:
    direction: str = "delta"  # delta | probe | a file
    k: int = 4
    view: str = "ft"
    batch_size: int = 16


@dataclass
class SonarResult:
    direction: str
    view: str
    sigma: dict[int, float]  # layer -> best separation there
    best_layer: int | None
    best_sigma: float
    best_score: str | None  # which score gave it (module and direction)
    scores: dict[int, dict[str, float]]  # layer -> score name -> sigma
    n_pos: int
    n_neg: int
    null_sigma: dict[int, float] = field(default_factory=dict)  # layer -> best separation by random directions (delta mode)
    plot: str | None = None
    summary: list[str] = field(default_factory=list)


def separation(pos: Any, neg: Any) -> float:
    """Cohen's d: |mean difference| over the pooled standard deviation (0 when both sets are constant and equal)."""
    import torch

    pos, neg = torch.as_tensor(pos, dtype=torch.float64), torch.as_tensor(neg, dtype=torch.float64)
    diff = float((pos.mean() - neg.mean()).abs())
    pooled = math.sqrt((float(pos.var(unbiased=True)) + float(neg.var(unbiased=True))) / 2)
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / pooled


def delta_directions(pair: ModelPair, k: int) -> dict[str, tuple[Any, Any]]:
    """Per modified weight matrix inside a layer (module name -> ``(S_k, V_k)``): the change's top input directions."""
    out = {}
    for name, t in sorted(pair.modified.items()):
        if layer_of(name) is None or not name.endswith(".weight") or t.ft.dim() != 2:
            continue
        delta = t.ft.to("cpu").float() - t.base.to("cpu").float()
        _, s, v, _ = singular_decomposition(delta, DeltaConfig(top_k=k))
        out[name[: -len(".weight")]] = (s[:k], v[:, :k])
    return out


def random_directions(dirs: dict[str, tuple[Any, Any]], seed: int = 0) -> dict[str, tuple[Any, Any]]:
    """The control: for each module, as many random orthonormal input directions (same singular values)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, (s, v) in dirs.items():
        q, _ = torch.linalg.qr(torch.randn(v.shape, generator=g, dtype=v.dtype))
        out[m] = (s, q)
    return out


def load_direction(path: str | Path, layers: int) -> dict[int, Any]:
    """A residual-stream direction per layer from ``.npy`` (one vector, or one row per layer) or ``.safetensors``."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise DormantError(f"{p}: no such direction file (expected .npy or .safetensors)")
    if p.suffix == ".npy":
        import numpy as np

        arr = torch.from_numpy(np.load(p)).float()
        tensors = {l: arr if arr.dim() == 1 else arr[l] for l in range(layers)} if arr.dim() == 1 or arr.shape[0] == layers else None
        if tensors is None:
            raise DormantError(f"{p}: expected one vector or {layers} rows, got shape {tuple(arr.shape)}")
        return tensors
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(p))
        if len(raw) == 1:
            (v,) = raw.values()
            return {l: v.float().flatten() for l in range(layers)}
        out = {}
        for key, v in raw.items():
            idx = key.split(".")[-1]
            if idx.isdigit() and int(idx) < layers:
                out[int(idx)] = v.float().flatten()
        if not out:
            raise DormantError(f"{p}: no tensor named by a layer index (L or layer.L)")
        return out
    raise DormantError(f"{p}: unknown direction file type {p.suffix!r}; use .npy or .safetensors")


def _view(pair: ModelPair, view: str):
    class _Ctx:
        def __enter__(self):
            self.prev = pair.current
            pair.view(view)

        def __exit__(self, *exc):
            pair.view(self.prev)

    return _Ctx()


def sonar(pair: ModelPair, pos: list[Prompt | str], neg: list[Prompt | str], config: SonarConfig | None = None,
          directions: dict[int, Any] | None = None) -> SonarResult:
    """Separation of ``pos`` from ``neg`` along the change's directions (or ``directions``: layer -> residual vector)."""
    import torch

    cfg = config or SonarConfig()
    if len(pos) < 2 or len(neg) < 2:
        raise DormantError("the sonar needs at least two prompts in each set")
    tok = pair.tokenizer
    P = encode(tok, [Prompt.user(p) if isinstance(p, str) else p for p in pos])
    N = encode(tok, [Prompt.user(p) if isinstance(p, str) else p for p in neg])
    pad = tok.pad_token_id or 0
    scores: dict[int, dict[str, float]] = {}
    null: dict[int, dict[str, float]] = {}
    with _view(pair, cfg.view):
        if directions is None and cfg.direction == "delta":
            dirs = delta_directions(pair, cfg.k)
            if not dirs:
                raise DormantError("no modified weight matrix inside the decoder layers: the change has no directions to listen along")
            null_dirs = random_directions(dirs)
            sites = [f"in:{m}" for m in dirs]
            # only [B, T, 2k] is kept: the change's directions, then the random control's
            project = {f"in:{m}": (lambda x, v=torch.cat([v, null_dirs[m][1]], 1): x @ v.to(x.device)) for m, (_, v) in dirs.items()}
            acts = collect(pair.model, P + N, sites, reduce="all", batch_size=cfg.batch_size, pad_id=pad, keep=project)
            for m, (s, v) in dirs.items():
                layer = layer_of(m + ".weight")
                k = v.shape[1]
                short = m.split(f"layers.{layer}.", 1)[-1]
                for target, proj in ((scores, [p[:, :k] for p in acts[f"in:{m}"]]), (null, [p[:, k:] for p in acts[f"in:{m}"]])):
                    feats = {f"{short} v{i}": [float(p[:, i].abs().max()) for p in proj] for i in range(k)}
                    feats[f"{short} response"] = [float((p * s).norm(dim=-1).max()) for p in proj]
                    for name, f in feats.items():
                        target.setdefault(layer, {})[name] = separation(f[: len(P)], f[len(P):])
            label = f"delta (top {cfg.k} input directions of each modified matrix)"
        else:
            label = "given" if directions is not None else cfg.direction
            if directions is None:
                directions = load_direction(cfg.direction, n_layers(pair.model))
            unit = {l: directions[l].float() / directions[l].float().norm() for l in sorted(directions)}
            project = {f"resid:{l}": (lambda x, v=v: x @ v.to(x.device)) for l, v in unit.items()}
            acts = collect(pair.model, P + N, list(project), reduce="all", batch_size=cfg.batch_size, pad_id=pad, keep=project)
            for l in unit:
                f = [float(x.abs().max()) for x in acts[f"resid:{l}"]]
                scores[l] = {"residual": separation(f[: len(P)], f[len(P):])}
    sigma = {l: max(d.values()) for l, d in sorted(scores.items())}
    best_layer = max(sigma, key=lambda l: sigma[l]) if sigma else None
    best = sigma.get(best_layer, 0.0) if best_layer is not None else 0.0
    best_score = max(scores[best_layer], key=lambda k: scores[best_layer][k]) if best_layer is not None else None
    summary = [f"best separation {best:.1f} sigma at layer {best_layer} ({best_score}); "
               + ", ".join(f"layer {l}: {s:.1f}" for l, s in sigma.items())]
    null_sigma = {l: max(d.values()) for l, d in sorted(null.items())}
    if null_sigma:
        nl = max(null_sigma, key=lambda l: null_sigma[l])
        summary.append(f"control, random directions in the same modules: best {null_sigma[nl]:.1f} sigma at layer {nl}"
                       + ("; the change's directions do no better there" if best_layer is not None and null_sigma.get(best_layer, 0) >= best else ""))
    if math.isinf(best):
        summary.append("inf: every prompt of each set scores the same on that direction (no spread), and the two sets differ; "
                       "typically one token's embedding present in every positive prompt (read at layer 0)")
    return SonarResult(label, cfg.view, sigma, best_layer, best, best_score, scores, len(P), len(N), null_sigma, summary=summary)


def plot_sonar(result: SonarResult, path: str | Path) -> Path:
    """PNG: separation in standard deviations per layer."""
    from dormant.report.plots import new_figure, save_figure

    fig, ax = new_figure(6.5, 3.8)
    ls = sorted(result.sigma)
    ax.bar(ls, [result.sigma[l] for l in ls], color="teal")
    ax.axhline(5.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("separation (pooled sd)")
    ax.set_title(f"sonar: {result.direction[:60]}")
    return save_figure(fig, path)
