"""``net solve`` on the rebuilt puzzle network, from its ~1.16 GB full pickle: time per stage, peak RSS.

Builds (once, then from the cache) MD5 of "bitter lesson" with the puzzle's length bug in the
puzzle layout (``zoo net md5 --layout puzzle``: 2721 Linear layers on the public puzzle's widths)
and writes it as a float32 ``torch.save`` full pickle, as the puzzle was shipped. Then ``solve``
runs on that file in a fresh subprocess (inert loading, memory-mapped), which reports each
stage's time; the parent reads the child's peak resident set size (``ru_maxrss`` from
``os.wait4``). Goals from the issue: wall time <= 5 minutes on 2 cores, peak RSS <= 2 GB; the
ratios printed are goal / measured (above 1: within the goal). Also printed: how many layers have
the puzzle's width and how the non-zero-bias pattern compares with the published one.

    .venv/bin/python bench/bench_puzzle_solve.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GOAL_SECONDS = 300.0
GOAL_RSS_GB = 2.0
SECRET = "bitter lesson"
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _inner(path: str) -> None:
    from dormant.net.invert.preimage import InvertConfig
    from dormant.net.solve import SolveConfig, solve

    t0 = time.perf_counter()
    res = solve(path, SolveConfig(invert=InvertConfig(workers=2, progress=False)))
    out = {
        "seconds": time.perf_counter() - t0,
        "function": res.function,
        "target": res.target,
        "preimage": res.preimage,
        "verified": res.verified,
        "verdict": res.verdict,
        "stages": [[s.name, s.status, round(s.seconds, 2), s.finding[:300]] for s in res.stages],
    }
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        _inner(args.inner)
        return
    from dormant.zoo.net.bias_pattern import compare_bias_pattern
    from dormant.zoo.net.build import build_net
    from dormant.zoo.net.puzzle_layout import puzzle_widths

    t0 = time.perf_counter()
    built = build_net("md5", SECRET, layout="puzzle", length_bug=True, pickle="always")
    build_s = time.perf_counter() - t0
    pk = built.pickle_path
    lay = built.manifest["layout"]
    want = [int(x) for x in (DATA / "puzzle_widths.txt").read_text().strip().split(",")]
    got = built.network.widths
    same = sum(a == b for a, b in zip(got[1:], want[1:]))
    print(f"build (or cache): {build_s:.1f} s; pickle {pk} {pk.stat().st_size / 1e9:.2f} GB (puzzle: 1.16 GB); {len(built.network.layers)} Linear layers")
    print(f"widths: {same}/{len(want) - 1} layers equal puzzle_widths.txt (package copy equal to tests/data: {puzzle_widths() == want}); "
          f"{lay['layers_over_width']} wider by {lay['lanes_over_width']:,} lanes in all; {lay['filler_neurons']:,} filler neurons")
    print("bias pattern:", compare_bias_pattern(built.network, DATA / "puzzle_bias_bits.txt").summary)
    del built

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--inner", str(pk)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rss_gb = usage.ru_maxrss * 1024 / 2**30
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(stdout[-3000:])
        raise SystemExit(f"solve subprocess failed (status {status})")
    res = json.loads(line[7:])
    for name, st, sec, finding in res["stages"]:
        print(f"  {name:<10} {st:<8} {sec:8.2f} s  {finding[:160]}")
    print(f"verdict: {res['verdict']}")
    ok = res["preimage"] == SECRET and res["verified"] is True
    print(f"solve from the pickle: wall {wall:.1f} s (goal {GOAL_SECONDS:.0f} s, ratio {GOAL_SECONDS / wall:.2f}); "
          f"peak RSS {rss_gb:.2f} GB (goal {GOAL_RSS_GB:.0f} GB, ratio {GOAL_RSS_GB / rss_gb:.2f}); secret found and verified on the network: {ok}")


if __name__ == "__main__":
    main()
