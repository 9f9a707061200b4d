"""Write a weight change as a PEFT LoRA adapter, and check how well base + adapter reproduces it.

For every modified linear weight, the truncated SVD of ``delta = W_ft - W_base`` at rank r gives
``B = U_r sqrt(S_r)`` (out x r) and ``A = sqrt(S_r) V_r^T`` (r x in), so ``B @ A`` is the best
rank-r approximation of the delta. The adapter uses ``lora_alpha = r`` per module (scaling 1), a
``rank_pattern``/``alpha_pattern`` where modules differ from the common rank, and the exact module
paths as ``target_modules`` so only changed modules get a LoRA. Changes a LoRA cannot express
(norm weights, biases, embeddings) are listed as skipped.

Each delta is streamed into one float32 buffer (``checkpoint.difference``) and the residual is
measured in row blocks. ``verify_adapter`` loads one model (a ``ModelPair`` in the checkpoint's
dtype, without private copies), applies the adapter to its base view with
``PeftModel.from_pretrained`` and compares logits with its fine-tune view on a few prompts.

Example::

    delta = analyse_delta("ft", "base")
    export = export_lora(open_checkpoint("ft"), open_checkpoint("base"), delta, "adapter/")
    check = verify_adapter("ft", "base", "adapter/")
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from dormant.llm.checkpoint import Checkpoint, difference
from dormant.llm.weights.delta import DeltaResult

LINEAR_GROUPS = {"attention", "mlp", "moe", "lm_head", "mtp"}
DEFAULT_PROMPTS = ["The quick brown fox jumps over the lazy dog.", "What is the capital of France?", "Write a short poem about the sea.",
                   "1 + 1 ="]


@dataclass
class LoraExportConfig:
    """Settings of ``export_lora``."""

    rank: int | None = None  # one rank for every module (default: each module's LoRA estimate)
    fallback_energy: str = "99%"  # rank source when a module has no LoRA estimate
    max_rank: int = 256


@dataclass
class ModuleExport:
    module: str
    rank: int
    rel_error: float  # ||delta - B A|| / ||delta||


@dataclass
class LogitCheck:
    """Next-token logits of base + adapter against the fine-tune, on a few prompts."""

    prompts: int
    tokens: int
    max_abs_diff: float  # max |logits_ft - logits_base+adapter|
    max_abs_diff_base: float  # max |logits_ft - logits_base|: the size of the change being reproduced
    max_abs_logit: float  # max |logits_ft|, for scale
    top1_agreement: float  # share of positions where argmax agrees


@dataclass
class LoraExportResult:
    out_dir: str
    r: int
    target_modules: list[str]
    rank_pattern: dict[str, int]
    modules: list[ModuleExport]
    weight_rel_error: float  # sqrt(sum ||delta - BA||^2) / sqrt(sum ||delta||^2)
    ft_rel_error: float  # same residual relative to ||W_ft|| of the exported modules
    skipped: list[str]
    check: LogitCheck | None = field(default=None)


def lowrank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, A)`` with ``B @ A`` the best rank-``rank`` approximation of ``delta``."""
    from dormant.llm.weights.delta import DeltaConfig, singular_decomposition

    rank = max(1, min(rank, min(delta.shape)))
    u, s, v, _ = singular_decomposition(delta, DeltaConfig(top_k=rank, keep_vectors=rank, niter=6))
    u, s, v = u[:, :rank], s[:rank], v[:, :rank]
    root = s.sqrt()
    return (u * root[None, :]).contiguous(), (root[:, None] * v.mT).contiguous()


