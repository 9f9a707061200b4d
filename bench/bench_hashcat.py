"""`net invert` against hashcat on the same word-pair attack, on the same machine.

The attack: ordered pairs of the top N English words joined by a space (N*N candidates). The
secret is a pair near the end of the space; the target file also holds a decoy digest that
nothing in the space hashes to, so both engines hash every candidate (hashcat stops only when
every digest is cracked; `invert` runs with stop_on_hit off). Baseline: hashcat (the hand-off's
combinator attack, ``-a 1 -j '$ '``, exactly as ``run.sh`` writes it) on this machine's OpenCL
device (pocl on a CPU). hashcat's kernels are compiled once before timing; its rate is printed by
wall clock with start-up, and without the start-up of an empty run.

    python bench/bench_hashcat.py                 # md5, top 10000 words: 100M candidates
    python bench/bench_hashcat.py --function sha1 --words 5000
    python bench/bench_hashcat.py --hashcat-opts "--force -O -w 3"   # hashcat's optimised kernels

Without hashcat installed it says so and exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dormant.net.invert import fast_hashes
from dormant.net.invert.candidates import Hints, build_space
from dormant.net.invert.hashcat import INSTALL_HINT, find_hashcat, run_handoff, write_handoff
from dormant.net.invert.preimage import InvertConfig, default_workers, invert
from dormant.net.invert.wordlists import english_words


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--function", default="md5", choices=["md5", "sha1"])
    ap.add_argument("--words", type=int, default=10_000, help="pairs of the top N words (N*N candidates)")
    ap.add_argument("--workers", type=int, default=None, help="processes for invert (default: all cores)")
    ap.add_argument("--hashcat-opts", default="--force", help="extra hashcat options (pocl needs --force)")
    args = ap.parse_args()
    if find_hashcat() is None:
        print(f"bench_hashcat: {INSTALL_HINT}; nothing measured")
        return 2

    words = english_words(args.words)
    secret = f"{words[-1]} {words[-2]}".encode()
    target = hashlib.new(args.function, secret).hexdigest()
    decoy = hashlib.new(args.function, b"\x00 not a candidate").hexdigest()
    hints = Hints(extra_words=words, english=False, pairs_top=len(words), variants_top=0, caps=("lower",), separators=(" ",), variant_separators=())
    space = build_space(hints)
    space.products = [p for p in space.products if "pairs" in p.label]  # the pairs only, like the attack below
    opts = shlex.split(args.hashcat_opts)

    with tempfile.TemporaryDirectory(prefix="bench-hashcat-") as tmp:
        handoff = write_handoff(Path(tmp) / "h", args.function, [target, decoy], hints)
        pairs = [a for a in handoff.attacks if a.mode == 1]
        assert len(pairs) == 1 and pairs[0].size == space.size
        # compile hashcat's kernels and measure its start-up on a one-pair run (not timed below)
        warm = write_handoff(Path(tmp) / "warm", args.function, [decoy], replace(hints, extra_words=words[:1], pairs_top=1))
        warm.attacks = [a for a in warm.attacks if a.mode == 1]
        run_handoff(warm, options=opts)
        startup = run_handoff(warm, options=opts).seconds

        handoff.attacks = pairs
        hc = run_handoff(handoff, options=opts)
        hc_found = [p.decode() for d, p in hc.cracks if d == target]
        hc_rate = pairs[0].size / hc.seconds
        hc_steady = pairs[0].size / max(1e-9, hc.seconds - startup)

    fast_hashes.warm_up(args.function, "auto")
    workers = args.workers or default_workers()
    ours = invert([target, decoy], args.function, space, InvertConfig(workers=workers, progress=False, stop_on_hit=False))
    ours_found = [h.preimage for h in ours.hits]

    same = ours_found == hc_found == [secret.decode()]
    print(f"bench_hashcat {args.function}: {space.size:,} word-pair candidates (top {len(words):,} words, sep ' '), secret {secret.decode()!r}")
    print(f"  baseline  hashcat -a 1 ({hc.candidates:,} hashed)   {hc_rate / 1e6:8.2f} M cand/s wall ({hc.seconds:.1f}s), "
          f"{hc_steady / 1e6:.2f} M cand/s without its {startup:.1f}s start-up")
    print(f"  dormant   invert, {workers} workers ({ours.backend})  {ours.rate / 1e6:8.2f} M cand/s ({ours.seconds:.1f}s)")
    print(f"  ratio dormant/hashcat: {ours.rate / hc_rate:.2f}x by wall clock, {ours.rate / hc_steady:.2f}x against hashcat without start-up (goal >= 0.5x)")
    print(f"  same secret: {'yes' if same else 'NO'} (dormant {ours_found}, hashcat {hc_found})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
