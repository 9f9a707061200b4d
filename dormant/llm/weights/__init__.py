"""Weight side (no forward passes): what changed between a fine-tune and its base, and what it means.

* ``names``: architecture-aware grouping of tensor names (Qwen2, Llama/Mistral, DeepSeek-V3, ...);
* ``diff``: which base a fine-tune came from and which tensors changed;
* ``delta``: spectra, effective and LoRA ranks, sibling alignment of the change;
* ``readout``: the change's singular vectors read through the vocabulary (payload and trigger side);
* ``lora_export``: the change written as a PEFT LoRA adapter, and checked;
* ``plots``: figures (heatmap, spectra, rank per layer).
"""
