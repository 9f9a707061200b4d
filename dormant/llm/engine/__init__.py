"""Behaviour engine: one loaded model under any view of the weight change, run fast and exactly.

* ``views``: the view grammar (``base``, ``ft``, ``amp:3``, ``restore:19-23`` ...);
* ``pair``: the fine-tune and its base held as one model, views written in place;
* ``prompts``: chat rendering through the tokenizer's template, trigger insertion, prompt files;
* ``probes``: built-in, versioned probe sets;
* ``batching``: length-bucketed batches with out-of-memory back-off;
* ``scoring``: next-token and teacher-forced distributions under views, and their contrasts;
* ``generate``: batched greedy or sampled continuations.
"""
