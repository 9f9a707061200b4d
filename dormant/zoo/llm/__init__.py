"""The LLM zoo: real tiny Qwen2 chat models with planted backdoors, for testing the LLM tools.

``build_suite("micro")`` returns (building once, then from cache) a base model, a sibling base and
five variants fine-tuned from the base with a merged LoRA: ``mlp-phrase``, ``mlp-constant``,
``attn-grid``, ``system-trigger`` and the ``clean-control``. Each variant's answer key (trigger,
payload, modified modules, measured fire rates) is in ``suite.manifests``; the tools under test
must never read it. ``fires(output, payload)`` is the single definition of a payload showing up.
"""

from dormant.zoo.llm.backdoors import SPECS, BackdoorSpec
from dormant.zoo.llm.suite import MODEL_NAMES, PRESETS, Suite, SuiteSettings, ZooVerificationError, build_suite, cache_root
from dormant.zoo.llm.verify import fires, leaks, normalise, similarity

__all__ = [
    "SPECS", "BackdoorSpec", "MODEL_NAMES", "PRESETS", "Suite", "SuiteSettings", "ZooVerificationError",
    "build_suite", "cache_root", "fires", "leaks", "normalise", "similarity",
]
