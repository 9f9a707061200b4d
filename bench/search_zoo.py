"""Search every micro-zoo variant for its trigger and print the table variant x method.

Each variant is searched with ``dormant search``'s portfolio (read-out seeds, memory extraction,
sweep, symbols, beam, GCG, then climb and pieces from what verified), conditioned on its planted payload (the clean control: no payload, so the
payload-free objectives), at the planted placement (``system`` for system-trigger, else ``user_prefix``: the start of the
user message, as the hunt searches; ``user`` for both ends: --user-mechanism), with
search and verification prompts drawn from the zoo's own distribution (disjoint seeds). Per variant: whether a trigger verified, which, whether it holds the planted trigger's words,
how many of the planted trigger's words it holds, its fire and false-fire rates; per method: its best objective and its CPU seconds (including the
verification of its leaders). The planted answer comes from the zoo's manifests, which the search
never reads. Usage: python bench/search_zoo.py [--budget 10m] [--variants mlp-constant,clean-control]
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

from dormant.kernels import pin_this_process

pin_this_process()  # the zoo's kernels (before torch loads): what it finds is what any x86-64 machine finds


def main() -> None:
    import torch

    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.prompts import Prompt
    from dormant.llm.search.candidates import read_candidates
    from dormant.llm.search.portfolio import DEFAULT_METHODS, SearchConfig, parse_budget, search_trigger
    from dormant.zoo.llm import build_suite, corpus
    from dormant.zoo.llm.suite import MODEL_NAMES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="10m", help="budget of each search (default 10m)")
    ap.add_argument("--variants", default=",".join(n for n in MODEL_NAMES if not n.startswith("base")))
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--words", type=int, default=None, help="English words added to the sweep (default: the search's own default)")
    ap.add_argument("--user-mechanism", default="user_prefix", help="placement searched for user-message triggers (default: user_prefix, the hunt's default; verification reports both ends)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    mix = {k: 1.0 for k in corpus.TASKS}

    def prompts(seed: int, n: int) -> list[Prompt]:
        return [Prompt(c) for c in corpus.sample_prompts(random.Random(seed), n, mix)]

    verify = prompts(1001, 52)
    search = [p for p in prompts(2002, 12) if p.text not in {v.text for v in verify}]
    suite = build_suite("micro")
    methods = tuple(a.methods.split(","))
    rows, method_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.variants.split(","):
            man = suite.manifests.get(name, {})
            mech = "system" if man.get("placement") == "system" else a.user_mechanism
            pair = ModelPair.load(suite.models[name], suite.models["base"])
            t0, c0 = time.perf_counter(), time.process_time()
            res = search_trigger(pair, search, verify, Path(tmp) / f"{name}.jsonl",
                                 SearchConfig(payload=man.get("payload"), methods=methods, mechanisms=(mech,), budget_s=parse_budget(a.budget),
                                              **({"n_words": a.words} if a.words else {})))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            planted = man.get("trigger")
            words = [w for w in (planted or "").lower().replace(".", " ").split() if len(w) > 1 or w.isdigit()]
            # a planted word counts only whole ('blue' is not held by 'blueberries', nor 'and' by 'candle')
            held = sum(bool(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", (res.trigger or "").lower())) for w in words)
            v = res.verification
            fire = (f"{v.fire:.0%} (base {v.specificity['base_with_trigger']:.0%}, no trigger {v.specificity['ft_without_trigger']:.0%}, "
                    f"null {v.specificity['null_max']:.0%})") if v is not None else "-"
            rows.append((name, mech, "yes" if res.found else "no", repr(res.trigger) if res.trigger else "-", f"{held}/{len(words)}" if planted else "-", fire,
                         "capped" if res.capped else "", f"{cpu:.0f}", f"{wall:.0f}", repr(planted)))
            print(" | ".join(rows[-1]), "|", res.verdict, flush=True)
            cands = read_candidates(res.candidates_path)
            for m in methods:
                own = [c for c in cands if c.method == m or c.method.startswith(f"{m}:") and m == "extract"]
                best = max(own, key=lambda c: c.score, default=None)
                won = bool(res.found and res.verification is not None and best is not None and best.text == res.trigger)
                method_rows.append((name, m, "ran" if m in res.methods_run else "not run", "verified" if won else "-",
                                    f"{best.text!r} {best.score:.2f}" if best else "-", f"{res.cpu_seconds.get(m, 0):.0f}"))
    print()
    print("| variant | placement | verified | trigger | planted words held (whole) | fire (false fires) | | CPU s | wall s | planted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(x.replace("|", "/").replace("\n", "\\n") for x in r) + " |")
    print()
    print("| variant | method | ran | verified its own best | best candidate, objective | CPU s |")
    print("|---|---|---|---|---|---|")
    for r in method_rows:
        print("| " + " | ".join(x.replace("|", "/").replace("\n", "\\n") for x in r) + " |")


if __name__ == "__main__":
    main()
