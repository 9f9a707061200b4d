"""Forward hooks shared by every instrument: residual stream, module outputs, module inputs.

A decoder-only transformer (Qwen2, Llama, ...) is ``model.model.layers[i]``; each layer returns
the residual stream after it (a tensor, or a tuple whose first element is that tensor), its
``self_attn`` returns the attention output first and its ``mlp`` returns the MLP output. The
final norm is ``model.model.norm`` and the unembedding ``model.get_output_embeddings()``.

``capture(model, sites)`` is a context manager: it registers hooks on the named sites and fills a
dict ``site -> [batch, seq, dim]`` tensors (detached, float32) on each forward pass. Site names::

    resid:L      residual stream after layer L (L = -1: the embeddings, before layer 0)
    attn:L       the attention block's output of layer L (what it adds to the residual)
    mlp:L        the MLP block's output of layer L
    in:NAME      the input of the submodule NAME (a Linear's input, e.g. model.layers.3.mlp.down_proj)

``add_to_residual(model, layer, vector)`` adds a vector to the residual stream after a layer
(steering), as a context manager.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from dormant.errors import DormantError


def layers(model: Any) -> Any:
    """The decoder layers (a ModuleList)."""
    inner = getattr(model, "model", model)
    found = getattr(inner, "layers", None)
    if found is None:
        raise DormantError(f"{type(model).__name__}: no decoder layers at model.model.layers (not a decoder-only transformer?)")
    return found


def n_layers(model: Any) -> int:
    return len(layers(model))


def final_norm(model: Any) -> Any:
    return getattr(getattr(model, "model", model), "norm")


def unembed(model: Any, hidden: Any) -> Any:
    """Logits (float32) of residual-stream vectors read through the final norm and the unembedding."""
    return model.get_output_embeddings()(final_norm(model)(hidden.to(_dtype(model)))).float()


def _dtype(model: Any) -> Any:
    return next(model.parameters()).dtype


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _module(model: Any, site: str) -> tuple[Any, str]:
    kind, _, arg = site.partition(":")
    if kind == "in":
        mods = dict(model.named_modules())
        if arg not in mods:
            raise DormantError(f"no submodule {arg!r} in the model")
        return mods[arg], "pre"
    try:
        idx = int(arg)
    except ValueError:
        raise DormantError(f"bad site {site!r}: expected resid:L, attn:L, mlp:L or in:NAME") from None
    if kind == "resid" and idx == -1:
        return model.get_input_embeddings(), "out"
    layer = layers(model)[idx]
    if kind == "resid":
        return layer, "out"
    if kind == "attn":
        return layer.self_attn, "out"
    if kind == "mlp":
        return layer.mlp, "out"
    raise DormantError(f"bad site {site!r}: expected resid:L, attn:L, mlp:L or in:NAME")


@contextmanager
def capture(model: Any, sites: Sequence[str], *, keep: Any = None, detach: bool = True) -> Iterator[dict[str, Any]]:
    """Record the named sites on every forward pass into the yielded dict (float32, detached).

    ``keep``: optional function (or dict site -> function) applied to each captured ``[B, T, D]``
    tensor before it is stored (gather a few positions, project on a few directions), so that full
    activations never accumulate. ``detach=False`` keeps the autograd graph (a gradient through
    the captured values, as a trigger optimisation needs).
    """
    store: dict[str, Any] = {}
    handles = []
    for site in sites:
        mod, when = _module(model, site)

        fn = keep.get(site) if isinstance(keep, dict) else keep

        def save(x: Any, site: str = site, fn: Any = fn) -> None:
            x = (x.detach() if detach else x).float()
            store[site] = fn(x) if fn is not None else x

        if when == "pre":
            handles.append(mod.register_forward_pre_hook(lambda m, args, save=save: save(args[0])))
        else:
            handles.append(mod.register_forward_hook(lambda m, args, out, save=save: save(_first(out))))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def add_to_residual(model: Any, layer: int, vector: Any, scale: float = 1.0) -> Iterator[None]:
    """Add ``scale * vector`` to the residual stream after ``layer`` at every position."""
    mod = layers(model)[layer]

    def hook(m: Any, args: Any, out: Any) -> Any:
        h = _first(out)
        h = h + (scale * vector).to(h.device, h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = mod.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_padded(model: Any, seqs: Sequence[Sequence[int]], pad_id: int = 0) -> Any:
    """One right-padded forward pass of the decoder (no LM head); returns the attention mask."""
    import torch

    dev = next(model.parameters()).device
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    with torch.no_grad():
        model.get_decoder()(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False)
    return mask


def collect(model: Any, seqs: Sequence[Sequence[int]], sites: Sequence[str], *, reduce: str = "last",
            batch_size: int = 16, pad_id: int = 0, keep: Any = None) -> dict[str, list[Any]]:
    """Activations at ``sites`` for every sequence, batched: per site a list (one entry per sequence) of
    ``[D]`` (``reduce="last"``: the last token; ``"mean"``: the mean over tokens) or ``[T, D]`` (``"all"``) tensors.
    ``keep``: as in ``capture`` (applied per batch before anything is kept, e.g. a projection)."""
    out: dict[str, list[Any]] = {s: [None] * len(seqs) for s in sites}
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        with capture(model, sites, keep=keep) as store:
            run_padded(model, [seqs[i] for i in batch], pad_id)
        for site in sites:
            x = store[site].cpu()
            for row, i in enumerate(batch):
                n = len(seqs[i])
                xi = x[row, :n]
                out[site][i] = xi[-1] if reduce == "last" else xi.mean(0) if reduce == "mean" else xi
    return out
