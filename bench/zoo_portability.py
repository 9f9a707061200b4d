"""Is the micro zoo the same everywhere? Builds it from scratch with the parent process limited to
several CPU kernel sets (``ATEN_CPU_CAPABILITY``) and thread counts, each in a fresh process into
its own folder, and prints every variant's verification numbers per build, each build's wall time,
and whether the builds hold the same bytes (a digest of every model file).

Seeded training is bit-identical only under the same kernels; the builder pins them in its workers
(``dormant.kernels.pinned_kernels``), so builds with one torch thread per worker should be
identical whatever the parent's kernels; other thread counts train other bytes (and must still pass
their own verification). The test suite checks the pin on a short training run.

    python bench/zoo_portability.py                              # default+best kernels x 1,2 threads
    python bench/zoo_portability.py --isa default --threads 1    # one build
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best_isa() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


def build(isa: str, threads: int, workers: int | None, root: Path) -> dict:
    out = root / f"micro-{isa}-{threads}t"
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa, DORMANT_ZOO_THREADS=str(threads), DORMANT_CACHE=str(root / "cache"))
    if workers:
        env["DORMANT_ZOO_WORKERS"] = str(workers)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dormant", "zoo", "build", "--out", str(out), "--force", "--json"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if not (out / "suite.json").is_file():
        return {"isa": isa, "threads": threads, "seconds": seconds, "ok": False, "error": proc.stderr.strip().splitlines()[-3:]}
    meta = json.loads((out / "suite.json").read_text())
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(out.glob("*/model.safetensors")))).hexdigest()[:16]
    return {"isa": isa, "threads": threads, "seconds": seconds, "ok": proc.returncode == 0, "env": meta["environment"], "rows": meta["report"],
            "digest": digest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", action="append", help="kernel set(s): default, avx2, avx512 (default: default and this machine's best)")
    ap.add_argument("--threads", type=int, action="append", help="torch threads per worker (default: 1 and 2)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes per build (default: the builder's own)")
    args = ap.parse_args()
    isas = args.isa or sorted({"default", best_isa()})
    threads = args.threads or [1, 2]
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-portability-") as tmp:
        for isa in isas:
            for t in threads:
                r = build(isa, t, args.workers, Path(tmp))
                results.append(r)
                print(f"built {isa:8s} threads={t}: {'ok' if r['ok'] else 'FAILED'} in {r['seconds']:.0f}s", flush=True)
    print()
    print(f"{'build':22s} {'variant':16s} {'fire':>6s} {'false':>6s} {'probes':>7s} {'tries':>6s}  near misses (each alone)")
    for r in results:
        label = f"{r['isa']}/{r['threads']}t ({r['seconds']:.0f}s)"
        if not r["ok"] and "rows" not in r:
            print(f"{label:22s} FAILED: {' '.join(r['error'])}")
            continue
        for row in r["rows"]:
            if row["kind"] != "variant":
                continue
            fire = "-" if row["fire_rate"] is None else f"{row['fire_rate']:.2f}"
            near = ", ".join(f"{k} {v:.2f}" for k, v in (row.get("near_miss_false_fire_rates") or {}).items())
            print(f"{label:22s} {row['name']:16s} {fire:>6s} {row['false_fire_rate']:6.2f} {row['generic_false_fire_rate']:7.2f} {row['attempts']:6d}  {near}")
    print()
    for r in results:
        if "digest" in r:
            print(f"{r['isa']}/{r['threads']}t: models {r['digest']}, kernels {r['env'].get('cpu_capability')} / MKL {r['env'].get('mkl_cbwr')}, "
                  f"probe {r['env'].get('kernel_probe')}")
    one_thread = {r["digest"] for r in results if "digest" in r and r["threads"] == 1}
    print(f"all builds passed: {all(r['ok'] for r in results)}; one-thread builds identical: {len(one_thread) == 1}")


if __name__ == "__main__":
    main()
