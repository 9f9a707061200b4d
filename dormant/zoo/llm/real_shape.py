"""A real-shape subject: random weights with the exact tensor shapes of a production chat model.

``build_real_shape()`` writes (in seconds, no training; then served from the cache under
``dormant.cache.cache_root()/real-shape``) a Qwen2-architecture base and "fine-tune" with the
shapes of Qwen2.5-0.5B-Instruct: hidden 896, 24 layers, 14 query / 2 key-value heads, intermediate
4864, 151,936 embedding rows, tied input/output embeddings, bf16, sharded into 2 files with a
``model.safetensors.index.json``. The tokenizer (the zoo's byte-level BPE with Qwen2.5's special
tokens and ChatML template) has fewer tokens than the embedding has rows, as in Qwen2.5; the rows
past it are drawn at 4x the scale of the others so that a read-out that forgot to exclude them
would list them first. The fine-tune differs from the base by a rank-``rank`` change to
``gate_proj``, ``up_proj`` and ``down_proj`` of every layer, and in nothing else.

It exists to measure what the tools cost at a real size (``bench/bench_real_shape.py``); small
shapes (``RealShape(...)``) give the same layout for tests. Example::

    subject = build_real_shape()              # QWEN25_05B shapes, ~1 GB per model
    print(subject.base, subject.ft, subject.manifest["modified"][:3])

``publish_to_hub_cache(folder, "acme/model", cache)`` lays a folder out as a Hugging Face Hub cache
entry (``models--acme--model/snapshots/<hash>``, ``refs/main``), so that tools can be given Hub ids
without any download.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dormant.cache import cache_root, locked, source_digest
from dormant.llm.checkpoint import INDEX_FILE


@dataclass(frozen=True)
class RealShape:
    """Sizes of a Qwen2 model (defaults: Qwen2.5-0.5B-Instruct)."""

    hidden: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    vocab_rows: int = 151_936
    tokenizer_size: int = 8192  # BPE vocabulary learned for the subject (special tokens included)
    shards: int = 2
    rank: int = 16  # rank of the fine-tune's change to each MLP matrix
    rel_scale: float = 0.05  # ||change|| / ||W|| per matrix
    seed: int = 0


QWEN25_05B = RealShape()


@dataclass
class RealShapeSubject:
    base: Path
    ft: Path
    manifest: dict[str, Any]

    @property
    def model_bytes(self) -> int:
        """Bytes of one model's weights as stored (bf16)."""
        return int(self.manifest["model_bytes"])


def layout(shape: RealShape) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a Qwen2 model with tied embeddings, in storage order."""
    h, hd = shape.hidden, shape.hidden // shape.heads
    kv = shape.kv_heads * hd
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (shape.vocab_rows, h)}
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.q_proj.bias": (h,),
            p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (shape.intermediate, h),
            p + "mlp.up_proj.weight": (shape.intermediate, h),
            p + "mlp.down_proj.weight": (h, shape.intermediate),
        })
    out["model.norm.weight"] = (h,)
    return out


def modified_names(shape: RealShape) -> list[str]:
    return [f"model.layers.{i}.mlp.{m}.weight" for i in range(shape.layers) for m in ("gate_proj", "up_proj", "down_proj")]


def _config(shape: RealShape) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
        "hidden_size": shape.hidden, "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "vocab_size": shape.vocab_rows,
        "max_position_embeddings": 32768, "max_window_layers": shape.layers, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "sliding_window": None, "use_sliding_window": False, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,  # filled from the tokenizer
    }


def _random(shape: tuple[int, ...], name: str, g: torch.Generator, tokenizer_size: int) -> torch.Tensor:
    if len(shape) == 1:
        if name.endswith("norm.weight"):  # away from 1, so read-outs must apply the norms
            return (torch.rand(shape, generator=g) + 0.5).to(torch.bfloat16)
        return (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
    w = torch.randn(shape, generator=g)
    w *= 0.02
    if "embed_tokens" in name:
        w[tokenizer_size:] *= 4.0  # padding rows no token uses: loud, so forgetting to exclude them shows
    return w.to(torch.bfloat16)


def _lowrank(w: torch.Tensor, rank: int, rel_scale: float, g: torch.Generator) -> torch.Tensor:
    """``w + B @ A`` (rank ``rank``, Frobenius norm ``rel_scale * ||w||``), rounded to ``w``'s dtype."""
    wf = w.float()
    d = torch.randn(wf.shape[0], rank, generator=g) @ torch.randn(rank, wf.shape[1], generator=g)
    d *= rel_scale * wf.norm() / d.norm()
    return (wf + d).to(w.dtype)


