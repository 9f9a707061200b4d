"""Benchmark `dormant diff` against the raw-read limit and a transformers state-dict comparison.

Generates two sharded bf16 Llama checkpoints of ``--gb`` GB each (random weights, a few MLP
tensors modified) in a temporary folder, then measures three ways to compare them, each in its
own subprocess (time measured after imports; peak RSS = the subprocess's own VmHWM):

* ``raw``: read every byte of both folders' weight files into reused buffers (as many files at a
  time as ``--workers``); the physical limit of any comparison that looks at all the data;
* ``raw-mmap``: touch every byte through a memory map (a cheap reduction per MiB), the same
  access path ``diff`` uses, without the comparison;
* ``diff``: ``dormant.llm.weights.diff.diff_models`` (byte fast path, float stats on modified tensors);
* ``transformers``: load both models with ``AutoModelForCausalLM.from_pretrained`` and compare the
  state dicts (``torch.equal``, then delta norms for the different tensors).

Page cache: the files are written just before and read once (untimed) before the measurements,
so all three methods run with warm caches; the comparison is of CPU/memory work, not disk speed.

Usage: python bench/bench_diff.py [--gb 2.0] [--workers 4] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def method_raw(base: Path, ft: Path, workers: int) -> dict:
    """Read every byte of both folders with ``readinto`` into reused buffers, ``workers`` files at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def read(f: Path) -> int:
        view = memoryview(bytearray(1 << 24))
        n = total = 0
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
        return total

    files = _files(base) + _files(ft)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        total = sum(pool.map(read, files))
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def method_raw_mmap(base: Path, ft: Path, workers: int) -> dict:
    """Touch every byte of both folders through ``mmap`` (one 8-byte-word reduction per 1 MiB), ``workers`` files at a time."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    def scan(f: Path) -> int:
        with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            x = np.frombuffer(mm, dtype=np.uint8)
            step, window = 1 << 20, 1 << 24
            for i in range(0, x.size - x.size % 8, step):
                np.bitwise_or.reduce(x[i : i + step].view(np.uint64))
                if (i + step) % window == 0:  # drop the window just scanned, as diff does
                    mm.madvise(mmap.MADV_DONTNEED, i + step - window, window)
            n = x.size
            del x
            return n

    files = _files(base) + _files(ft)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        total = sum(pool.map(scan, files))
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def method_diff(base: Path, ft: Path, workers: int) -> dict:
    from dormant.llm.weights.diff import DiffConfig, diff_models

    t0 = time.perf_counter()
    res = diff_models(ft, [base], DiffConfig(workers=workers))
    secs = time.perf_counter() - t0
    c = res.comparisons[0]
    return {"seconds": secs, "modified": sorted(t.name for t in c.modified), "identical": c.counts["identical"]}


def method_transformers(base: Path, ft: Path, workers: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(max(1, workers))
    t0 = time.perf_counter()
    a = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(ft), dtype=torch.bfloat16).state_dict()
    modified = []
    identical = 0
    for name, x in a.items():
        y = b[name]
        if torch.equal(x, y):
            identical += 1
            continue
        d = y.float() - x.float()
        _ = (float(d.norm()), float(d.norm() / x.float().norm()), float(d.abs().max()))
        modified.append(name)
    return {"seconds": time.perf_counter() - t0, "modified": sorted(modified), "identical": identical}


METHODS = {"raw": method_raw, "raw-mmap": method_raw_mmap, "diff": method_diff, "transformers": method_transformers}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Unlike ``ru_maxrss``, it is reset by exec, so a
    subprocess does not inherit the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(args: argparse.Namespace) -> None:
    out = METHODS[args.worker](Path(args.base), Path(args.ft), args.workers)
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def _run(method: str, base: Path, ft: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--base", str(base), "--ft", str(ft), "--workers", str(workers)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if p.returncode != 0:
        raise SystemExit(f"{method} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=2.0, help="size of each checkpoint in GB (default 2.0)")
    ap.add_argument("--workers", type=int, default=4, help="threads for dormant diff / torch (default 4)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per method; the best time and the largest peak RSS are kept (default 2)")
    ap.add_argument("--skip-transformers", action="store_true", help="skip the transformers baseline")
    ap.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) this folder and keep it")
    ap.add_argument("--worker", choices=list(METHODS), help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--ft", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dormant.zoo.llm.synthetic import write_random_bf16_pair

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_diff_"))
    try:
        if (root / "base").exists() and (root / "ft").exists() and args.keep:
            base, ft = root / "base", root / "ft"
            print(f"reusing checkpoints in {root}")
        else:
            t0 = time.perf_counter()
            base, ft, planted = write_random_bf16_pair(root, args.gb)
            print(f"generated 2 x {args.gb} GB bf16 checkpoints in {time.perf_counter() - t0:.1f}s ({len(planted)} tensors modified)")
        nbytes = sum(f.stat().st_size for d in (base, ft) for f in _files(d))
        _run("raw", base, ft, args.workers)  # warm the page cache (untimed)
        methods = ["raw", "raw-mmap", "diff"] + ([] if args.skip_transformers else ["transformers"])
        results = {}
        for m in methods:
            runs = [_run(m, base, ft, args.workers) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            best["gbps"] = nbytes / best["seconds"] / 1e9
            results[m] = best
        if "transformers" in results:
            assert results["diff"]["modified"] == results["transformers"]["modified"], "diff and transformers disagree"
        print(f"data compared: {nbytes / 1e9:.2f} GB (both checkpoints); page cache warm for every method; workers={args.workers}; "
              f"{os.cpu_count()} CPUs")
        for m, r in results.items():
            print(f"  {m:<13} {r['seconds']:7.2f} s  {r['gbps']:6.2f} GB/s  peak RSS {r['peak_rss_mb']:8.0f} MB")
        d, raw = results["diff"], results["raw"]
        print(f"throughput diff / raw read        : {d['gbps'] / raw['gbps']:.2f}x (goal >= 0.7x)")
        print(f"throughput diff / raw mmap scan   : {d['gbps'] / results['raw-mmap']['gbps']:.2f}x")
        if "transformers" in results:
            t = results["transformers"]
            print(f"speed diff vs transformers        : {t['seconds'] / d['seconds']:.1f}x faster (goal >= 5x)")
            print(f"peak RSS transformers / diff      : {t['peak_rss_mb'] / d['peak_rss_mb']:.1f}x less memory (goal >= 5x)")
        print(f"modified tensors found: {len(d['modified'])} ({', '.join(d['modified'][:4])})")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
