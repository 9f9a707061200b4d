"""Decompile the full MD5 network of the zoo: time per step and how far each reduction shrinks it.

Stages, as ``decompile`` reports them (``DecompileResult.stages`` and ``.seconds``): neurons ->
after copy-wire removal -> after merging duplicate neurons -> after constants and simplification
-> boolean gates -> live gates -> AIG ANDs. Baseline: the public solve of the puzzle, which
reduced its ~2M neurons to ~75k nodes (26.7x, as the write-up counts; the puzzle's widths add up
to 876k neurons); our overall ratio (neurons / live gates) is printed against it. The zoo's MD5 network is built once (then cached) for the secret
"bitter lesson"; ``--layout puzzle`` takes the puzzle's own layout (2721 layers, as the public
network) instead of the compact one.

    python bench/bench_decompile.py
    python bench/bench_decompile.py --layout puzzle
"""

from __future__ import annotations

import argparse
import resource
import time

from dormant.net.logic.decompile import decompile
from dormant.zoo.net.build import build_net

PUBLIC_NEURONS = 2_000_000
PUBLIC_NODES = 75_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", default="compact", choices=["compact", "puzzle"])
    ap.add_argument("--style", default="standard")
    args = ap.parse_args()

    t0 = time.perf_counter()
    built = build_net("md5", "bitter lesson", pickle="never", layout=args.layout, style=args.style)
    net = built.network
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = decompile(net)
    total = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    print(f"bench_decompile md5 ({args.style}, layout {args.layout}): {len(net.layers):,} layers; built/loaded in {load_s:.1f}s, decompiled in {total:.1f}s, peak RSS {rss:.2f} GB")
    print(f"  verdict: {res.verdict}")
    n = res.stages.get("neurons", 0)
    prev = n
    for name, count in res.stages.items():
        step = prev / count if count else float("inf")
        print(f"  {name:38s} {count:>10,}   {n / count if count else float('inf'):7.1f}x of neurons   {step:6.2f}x this step")
        prev = count
    print("  time per step: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.seconds.items()))
    live = res.stages.get("live gates", 0)
    if live:
        ours, theirs = n / live, PUBLIC_NEURONS / PUBLIC_NODES
        print(f"  reduction neurons -> live gates: {ours:.1f}x; public solve ~{PUBLIC_NEURONS / 1e6:.0f}M -> ~{PUBLIC_NODES // 1000}k nodes: {theirs:.1f}x; ratio ours/public {ours / theirs:.2f}")
        print(f"  live gates: {live:,} here against the public ~{PUBLIC_NODES:,} nodes ({PUBLIC_NODES / live:.2f}x fewer here)")
    from dormant.zoo.net.puzzle_layout import puzzle_widths

    print(f"  (the public puzzle's own widths add up to {sum(puzzle_widths()[1:]):,} neurons; its ~2M is the public write-up's count)")


if __name__ == "__main__":
    main()