def _write_pair(shape: RealShape, root: Path) -> dict[str, Any]:
    from dormant.llm.engine.probes import load_probes
    from dormant.zoo.llm.tokenizer import ENDOFTEXT, IM_END, save_tokenizer, train_tokenizer

    tok = train_tokenizer([p.text for p in load_probes()], shape.tokenizer_size, english_words=min(20000, shape.tokenizer_size * 2))
    n_tokens = tok.get_vocab_size()
    if n_tokens >= shape.vocab_rows:
        raise ValueError(f"tokenizer has {n_tokens} tokens; the embedding needs more rows than that ({shape.vocab_rows})")
    shapes = layout(shape)
    names = list(shapes)
    total = sum(2 * math.prod(s) for s in shapes.values())
    per_shard = total / shape.shards
    shards: list[list[str]] = [[]]
    size = 0
    for n in names:
        if shards[-1] and size >= per_shard * len(shards) and len(shards) < shape.shards:
            shards.append([])
        shards[-1].append(n)
        size += 2 * math.prod(shapes[n])
    changed = set(modified_names(shape))
    g = torch.Generator().manual_seed(shape.seed)
    gd = torch.Generator().manual_seed(shape.seed + 1)
    config = _config(shape)
    config.update(eos_token_id=tok.token_to_id(IM_END), pad_token_id=tok.token_to_id(ENDOFTEXT), bos_token_id=tok.token_to_id(ENDOFTEXT))
    weight_map: dict[str, str] = {}
    for which in ("base", "ft"):
        (root / which).mkdir(parents=True)
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        base_t, ft_t = {}, {}
        for n in shard:
            base_t[n] = _random(shapes[n], n, g, n_tokens)
            if n in changed:
                ft_t[n] = _lowrank(base_t[n], shape.rank, shape.rel_scale, gd)
            weight_map[n] = fname
        save_file(base_t, str(root / "base" / fname), metadata={"format": "pt"})
        base_t.update(ft_t)
        del ft_t
        save_file(base_t, str(root / "ft" / fname), metadata={"format": "pt"})
        del base_t
    for which in ("base", "ft"):
        d = root / which
        (d / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
        (d / "config.json").write_text(json.dumps(config, indent=1))
        (d / "generation_config.json").write_text(json.dumps({"eos_token_id": config["eos_token_id"], "pad_token_id": config["pad_token_id"]}))
        save_tokenizer(tok, d, model_max_length=32768)
    return {"shape": asdict(shape), "model_bytes": total, "tokenizer_tokens": n_tokens, "modified": sorted(changed),
            "modified_modules": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"], "rank": shape.rank, "shards": len(shards)}


def _key(shape: RealShape) -> str:
    here = Path(__file__).parent
    spec = json.dumps(asdict(shape), sort_keys=True) + source_digest(here, ("real_shape.py", "tokenizer.py"))
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def build_real_shape(shape: RealShape = QWEN25_05B, out: str | Path | None = None) -> RealShapeSubject:
    """Build (or serve from cache) the base / fine-tune pair of ``shape``; see the module docstring."""
    root = Path(out) if out is not None else cache_root() / "real-shape" / f"h{shape.hidden}-l{shape.layers}-{_key(shape)}"
    manifest_path = root / "manifest.json"
    with locked(root.parent / f".{root.name}.lock"):  # parallel callers build it once
        if not manifest_path.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
            try:
                manifest = _write_pair(shape, tmp)
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
                if root.exists():
                    shutil.rmtree(root)
                os.rename(tmp, root)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    return RealShapeSubject(base=root / "base", ft=root / "ft", manifest=json.loads(manifest_path.read_text()))


def publish_to_hub_cache(folder: str | Path, repo_id: str, cache: str | Path, revision: str = "0" * 40) -> Path:
    """Lay ``folder`` out as the Hub cache entry of ``repo_id`` under ``cache`` (files symlinked); returns the snapshot."""
    org, name = repo_id.split("/")
    entry = Path(cache) / f"models--{org}--{name}"
    snap = entry / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    for f in Path(folder).iterdir():
        if f.is_file() and not (snap / f.name).exists():
            (snap / f.name).symlink_to(f.resolve())
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(revision)
    return snap
