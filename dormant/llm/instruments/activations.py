"""Activations to disk: residual streams of many prompts streamed into one safetensors file.

The file is laid out before any forward pass: the prompts are tokenised first, so every tensor's
shape is known (``layer.L``: ``[rows, hidden]``, where rows are all tokens of all prompts with
``reduce="all"``, or one per prompt with ``"last"``/``"mean"``). The header is written, then prompts
run in chunks of ``chunk`` and each chunk's rows are written in place at their offsets. Memory
holds one chunk's activations, never the whole array. The file is a standard safetensors file
(``safetensors.safe_open`` reads it lazily); an index (``<file>.index.json``) maps each prompt to its
rows and tokens.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant.errors import DormantError
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.instruments.hooks import collect, n_layers

DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2)}


@dataclass
class ActivationsConfig:
    layers: tuple[int, ...] | None = None  # None: every layer
    reduce: str = "all"  # all | last | mean
    dtype: str = "float32"  # float32 | float16
    chunk: int = 32
    batch_size: int = 16
    view: str = "ft"


@dataclass
class ActivationsResult:
    path: str
    index: str
    layers: list[int]
    rows: int
    hidden: int
    bytes: int
    prompts: int
    reduce: str
    view: str
    tensors: dict[str, list[int]] = field(default_factory=dict)


def parse_layers(text: str | None, total: int) -> tuple[int, ...] | None:
    """``"0,2-3"`` -> (0, 2, 3); None or ``all`` -> None (every layer). Negative indices count from the end."""
    if text is None or text.strip() == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise DormantError(f"bad layer list {text!r}: use N, N-M, comma-separated (e.g. --layers 0,2-3), or leave --layers out for all") from None
        if b < a:
            fix = f"write {b}-{a}" if b >= 0 else "a range N-M counts from 0, with N <= M (a single layer may be negative: -1 is the last)"
            raise DormantError(f"bad layer range {part!r} in {text!r}: the end comes before the start; {fix}")
        out += [x % total if x < 0 else x for x in range(a, b + 1)]
    bad = [x for x in out if not 0 <= x < total]
    if bad:
        raise DormantError(f"layers {bad} out of range: the model has {total} layers (0-{total - 1})")
    return tuple(dict.fromkeys(out))


def extract(pair: ModelPair, prompts: list[Prompt | str], path: str | Path, config: ActivationsConfig | None = None) -> ActivationsResult:
    """Write the residual stream after each chosen layer for every prompt to ``path`` (safetensors)."""
    import torch

    cfg = config or ActivationsConfig()
    if cfg.reduce not in ("all", "last", "mean"):
        raise DormantError(f"reduce must be all, last or mean, got {cfg.reduce!r}")
    if cfg.dtype not in DTYPES:
        raise DormantError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.chunk < 1:
        raise DormantError(f"chunk must be at least 1 prompt, got {cfg.chunk}: give --chunk 1 or more")
    ps = [Prompt.user(p) if isinstance(p, str) else p for p in prompts]
    ids = encode(pair.tokenizer, ps)
    L = n_layers(pair.model)
    layers = list(cfg.layers) if cfg.layers is not None else list(range(L))
    hidden = int(pair.model.config.hidden_size)
    rows_per = [len(s) if cfg.reduce == "all" else 1 for s in ids]
    starts = [0]
    for r in rows_per:
        starts.append(starts[-1] + r)
    rows = starts[-1]
    code, width = DTYPES[cfg.dtype]
    tensor_bytes = rows * hidden * width
    header: dict[str, Any] = {}
    for i, l in enumerate(layers):
        header[f"layer.{l}"] = {"dtype": code, "shape": [rows, hidden], "data_offsets": [i * tensor_bytes, (i + 1) * tensor_bytes]}
    header["__metadata__"] = {"reduce": cfg.reduce, "view": cfg.view, "layers": ",".join(map(str, layers)), "prompts": str(len(ps))}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data_start = 8 + len(raw)
    torch_dtype = getattr(torch, cfg.dtype)
    previous = pair.current
    try:
        pair.view(cfg.view)
        with open(out, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            f.truncate(data_start + tensor_bytes * len(layers))
            for c0 in range(0, len(ids), cfg.chunk):
                chunk = ids[c0 : c0 + cfg.chunk]
                acts = collect(pair.model, chunk, [f"resid:{l}" for l in layers], reduce=cfg.reduce, batch_size=cfg.batch_size,
                               pad_id=pair.tokenizer.pad_token_id or 0)
                for i, l in enumerate(layers):
                    block = torch.cat([a.reshape(-1, hidden) for a in acts[f"resid:{l}"]]).to(torch_dtype).contiguous()
                    f.seek(data_start + i * tensor_bytes + starts[c0] * hidden * width)
                    f.write(block.numpy().tobytes())
                del acts
    finally:
        pair.view(previous)
    index_path = out.with_name(out.name + ".index.json") if not out.name.endswith(".safetensors") else out.with_suffix(".index.json")
    index = {"file": out.name, "reduce": cfg.reduce, "view": cfg.view, "layers": layers, "hidden": hidden, "dtype": cfg.dtype,
             "tensors": {f"layer.{l}": [rows, hidden] for l in layers},
             "prompts": [{"prompt": p.text, "rows": [starts[i], starts[i + 1]], "tokens": len(ids[i]),
                          "token_ids": ids[i]} for i, p in enumerate(ps)]}
    index_path.write_text(json.dumps(index))
    return ActivationsResult(str(out), str(index_path), layers, rows, hidden, tensor_bytes * len(layers), len(ps), cfg.reduce, cfg.view,
                             index["tensors"])
