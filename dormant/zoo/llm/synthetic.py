"""Synthetic checkpoints for exercising the weight tools: tiny Qwen2 models, planted low-rank
changes, FP8 block-scaled copies, and large random bf16 folders written straight with safetensors.

These are test subjects with known answers: ``plant_lowrank`` records exactly which tensors it
changed and with which rank, so ``diff`` and ``delta`` can be checked against the truth.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from dormant.llm.checkpoint import DTYPES, FP8_BLOCK, INDEX_FILE, open_checkpoint

_COPY_SUFFIXES = {".json", ".txt", ".model", ".jinja"}


def save_tiny_qwen2(folder: str | Path, *, seed: int = 0, hidden: int = 64, layers: int = 2, intermediate: int = 128,
                    heads: int = 4, kv_heads: int = 2, vocab: int = 256, dtype: torch.dtype = torch.bfloat16,
                    max_shard_size: str | None = None, tokenizer_words: list[str] | None = None) -> Path:
    """A randomly initialised ``Qwen2ForCausalLM`` saved as a Hugging Face folder (optionally sharded).

    With ``tokenizer_words``, a word-level tokenizer (``<unk>``, ``<|endoftext|>``, then the words)
    is saved alongside; ``vocab`` must then exceed its size (the extra rows mimic Qwen2.5's padding).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
                         tie_word_embeddings=False, initializer_range=0.05)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(dtype)
    with torch.no_grad():  # norms away from 1 so that read-outs must apply them
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    if tokenizer_words is not None:
        save_word_tokenizer(folder, tokenizer_words)
    return folder


def save_word_tokenizer(folder: str | Path, words: list[str]) -> None:
    """A whitespace word-level fast tokenizer: id 0 ``<unk>``, id 1 ``<|endoftext|>`` (special), then ``words``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|endoftext|>": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)


def _copy_side_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in _COPY_SUFFIXES and f.name != INDEX_FILE:
            shutil.copy2(f, dst / f.name)


def rewrite_checkpoint(src: str | Path, dst: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Copy ``src`` to ``dst`` (same sharding), replacing the given tensors' values."""
    src, dst = Path(src), Path(dst)
    ck = open_checkpoint(src)
    _copy_side_files(src, dst)
    by_file: dict[Path, list[str]] = {}
    for n in ck.raw_names:
        by_file.setdefault(ck.info(n).file, []).append(n)
    for f, names in by_file.items():
        out = {n: (tensors[n] if n in tensors else ck.tensor(n, dtype=None)).contiguous() for n in names}
        save_file(out, str(dst / f.name), metadata={"format": "pt"})
    if (src / INDEX_FILE).exists():
        shutil.copy2(src / INDEX_FILE, dst / INDEX_FILE)
    ck.close()
    return dst


def plant_lowrank(src: str | Path, dst: str | Path, ranks: dict[str, int], *, rel_scale: float = 0.05, seed: int = 1) -> dict[str, torch.Tensor]:
    """Write ``dst`` = ``src`` with ``W += B @ A`` (rank ``ranks[name]``) on the named 2-D tensors.

    Each change has Frobenius norm ``rel_scale * ||W||``; returns the float32 deltas that were
    added (before rounding to the stored dtype).
    """
    ck = open_checkpoint(src)
    g = torch.Generator().manual_seed(seed)
    deltas, new = {}, {}
    for name, r in ranks.items():
        w = ck.tensor(name)
        out_dim, in_dim = w.shape
        b = torch.randn(out_dim, r, generator=g)
        a = torch.randn(r, in_dim, generator=g)
        d = b @ a
        d *= rel_scale * w.norm() / d.norm()
        deltas[name] = d
        new[name] = (w + d).to(DTYPES[ck.dtype(name)][0])
    ck.close()
    rewrite_checkpoint(src, dst, new)
    return deltas


