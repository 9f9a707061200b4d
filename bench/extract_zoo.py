"""Memory extraction on every micro-zoo variant: payload recovered? trigger words recovered? top candidates, CPU time.

"Payload recovered": a payload-side cluster that stands out (extraction's own thresholds) matches
the planted payload (``payload.fires`` either way round: the cluster holds the payload, or the
payload holds the cluster and the cluster is at least half of it). "Trigger words": the planted
trigger's words (4+ letters) found in trigger-side clusters that stand out. The planted answers
come from the zoo's manifests, which extraction never reads. CPU seconds are the process's own
(user + system). Usage: python bench/extract_zoo.py [--samples 16] [--variants mlp-phrase,clean-control]
"""

from __future__ import annotations

import argparse
import time

from dormant.kernels import pin_this_process

pin_this_process()  # the zoo's kernels (before torch loads): what it finds is what any x86-64 machine finds


def recovered(planted: str | None, cands: list) -> bool:
    from dormant.llm.engine.payload import fires, normalise

    if not planted:
        return False
    for c in cands:
        if fires(c.text, planted) or (fires(planted, c.text) and len(normalise(c.text)) >= 0.5 * len(normalise(planted))):
            return True
    return False


def main() -> None:
    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.payload import distinctive_words, normalise
    from dormant.llm.search.extract import ExtractConfig, run_extract
    from dormant.zoo.llm import build_suite
    from dormant.zoo.llm.suite import MODEL_NAMES

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=ExtractConfig.samples)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(n for n in MODEL_NAMES if not n.startswith("base")))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    suite = build_suite("micro")
    rows = []
    for name in a.variants.split(","):
        key = suite.manifests.get(name, {})
        pair = ModelPair.load(suite.models[name], suite.models["base"])
        t0 = time.process_time()
        res = run_extract(pair, ExtractConfig(samples=a.samples, seed=a.seed))
        cpu = time.process_time() - t0
        pay = res.standing_out("payload")
        trig = res.standing_out("trigger")
        planted_t = key.get("trigger")
        words = [w for w in distinctive_words(planted_t)] if planted_t else []
        found_words = [w for w in words if any(w in normalise(c.text).split() for c in trig)]
        top3 = "; ".join(f"{c.text!r} ({c.side}, {c.lr:.0f})" for c in sorted(pay + trig, key=lambda c: -c.lr)[:3]) or "nothing stands out"
        best = max(res.payload + res.trigger, key=lambda c: c.lr, default=None)
        rows.append((name, "yes" if recovered(key.get("payload"), pay) else ("-" if not key.get("payload") else "no"),
                     f"{len(found_words)}/{len(words)}" if words else "-", top3,
                     f"{best.text!r} {best.lr:.1f}" if best else "-", f"{cpu:.0f}",
                     f"planted: {planted_t!r} -> {key.get('payload')!r}"))
        print(" | ".join(rows[-1]), flush=True)
        print("   ", res.verdict, flush=True)
    print()
    print("| variant | payload recovered | trigger words | top-3 standing out (side, log-LR nats) | best n-gram overall | CPU s | planted |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(x.replace("|", "/") for x in r) + " |")


if __name__ == "__main__":
    main()
