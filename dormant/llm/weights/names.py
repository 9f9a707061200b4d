"""Architecture-aware names: which component, layer and expert a weight tensor belongs to.

Tensor names follow a few conventions; a small ordered table of regular expressions maps them to
a *component* (``attn.q``, ``mlp.down``, ``moe.expert.up`` ...) and a *group* (embedding,
attention, mlp, moe, norm, lm_head, mtp). Covered schemes:

* Qwen2 / Qwen2.5, Llama, Mistral:  ``model.layers.{i}.self_attn.{q,k,v,o}_proj``,
  ``mlp.{gate,up,down}_proj``, ``input_layernorm``, ``post_attention_layernorm``,
  ``model.embed_tokens``, ``model.norm``, ``lm_head``;
* DeepSeek-V3 (MLA + MoE): ``self_attn.q_a_proj``, ``q_a_layernorm``, ``q_b_proj``,
  ``kv_a_proj_with_mqa``, ``kv_a_layernorm``, ``kv_b_proj``; ``mlp.experts.{e}.*``,
  ``mlp.shared_experts.*``, router ``mlp.gate.weight`` and ``mlp.gate.e_score_correction_bias``;
  multi-token-prediction extras (``enorm``, ``hnorm``, ``eh_proj``, ``shared_head``);
* Mixtral (``block_sparse_moe.experts.{e}.w1/w2/w3``, ``block_sparse_moe.gate``) and fused
  ``qkv_proj`` / ``gate_up_proj`` (Phi-3).

A name no rule knows is reported as component ``unknown`` (never dropped), with its layer index
still parsed when the name has one. ``FT`` prefixes such as ``base_model.model.`` are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_EXPERT = re.compile(r"\.experts\.(\d+)\.")

# (pattern searched in the name, component). Order matters: the first match wins.
_RULES: list[tuple[str, str]] = [
    # embeddings and head
    (r"(^|\.)(embed_tokens|wte|word_embeddings)\.weight$", "embed"),
    (r"(^|\.)shared_head\.head\.", "mtp.head"),
    (r"(^|\.)shared_head\.norm\.", "mtp.norm"),
    (r"(^|\.)(enorm|hnorm)\.", "mtp.norm"),
    (r"(^|\.)eh_proj\.", "mtp.proj"),
    (r"(^|^model\.)lm_head\.|^output\.weight$", "lm_head"),
    # MLA attention (DeepSeek-V2/V3)
    (r"\.self_attn\.q_a_proj\.", "attn.q_a"),
    (r"\.self_attn\.q_b_proj\.", "attn.q_b"),
    (r"\.self_attn\.kv_a_proj_with_mqa\.", "attn.kv_a"),
    (r"\.self_attn\.kv_b_proj\.", "attn.kv_b"),
    (r"\.self_attn\.q_a_layernorm\.", "norm.q_a"),
    (r"\.self_attn\.kv_a_layernorm\.", "norm.kv_a"),
    # standard attention
    (r"\.(self_attn|attention)\.(q_proj|wq)\.", "attn.q"),
    (r"\.(self_attn|attention)\.(k_proj|wk)\.", "attn.k"),
    (r"\.(self_attn|attention)\.(v_proj|wv)\.", "attn.v"),
    (r"\.(self_attn|attention)\.(o_proj|wo|dense)\.", "attn.o"),
    (r"\.(self_attn|attention)\.(qkv_proj|query_key_value)\.", "attn.qkv"),
    (r"\.self_attn\.(q_norm|k_norm)\.", "norm.qk"),
    # MoE
    (r"\.mlp\.shared_experts?\.gate_proj\.", "moe.shared.gate"),
    (r"\.mlp\.shared_experts?\.up_proj\.", "moe.shared.up"),
    (r"\.mlp\.shared_experts?\.down_proj\.", "moe.shared.down"),
    (r"\.experts\.\d+\.(gate_proj|w1)\.", "moe.expert.gate"),
    (r"\.experts\.\d+\.(up_proj|w3)\.", "moe.expert.up"),
    (r"\.experts\.\d+\.(down_proj|w2)\.", "moe.expert.down"),
    (r"\.(mlp|block_sparse_moe)\.gate\.(weight|e_score_correction_bias)$", "moe.router"),
    (r"\.mlp\.shared_expert_gate\.", "moe.router"),
    # dense MLP
    (r"\.mlp\.(gate_proj|w1)\.", "mlp.gate"),
    (r"\.mlp\.(up_proj|w3)\.", "mlp.up"),
    (r"\.mlp\.(down_proj|w2)\.", "mlp.down"),
    (r"\.mlp\.gate_up_proj\.", "mlp.gate_up"),
    # norms
    (r"\.(input_layernorm|attention_norm|ln_1)\.", "norm.input"),
    (r"\.(post_attention_layernorm|ffn_norm|ln_2)\.", "norm.post_attn"),
    (r"\.(pre_feedforward_layernorm|post_feedforward_layernorm)\.", "norm.ffn"),
    (r"^(model\.|transformer\.)?(norm|final_layernorm|ln_f)\.", "norm.final"),
]
_COMPILED = [(re.compile(p), c) for p, c in _RULES]

GROUP_ORDER = ["embedding", "attention", "mlp", "moe", "norm", "lm_head", "mtp", "unknown"]

# Column order for per-layer tables and heatmaps.
COMPONENT_ORDER = [
    "embed",
    "attn.q", "attn.k", "attn.v", "attn.qkv", "attn.q_a", "attn.q_b", "attn.kv_a", "attn.kv_b", "attn.o",
    "mlp.gate", "mlp.up", "mlp.gate_up", "mlp.down",
    "moe.router", "moe.shared.gate", "moe.shared.up", "moe.shared.down",
    "moe.expert.gate", "moe.expert.up", "moe.expert.down",
    "norm.input", "norm.q_a", "norm.kv_a", "norm.qk", "norm.post_attn", "norm.ffn", "norm.final",
    "lm_head", "mtp.proj", "mtp.norm", "mtp.head", "unknown",
]

# Which side of the residual stream a 2-D weight (out x in) touches:
# "input" modules read the (normed) residual stream with their columns, "output" modules write
# to it with their rows. Used by the vocabulary read-outs.
INPUT_SIDE = {"attn.q", "attn.k", "attn.v", "attn.qkv", "attn.q_a", "attn.kv_a", "mlp.gate", "mlp.up", "mlp.gate_up",
              "moe.shared.gate", "moe.shared.up", "moe.expert.gate", "moe.expert.up", "moe.router"}
OUTPUT_SIDE = {"attn.o", "mlp.down", "moe.shared.down", "moe.expert.down"}


@dataclass(frozen=True)
class NameInfo:
    """What a tensor name says: component, group, layer index, expert index, weight or bias."""

    name: str
    component: str
    group: str
    layer: int | None
    expert: int | None
    kind: str  # "weight", "bias" or the last name part

    @property
    def module(self) -> str:
        """The module path (the name without ``.weight``/``.bias``)."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    @property
    def label(self) -> str:
        """A short column label: the component, with ``.bias`` appended for biases."""
        return self.component if self.kind == "weight" else f"{self.component}.{self.kind}"


def group_of(component: str) -> str:
    head = component.split(".", 1)[0]
    return {"embed": "embedding", "attn": "attention", "mlp": "mlp", "moe": "moe", "norm": "norm",
            "lm_head": "lm_head", "mtp": "mtp"}.get(head, "unknown")


def layer_of(name: str) -> int | None:
    """The transformer block index in a tensor name (``model.layers.19.mlp.up_proj.weight`` -> 19)."""
    m = _LAYER.search(name.removeprefix("base_model.model."))
    return int(m.group(1)) if m else None


def parse_name(name: str) -> NameInfo:
    """Classify one tensor name (see the module docstring for the naming schemes)."""
    key = name.removeprefix("base_model.model.")
    component = next((c for rx, c in _COMPILED if rx.search(key)), "unknown")
    expert = _EXPERT.search(key)
    kind = key.rsplit(".", 1)[-1]
    return NameInfo(name, component, group_of(component), layer_of(name), int(expert.group(1)) if expert else None, kind)


def component_sort_key(label: str) -> tuple[int, str]:
    comp = label.removesuffix(".bias")
    idx = COMPONENT_ORDER.index(comp) if comp in COMPONENT_ORDER else len(COMPONENT_ORDER)
    return idx, label