def quantize_fp8_blocks(w: torch.Tensor, block: int = FP8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3 style: ``float8_e4m3fn`` weight and a per-block ``scale_inv`` (amax / 448)."""
    rows, cols = w.shape
    gr, gc = math.ceil(rows / block), math.ceil(cols / block)
    padded = torch.zeros(gr * block, gc * block)
    padded[:rows, :cols] = w.float()
    tiles = padded.view(gr, block, gc, block)
    amax = tiles.abs().amax(dim=(1, 3)).clamp_min(1e-12)
    scale = amax / 448.0
    q = (tiles / scale[:, None, :, None]).view(gr * block, gc * block)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), scale.float()


def save_fp8_copy(src: str | Path, dst: str | Path, min_dim: int = 1) -> list[str]:
    """Copy ``src`` with every 2-D weight (both dims >= ``min_dim``, not the embedding) stored as FP8 + scale."""
    src, dst = Path(src), Path(dst)
    ck = open_checkpoint(src)
    _copy_side_files(src, dst)
    out, quantised = {}, []
    for n in ck.raw_names:
        t = ck.tensor(n, dtype=None)
        if t.dim() == 2 and n.endswith(".weight") and "embed" not in n and min(t.shape) >= min_dim:
            q, s = quantize_fp8_blocks(t)
            out[n], out[n + "_scale_inv"] = q, s
            quantised.append(n)
        else:
            out[n] = t
    ck.close()
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return quantised


def llama_layout(hidden: int, intermediate: int, layers: int, vocab: int) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a Llama model (untied head), in storage order."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{m}.weight"] = (hidden, hidden)
        shapes[p + "mlp.gate_proj.weight"] = (intermediate, hidden)
        shapes[p + "mlp.up_proj.weight"] = (intermediate, hidden)
        shapes[p + "mlp.down_proj.weight"] = (hidden, intermediate)
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def write_random_bf16_pair(folder: str | Path, total_gb: float, *, n_modified: int = 4, shard_gb: float = 0.5,
                           hidden: int = 2048, intermediate: int = 5632, vocab: int = 32000, seed: int = 0) -> tuple[Path, Path, list[str]]:
    """Two sharded bf16 Llama folders (``base/`` and ``ft/``) of random weights, ``total_gb`` each, differing in a few tensors.

    The layer count is chosen to reach ``total_gb``; weights are slices of one random pool at
    shifted offsets (fast to write), and ``n_modified`` MLP tensors of the fine-tune get a small
    random change. Both folders load with ``transformers``. Returns ``(base, ft, modified_names)``.
    """
    folder = Path(folder)
    per_layer = 2 * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden)
    layers = max(1, round((total_gb * (1 << 30) - 4 * vocab * hidden) / per_layer))
    shapes = llama_layout(hidden, intermediate, layers, vocab)
    names = list(shapes)
    mlp = [n for n in names if ".mlp." in n]
    modified = mlp[:: max(1, len(mlp) // n_modified)][:n_modified]
    g = torch.Generator().manual_seed(seed)
    biggest = max(math.prod(s) for s in shapes.values())
    pool = (torch.randn(biggest + 8192, generator=g) * 0.02).to(torch.bfloat16)
    shard_bytes = shard_gb * (1 << 30)
    shards: list[list[str]] = [[]]
    size = 0
    for n in names:
        nbytes = 2 * math.prod(shapes[n])
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(n)
        size += nbytes
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
              "num_hidden_layers": layers, "num_attention_heads": hidden // 128, "num_key_value_heads": hidden // 128,
              "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "hidden_act": "silu"}
    for which in ("base", "ft"):
        d = folder / which
        d.mkdir(parents=True, exist_ok=True)
        weight_map = {}
        for si, shard in enumerate(shards):
            fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
            out = {}
            for n in shard:
                numel = math.prod(shapes[n])
                off = (names.index(n) * 977) % 8192
                t = pool[off : off + numel].view(shapes[n]).clone()
                if which == "ft" and n in modified:
                    t = (t.float() + 1e-3 * torch.randn(shapes[n], generator=g)).to(torch.bfloat16)
                out[n] = t
                weight_map[n] = fname
            save_file(out, str(d / fname), metadata={"format": "pt"})
            del out
        (d / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (d / "config.json").write_text(json.dumps(config))
    return folder / "base", folder / "ft", modified
