"""The trigger sweep vs naive batched scoring of full prompts, on a micro-zoo variant.

Baseline (naive, batched): every candidate inserted into every search prompt, each full prompt
scored under the fine-tune and under the base (payload log-likelihood, batched by the engine but
without reuse of the template's shared prefix), score = fine-tune gain minus the base's gain where
positive. Engine, one pass: the same objective with the shared prefix computed once and the base
scored only where the fine-tune's gain is positive. Engine, two passes (the default): a coarse
pass under the fine-tune on one prompt, then the best ``--refine`` in full.

All three score the same candidates (the first ``--n`` sweep candidates plus the planted trigger)
in the same process; the script prints wall-time ratios against the baseline and whether each
ranking puts the same candidate first (no absolute-time claims).

    .venv/bin/python bench/bench_sweep.py                    # mlp-constant, 512 candidates
    .venv/bin/python bench/bench_sweep.py --variant mlp-phrase --n 256
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="mlp-constant")
    ap.add_argument("--n", type=int, default=512, help="sweep candidates scored (the first N, plus the planted trigger)")
    ap.add_argument("--refine", type=int, default=32, help="candidates the two-pass sweep scores in full")
    ap.add_argument("--prompts", type=int, default=4, help="search prompts per candidate")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.prompts import Prompt, encode, insert_trigger
    from dormant.llm.engine.scoring import Arm, ScoreConfig, score_arms
    from dormant.llm.search.candidates import CandidateStore
    from dormant.llm.search.objectives import Objective
    from dormant.llm.search.sweep import run_sweep, sweep_candidates
    from dormant.zoo.llm import build_suite, corpus

    torch.set_num_threads(args.threads)
    suite = build_suite("micro")
    man = suite.manifests[args.variant]
    pair = ModelPair.load(suite.models[args.variant], suite.models["base"])
    prompts = [Prompt(c) for c in corpus.sample_prompts(random.Random(2002), args.prompts, {k: 1.0 for k in corpus.TASKS})]
    texts = list(dict.fromkeys(sweep_candidates(pair.tokenizer, n_words=3000)[: args.n] + [man["trigger"]]))
    payload = man["payload"]
    print(f"{args.variant}: {len(texts)} candidates x {len(prompts)} prompts, payload {payload!r}, {args.threads} thread(s)")

    # -- baseline: naive batched full prompts, both models, no prefix reuse ------------------
    cfg = ScoreConfig(batch_size=128, prefix_reuse=False, show_progress=False)
    pids = pair.tokenizer(payload, add_special_tokens=False)["input_ids"][:8]

    def naive_terms(items: list[Prompt]) -> tuple[list[float], list[float]]:
        ids = encode(pair.tokenizer, items)
        res = score_arms(pair, [Arm("ft", ids, "ft"), Arm("base", ids, "base")], [], continuations=[list(pids)] * len(ids), config=cfg)
        return [r.arms["ft"]["payload_logprob"] for r in res.rows], [r.arms["base"]["payload_logprob"] for r in res.rows]

    t0 = time.perf_counter()
    b_ft, b_base = naive_terms(prompts)
    n = len(prompts)
    naive: dict[str, float] = {}
    for start in range(0, len(texts), 64):
        part = texts[start : start + 64]
        ft, base = naive_terms([insert_trigger(p, t, "user_prefix") for t in part for p in prompts])
        for i, t in enumerate(part):
            g_ft = sum(ft[i * n : (i + 1) * n]) / n - sum(b_ft) / n
            g_base = sum(base[i * n : (i + 1) * n]) / n - sum(b_base) / n
            naive[t] = g_ft - max(0.0, g_base)
    t_naive = time.perf_counter() - t0
    pair.ft()

    def engine(coarse: int) -> tuple[float, list[tuple[str, float]]]:
        obj = Objective(pair, prompts, "user_prefix", payload)
        with tempfile.TemporaryDirectory() as tmp:
            store = CandidateStore(Path(tmp) / "c.jsonl")
            t = time.perf_counter()
            run_sweep(obj, texts, store, chunk=64, coarse_prompts=coarse, refine=args.refine)
            el = time.perf_counter() - t
            return el, [(c.text, c.score) for c in store.best(10)]

    t_one, best_one = engine(0)
    t_two, best_two = engine(1)
    top_naive = sorted(naive.items(), key=lambda kv: -kv[1])[:10]
    agree_one = max(abs(naive[t] - s) for t, s in best_one)
    print()
    print(f"{'method':34s} {'seconds':>8s} {'vs naive':>9s}  best candidate")
    print(f"{'naive batched, full prompts':34s} {t_naive:8.1f} {1.0:8.2f}x  {top_naive[0][0]!r} ({top_naive[0][1]:.2f})")
    print(f"{'engine, one pass':34s} {t_one:8.1f} {t_naive / t_one:8.2f}x  {best_one[0][0]!r} ({best_one[0][1]:.2f})")
    print(f"{'engine, two passes (default)':34s} {t_two:8.1f} {t_naive / t_two:8.2f}x  {best_two[0][0]!r} ({best_two[0][1]:.2f})")
    print()
    print(f"one pass vs naive: largest score difference among its top 10: {agree_one:.4f}")
    print(f"top 10, naive:      {[t for t, _ in top_naive]}")
    print(f"top 10, two passes: {[t for t, _ in best_two]}")
    print(f"planted trigger {man['trigger']!r}: naive rank {[t for t, _ in sorted(naive.items(), key=lambda kv: -kv[1])].index(man['trigger']) + 1}"
          f" of {len(texts)}; first in the two-pass sweep: {best_two[0][0] == man['trigger']}")


if __name__ == "__main__":
    main()