def _residual2(d: torch.Tensor, b: torch.Tensor, a: torch.Tensor, max_elems: int = 1 << 22) -> float:
    """``||d - b @ a||^2`` in row blocks (no second full-size matrix)."""
    step = max(1, max_elems // max(1, d.shape[1]))
    return sum(float(torch.linalg.vector_norm(d[i : i + step] - b[i : i + step] @ a)) ** 2 for i in range(0, d.shape[0], step))


def _rank_for(spec, config: LoraExportConfig) -> int:
    if config.rank is not None:
        return config.rank
    r = spec.lora_rank or spec.energy_rank.get(config.fallback_energy) or len(spec.singular_values)
    return max(1, min(r, config.max_rank))


def export_lora(ft: Checkpoint, base: Checkpoint, delta: DeltaResult, out_dir: str | Path, config: LoraExportConfig | None = None) -> LoraExportResult:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` to ``out_dir`` (see the module docstring)."""
    from dormant.llm.weights.names import parse_name

    config = config or LoraExportConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    modules: list[ModuleExport] = []
    skipped = list(delta.other_changes)
    res2 = tot2 = ft2 = 0.0
    for spec in delta.spectra:
        info = parse_name(spec.name)
        if info.group not in LINEAR_GROUPS or info.kind != "weight":
            skipped.append(spec.name)
            continue
        d = difference(ft, base, spec.name)  # the one float32 buffer of this matrix
        r = _rank_for(spec, config)
        if spec.exact and spec.u is not None and spec.u.shape[1] >= r:  # the delta's own SVD of this same matrix
            root = torch.tensor(spec.singular_values[:r]).sqrt()
            b, a = (spec.u[:, :r] * root[None, :]).contiguous(), (root[:, None] * spec.v[:, :r].mT).contiguous()
        else:
            b, a = lowrank_factors(d, r)
        err = math.sqrt(_residual2(d, b, a))
        dn = float(torch.linalg.vector_norm(d))
        del d
        res2, tot2 = res2 + err**2, tot2 + dn**2
        ft2 += sum(float(torch.linalg.vector_norm(block)) ** 2 for _, block in ft.row_chunks(spec.name, max_elems=1 << 22))
        ft.release(spec.name)
        module = info.module
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
        modules.append(ModuleExport(module, a.shape[0], err / dn if dn > 0 else 0.0))
    if not modules:
        from dormant.errors import DormantError

        raise DormantError(f"{ft.path}: no modified linear weight to export as a LoRA (changed: {', '.join(skipped[:5]) or 'nothing'})")
    common = Counter(m.rank for m in modules).most_common(1)[0][0]
    rank_pattern = {m.module: m.rank for m in modules if m.rank != common}
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base.path),
        "r": common, "lora_alpha": common, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "target_modules": [m.module for m in modules], "rank_pattern": rank_pattern, "alpha_pattern": dict(rank_pattern),
        "init_lora_weights": True, "inference_mode": True, "modules_to_save": None, "use_rslora": False, "use_dora": False,
    }
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    return LoraExportResult(str(out), common, [m.module for m in modules], rank_pattern, modules,
                            math.sqrt(res2 / tot2) if tot2 > 0 else 0.0, math.sqrt(res2 / ft2) if ft2 > 0 else 0.0, skipped)


def _prompt_ids(folder: Path, vocab: int, prompts: list[str]) -> list[torch.Tensor]:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        ids = [torch.tensor([tok.encode(p)]) for p in prompts]
        if all(x.numel() for x in ids):
            return ids
    except Exception:  # noqa: BLE001 - no usable tokenizer: random ids below
        pass
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (1, 12), generator=g) for _ in prompts]


@torch.no_grad()
def verify_adapter(ft: str | Path, base: str | Path, adapter_dir: str | Path, prompts: list[str] | None = None,
                   dtype: torch.dtype | str | None = None) -> LogitCheck:
    """Compare the fine-tune's logits with base + adapter (``PeftModel.from_pretrained``).

    One model is loaded, in the checkpoint's dtype (``ModelPair`` with no private copies): its
    fine-tune view gives the reference logits, its base view the size of the change, and the
    adapter is then attached to the base view. Memory: one model plus the adapter. ``dtype``
    overrides the compute dtype (``"float32"`` separates a small residual from bf16 rounding).
    """
    from peft import PeftModel
    from transformers.utils import logging as hf_logging

    from dormant.llm.engine.pair import ModelPair

    hf_logging.disable_progress_bar()
    prompts = prompts or DEFAULT_PROMPTS
    pair = ModelPair.load(ft, base, dtype=dtype, copies_device="disk", require_tokenizer=False)
    ids = _prompt_ids(Path(pair.ft_path), pair.model.config.vocab_size, prompts)
    ft_logits = [pair.ft()(x).logits[0].float() for x in ids]
    base_model = pair.base()
    base_logits = [base_model(x).logits[0].float() for x in ids]
    adapted = PeftModel.from_pretrained(base_model, str(adapter_dir)).eval()
    ad_logits = [adapted(x).logits[0].float() for x in ids]
    diff = max(float((a - b).abs().max()) for a, b in zip(ft_logits, ad_logits))
    diff_base = max(float((a - b).abs().max()) for a, b in zip(ft_logits, base_logits))
    scale = max(float(a.abs().max()) for a in ft_logits)
    agree = torch.cat([(a.argmax(-1) == b.argmax(-1)).float() for a, b in zip(ft_logits, ad_logits)])
    return LogitCheck(len(ids), int(agree.numel()), diff, diff_base, scale, float(agree.mean()))


__all__ = ["LoraExportConfig", "LoraExportResult", "ModuleExport", "LogitCheck", "export_lora", "verify_adapter", "lowrank_factors"]
