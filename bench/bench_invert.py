"""Preimage search speed: `dormant.net.invert.preimage` against a single-thread hashlib loop.

Both hash the same candidates: ordered pairs of the most frequent English words joined by a
space (the first candidates of the default search). The baseline is the loop anyone writes
first, ``hashlib.new(f, c).digest() == target`` over a prebuilt list of the candidates (building
the list is not timed, which favours the baseline). The search runs on all cores (multiprocessing
+ the compiled numba kernel, or numpy when numba is missing) and once on one worker, so the
per-core gain is printed too, by wall clock and by CPU time (the latter is unaffected by other
load on a shared machine). The target is absent, so every candidate is hashed.

    python bench/bench_invert.py                     # md5, ~30M candidates
    python bench/bench_invert.py --function sha1 --words 3000 --baseline 500000
"""

from __future__ import annotations

import argparse
import hashlib
import time

from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import Space, word_pairs
from dormant.net.invert.preimage import InvertConfig, default_workers, invert
from dormant.net.invert.wordlists import english_words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--function", default="md5", choices=fast_hashes.FUNCTIONS)
    ap.add_argument("--words", type=int, default=5500, help="pairs of the top N words (N*N candidates)")
    ap.add_argument("--baseline", type=int, default=1_000_000, help="candidates for the hashlib loop")
    ap.add_argument("--workers", type=int, default=None, help="processes for the parallel run (default: all cores)")
    ap.add_argument("--backend", default="auto", choices=["auto", "numba", "numpy"])
    args = ap.parse_args()

    words = english_words(args.words)
    space: Space = word_pairs(words, (" ",), shells=())
    target = hashlib.new(args.function, b"\x00 not a candidate").hexdigest()

    # baseline: a plain hashlib loop over the first candidates of the same space
    cands = [space.candidate(i) for i in range(min(args.baseline, space.size))]
    goal = bytes.fromhex(target)
    new = getattr(hashlib, args.function)
    t0, c0 = time.perf_counter(), time.process_time()
    for c in cands:
        if new(c).digest() == goal:
            break
    base_rate = len(cands) / (time.perf_counter() - t0)
    base_cpu = len(cands) / (time.process_time() - c0)

    fast_hashes.warm_up(args.function, args.backend)  # compile/load the kernel outside the timing
    workers = args.workers or default_workers()
    c0 = time.process_time()
    one = invert(target, args.function, space, InvertConfig(workers=1, backend=args.backend, progress=False, max_candidates=max(1, space.size // workers)))
    one_cpu = one.candidates / (time.process_time() - c0)  # workers=1 runs in this process
    many = invert(target, args.function, space, InvertConfig(workers=workers, backend=args.backend, progress=False))
    print(f"bench_invert {args.function}: {space.size:,} word-pair candidates; baseline {len(cands):,}")
    print(f"  baseline  hashlib loop, 1 thread          {base_rate / 1e6:8.2f} M cand/s")
    print(f"  dormant   invert, 1 worker ({one.backend})     {one.rate / 1e6:8.2f} M cand/s   {one.rate / base_rate:6.1f}x per core")
    print(f"  dormant   invert, {workers} workers ({many.backend})    {many.rate / 1e6:8.2f} M cand/s   {many.rate / base_rate:6.1f}x")
    # CPU-time rates do not depend on what else the machine is running
    print(f"  per CPU-second: baseline {base_cpu / 1e6:.2f} M, dormant 1 worker {one_cpu / 1e6:.2f} M -> {one_cpu / base_cpu:.1f}x per core")


if __name__ == "__main__":
    main()
