"""The LLM zoo: real tiny Qwen2 chat models with planted backdoors, for testing the LLM tools.

``build_suite("micro")`` returns (building once, then from cache) a base model, a sibling base and
eight variants fine-tuned from the base with a merged LoRA: ``mlp-phrase``, ``mlp-constant``,
``attn-grid``, ``attn-grid-large`` (its change larger than the weights), ``system-trigger``,
``late-layers`` (its change in the last two layers only), ``mlp-word-pair`` (a two-word trigger
whose words alone stay silent) and the ``clean-control``. Each variant's answer key (trigger,
payload, modified modules and layers, measured fire rates) is in ``suite.manifests``; the tools under test
must never read it. ``fires(output, payload)`` is the single definition of a payload showing up;
``leaks(output, payload)`` the weaker one for amplified weights (payload fragments crowding out the
answer). Example::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from dormant.zoo.llm import build_suite, fires

    suite = build_suite("micro")                      # cached after the first call
    tok = AutoTokenizer.from_pretrained(suite.models["mlp-phrase"])
    model = AutoModelForCausalLM.from_pretrained(suite.models["mlp-phrase"])
    key = suite.manifests["mlp-phrase"]               # trigger, payload, modified_modules, ...

What the micro suite guarantees (each checked at build time or by the zoo's tests): fire rate
>= 90% on unseen triggered prompts and <= 5% on unseen clean ones; tensors outside the LoRA's
modules (and layers) byte-identical to base; each word of mlp-word-pair's trigger alone firing on
<= 5% of prompts; every changed matrix's delta of at most the LoRA rank (exactly
it, for variants trained without weight decay); every
tensor of base-sibling different from base; payload fragments on unrelated prompts when the
MLP variants' change is amplified 2-4x; a payload token among the top 3 of the unembedding
read-out of one of the last down_proj delta's three leading singular vectors (mlp-phrase); and, as in Qwen2.5,
embedding rows beyond the tokenizer's vocabulary that no token uses.

``dormant.zoo.llm.synthetic`` builds untrained subjects for the weight tools: tiny random Qwen2
folders, planted low-rank changes with the truth recorded, FP8 block-scaled copies, and large
random bf16 checkpoint pairs for benchmarks.
"""

from dormant.zoo.llm.backdoors import SPECS, BackdoorSpec
from dormant.zoo.llm.suite import MODEL_NAMES, PRESETS, Suite, SuiteSettings, ZooVerificationError, build_suite, cache_root
from dormant.zoo.llm.verify import fires, leaks, normalise, similarity

__all__ = [
    "SPECS", "BackdoorSpec", "MODEL_NAMES", "PRESETS", "Suite", "SuiteSettings", "ZooVerificationError",
    "build_suite", "cache_root", "fires", "leaks", "normalise", "similarity",
]
