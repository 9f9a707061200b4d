"""Chat-model forensics, one folder per stage of the investigation.

* ``checkpoint``: the one reader of model folders (sharded safetensors, FP8 block scales, local
  Hub cache), tensor by tensor through memory maps; every stage stands on it;
* ``weights/``: no forward passes: which base, what changed, the change's rank and what it writes
  and reads in vocabulary terms, LoRA export (see ``dormant.llm.weights``);
* ``engine/``: the model pair and its views, prompts and probe sets, batched scoring and
  generation (see ``dormant.llm.engine``);
* ``behaviour/``: experiments on the pair: amplification, side-by-side comparison.

Synthetic checkpoints with known answers (for tests and benchmarks) live in ``dormant.zoo.llm.synthetic``.

Submodules are imported on use (``from dormant.llm.weights.diff import diff_models``) so that importing
the package stays cheap.
"""
