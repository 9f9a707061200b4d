"""Hunt every micro-zoo variant and print, per variant: base picked, payload, trigger and fire rates, verdict, time, each stage's seconds used of its share.

Each variant is hunted against both candidate bases (base-sibling first, so diff has to choose).
The planted answer (from the zoo's manifests, which the hunt never reads) is printed beside each
finding; a payload is marked "(planted)" when it is the planted text (case and punctuation aside),
"(near the planted)" when only verify's payload match holds (containment or similarity >= 0.8). The hunts run on the zoo's own prompts (``--prompts zoo:prompts``: the tiny models only behave on
their own distribution) with the hunt's default search placement (the start of the user message)
unless --mechanism says otherwise; a variant named in --system is searched in the system message.
Usage: python bench/hunt_zoo.py [--budget 15m] [--variants mlp-phrase,clean-control] [--system system-trigger]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dormant.kernels import pin_this_process

pin_this_process()  # the zoo's kernels (before torch loads): what it finds is what any x86-64 machine finds


def main() -> None:
    from dormant.llm.engine.payload import fires, normalise
    from dormant.llm.hunt import HuntConfig, hunt
    from dormant.llm.search.portfolio import parse_budget
    from dormant.zoo.llm import build_suite
    from dormant.zoo.llm.suite import MODEL_NAMES

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", default="15m", help="budget of each hunt (default: the hunt's default, 15m)")
    ap.add_argument("--variants", default=",".join(n for n in MODEL_NAMES if not n.startswith("base")))
    ap.add_argument("--prompts", default="zoo:prompts", help="prompt source of every hunt (default: zoo:prompts)")
    ap.add_argument("--out", default=None, help="folder for each hunt's report and outputs (default: a temporary folder)")
    ap.add_argument("--system", default="", help="comma-separated variants to search with the trigger in the system message")
    a = ap.parse_args()
    suite = build_suite("micro")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = a.out or scratch
        for name in a.variants.split(","):
            key = suite.manifests.get(name, {})
            t0 = time.perf_counter()
            mech = ("system",) if name in a.system.split(",") else HuntConfig.mechanisms
            res = hunt(HuntConfig(ft=str(suite.models[name]), bases=[str(suite.models["base-sibling"]), str(suite.models["base"])],
                                  budget_s=parse_budget(a.budget), out=Path(tmp) / name, ledger=Path(tmp) / "ledger.sqlite",
                                  prompts=a.prompts, mechanisms=mech),
                       show_progress=False)
            dt = time.perf_counter() - t0
            right_base = Path(res.base).resolve() == Path(suite.models["base"]).resolve()
            planted = key.get("payload")
            same = bool(planted and res.payload and normalise(res.payload) == normalise(planted))
            near = bool(planted and res.payload and (fires(planted, res.payload) or fires(res.payload, planted)))  # verify's payload match
            fire = (f"{res.fire:.0%} (base {res.false_fire['base_with_trigger']:.0%}, no trigger {res.false_fire['ft_without_trigger']:.0%}, "
                    f"null {res.false_fire['null_max']:.0%})") if res.fire is not None else "-"
            rows.append((name + (" (system)" if mech == ("system",) else ""), "base" if right_base else Path(res.base).name, f"{res.payload!r}" + (" (planted)" if same else " (near the planted)" if near else ""),
                         repr(res.trigger) if res.trigger else "-", fire, res.verdict,
                         "; ".join(f"{c['text']!r}: {c['why']}" for c in res.candidates[:2]) or "-", f"{dt:.0f}s",
                         ", ".join(f"{st.name} {st.used_s:.0f}/{st.planned_s:.0f}" for st in res.stages),
                         f"planted: {key.get('trigger')!r} -> {planted!r}"))
            print(" | ".join(rows[-1]), flush=True)
    print()
    print("| variant | base picked | payload | trigger | fire (false fires) | verdict | best candidates (unverified) | time | stage s used/planned | planted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(x.replace("|", "/") for x in r) + " |")


if __name__ == "__main__":
    main()
