"""Chat-model forensics: read checkpoints, find the base, decompose and read the weight change.

Weight side (no forward passes):

* ``checkpoint``: the one reader of model folders (sharded safetensors, FP8 block scales, local
  Hub cache), tensor by tensor through memory maps;
* ``names``: architecture-aware grouping of tensor names (Qwen2, Llama/Mistral, DeepSeek-V3, ...);
* ``diff``: which base a fine-tune came from and which tensors changed;
* ``delta``: spectra, effective and LoRA ranks, sibling alignment of the change;
* ``readout``: the change's singular vectors read through the vocabulary (payload and trigger side);
* ``lora_export``: the change written as a PEFT LoRA adapter, and checked;
* ``weights_plots``: figures (heatmap, spectra, rank per layer).

Synthetic checkpoints with known answers (for tests and benchmarks) live in ``dormant.zoo.llm.synthetic``.

Submodules are imported on use (``from dormant.llm.diff import diff_models``) so that importing the
package stays cheap.
"""
