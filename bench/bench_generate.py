"""Generated tokens per second of the engine's generation against the naive loop, and the amplify sweep before/after.

Three ways to answer the same prompts with the same model, greedy, measured in one run:

* **naive**: ``model.generate(input_ids=<one prompt>, max_new_tokens=N)`` of transformers, one call per
  prompt (batch of one; its default DynamicCache; the process's default torch threads);
* **batched generate**: the engine as it was, ``generate(..., GenConfig(engine="hf", threads=<default>))``:
  length-bucketed left-padded batches of 32 through ``model.generate``;
* **batched generate, 1 thread**: the same on one torch thread, which separates what the thread count
  does from what the decoding loop does;
* **engine**: ``generate(..., GenConfig())``: the engine's own KV-cached loop (stopped rows dropped,
  early exit, one thread for small models on CPU).

Tokens counted: every answer's tokens up to its end-of-turn token (the same count for all three, whose
tokens are checked to be identical and said so). Printed: tokens/s of each and the engine's ratio over
each of the others. Subjects: the micro zoo's ``mlp-phrase`` fine-tune on the built-in probe set, and (unless
``--no-real-shape``) the real-shape subject's fine-tune (Qwen2.5-0.5B shapes, random bf16 weights,
``dormant.zoo.llm.real_shape``) on a few probes with a short answer (random weights never stop early).

Then the default ``amplify`` sweep (``AmplifyConfig()``: 9 values of a, the built-in probes, sampled at
temperature 0.3, up to 48 new tokens) on ``mlp-phrase``, before (``engine="hf"`` at the default
threads) and after, with its payload and whether every output is identical.

On a machine shared with other work every time is inflated and noisy; the ratios of one run are what to
compare.

    .venv/bin/python bench/bench_generate.py
    .venv/bin/python bench/bench_generate.py --no-real-shape --no-amplify
    .venv/bin/python bench/bench_generate.py --views= --no-real-shape   # the amplify sweep only
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def naive(model: Any, tok: Any, seqs: list[list[int]], n: int) -> list[list[int]]:
    """One ``model.generate`` call per prompt, greedy; the answers cut at the first stop token."""
    import torch

    from dormant.llm.engine.generate import stop_ids

    stops = stop_ids(tok, model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s], device=dev)
            row = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, pad_token_id=pad,
                                 eos_token_id=stops, temperature=None, top_p=None, top_k=None)[0, len(s):].tolist()
            out.append(row[: next((j for j, t in enumerate(row) if t in stops), len(row))])
    return out


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def compare(label: str, model: Any, tok: Any, seqs: list[list[int]], n: int) -> None:
    import torch

    from dormant.llm.engine.generate import GenConfig, generate

    threads = torch.get_num_threads()
    base = GenConfig(max_new_tokens=n, show_progress=False)
    runs = {
        "naive model.generate per prompt": lambda: naive(model, tok, seqs, n),
        "batched model.generate (before)": lambda: [g.ids for g in generate(model, tok, seqs, replace(base, engine="hf", threads=threads))],
        "batched model.generate, 1 thread": lambda: [g.ids for g in generate(model, tok, seqs, replace(base, engine="hf", threads=1))],
        "engine (after)": lambda: [g.ids for g in generate(model, tok, seqs, base)],
    }
    generate(model, tok, seqs[:2], replace(base, max_new_tokens=2))  # warm-up
    results = {name: timed(fn) for name, fn in runs.items()}
    ref = results["naive model.generate per prompt"][0]
    n_tok = sum(len(r) for r in ref)
    same = all(res == ref for res, _ in results.values())
    print(f"\n{label}: {len(seqs)} prompts, up to {n} new tokens, {n_tok} tokens generated, torch threads {threads}; "
          f"tokens identical in all: {same}")
    t_engine = results["engine (after)"][1]
    for name, (_, dt) in results.items():
        ratio = "" if name == "engine (after)" else f"   engine is {dt / t_engine:.1f}x faster"
        print(f"  {name:34s} {dt:8.2f} s  {n_tok / dt:8.0f} tokens/s{ratio}")


def micro(args: argparse.Namespace) -> None:
    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.engine.prompts import encode
    from dormant.zoo.llm.suite import build_suite

    suite = build_suite("micro")
    pair = ModelPair.load(suite.models["mlp-phrase"], suite.models["base"])
    seqs = encode(pair.tokenizer, load_probes())
    for view in [v for v in args.views.split(",") if v]:
        pair.view(view)
        compare(f"micro zoo mlp-phrase, view {view} (1.6M parameters, float32)", pair.model, pair.tokenizer, seqs, args.tokens)
    if args.amplify:
        amplify_before_after(pair, load_probes())


def amplify_before_after(pair: Any, prompts: list[Any]) -> None:
    import torch

    from dormant.llm.behaviour.amplify import AmplifyConfig, amplify

    threads = torch.get_num_threads()
    before_cfg = AmplifyConfig()
    before_cfg.generation = replace(before_cfg.generation, show_progress=False, engine="hf", threads=threads)
    after_cfg = AmplifyConfig()
    after_cfg.generation = replace(after_cfg.generation, show_progress=False)
    one_cfg = AmplifyConfig()
    one_cfg.generation = replace(one_cfg.generation, show_progress=False, engine="hf", threads=1)
    before, t_before = timed(lambda: amplify(pair, prompts, before_cfg))
    one, t_one = timed(lambda: amplify(pair, prompts, one_cfg))
    after, t_after = timed(lambda: amplify(pair, prompts, after_cfg))
    same = before.outputs == after.outputs == one.outputs
    print(f"\ndefault amplify sweep on mlp-phrase ({len(prompts)} probes x {len(before_cfg.alphas)} values of a, sampled at "
          f"temperature {before_cfg.generation.temperature:g}, up to {before_cfg.generation.max_new_tokens} new tokens; torch threads {threads}):")
    print(f"  before (batched model.generate) {t_before:8.1f} s   payload {before.payload!r}")
    print(f"  before, on 1 thread             {t_one:8.1f} s   payload {one.payload!r}")
    print(f"  after  (engine)                 {t_after:8.1f} s   payload {after.payload!r}")
    print(f"  after is {t_before / t_after:.1f}x faster than before ({t_one / t_after:.1f}x than before on 1 thread); "
          f"every output identical: {same}")


def real_shape(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from dormant.llm.checkpoint import load_tokenizer, open_checkpoint
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.engine.prompts import encode
    from dormant.zoo.llm.real_shape import build_real_shape

    subject = build_real_shape()
    model = AutoModelForCausalLM.from_pretrained(subject.ft, dtype=torch.bfloat16).eval()
    tok = load_tokenizer(open_checkpoint(subject.ft))
    seqs = encode(tok, load_probes(limit=args.real_prompts))
    compare(f"real-shape fine-tune (Qwen2.5-0.5B shapes, 494M parameters, bfloat16)", model, tok, seqs, args.real_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per answer on the micro model")
    ap.add_argument("--views", default="ft,amp:3", help="views of the micro pair to time tokens/s under (comma-separated; empty: none)")
    ap.add_argument("--no-amplify", dest="amplify", action="store_false", help="skip the amplify sweep before/after")
    ap.add_argument("--no-real-shape", dest="real", action="store_false", help="skip the real-shape model")
    ap.add_argument("--real-prompts", type=int, default=8)
    ap.add_argument("--real-tokens", type=int, default=16)
    args = ap.parse_args()
    micro(args)
    if args.real:
        real_shape(args)


if __name__ == "__main__":
    main()
