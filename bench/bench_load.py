"""Peak memory of the inert loader vs ``torch.load(weights_only=False)`` on a large full pickle.

Generates an ``nn.Sequential`` of square Linear + ReLU layers (mostly-zero integer weights, like
the puzzle's circuit) of about ``--gb`` GB, saved with ``torch.save(model)``. Each loader then runs
in its own subprocess, loads the file and reads every weight once (a float64 sum per layer, the
same check value for all). The parent reads each child's peak resident set size (``ru_maxrss``
from ``os.wait4``); each child also samples its peak *private* (anonymous) memory, ``RssAnon`` in
``/proc/self/status``, after every layer: memory-mapped file pages count in RSS but are
reclaimable page cache, private memory is what a loader really holds. Every child imports torch
first, so interpreter and library overheads are the same on both sides.

Baseline: ``torch.load(path, weights_only=False)`` (which also runs the pickle's code); shown for
reference: ``torch.load(..., mmap=True)``. Ratios are baseline / inert.

    .venv/bin/python bench/bench_load.py            # ~1 GB file
    .venv/bin/python bench/bench_load.py --gb 0.2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_kb(field: str = "RssAnon") -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_anon_kb() -> int:
    return _status_kb("RssAnon")


def child_generate(path: str, gb: float, width: int) -> None:
    import torch

    n_layers = max(2, int(gb * (1 << 30) / (width * width * 4)))
    g = torch.Generator().manual_seed(0)
    mods = []
    for _ in range(n_layers):
        lin = torch.nn.Linear(width, width)
        with torch.no_grad():
            lin.weight.zero_()
            idx = torch.randint(0, width * width, (4 * width,), generator=g)
            vals = 2.0 ** torch.randint(0, 8, (4 * width,), generator=g).float() * (torch.randint(0, 2, (4 * width,), generator=g) * 2 - 1)
            lin.weight.view(-1)[idx] = vals
            lin.bias.copy_(torch.randint(-3, 4, (width,), generator=g).float())
        mods += [lin, torch.nn.ReLU()]
    torch.save(torch.nn.Sequential(*mods), path)
    print(json.dumps({"layers": n_layers}))


def child_load(path: str, how: str) -> None:
    import numpy as np
    import torch  # imported by every child, so the interpreter + torch baseline is the same

    peak_anon = _rss_anon_kb()
    total = 0.0
    if how == "inert":
        from dormant.net.load.loaders import load_network

        net = load_network(path)
        rss_after_load = _status_kb("VmRSS")
        peak_anon = max(peak_anon, _rss_anon_kb())
        for layer in net.layers:
            total += float(np.asarray(layer.weight, dtype=np.float64).sum())
            peak_anon = max(peak_anon, _rss_anon_kb())
    else:
        model = torch.load(path, weights_only=False, mmap=(how == "torch-mmap"))
        rss_after_load = _status_kb("VmRSS")
        peak_anon = max(peak_anon, _rss_anon_kb())
        for mod in model:
            if isinstance(mod, torch.nn.Linear):
                total += float(mod.weight.detach().double().sum())
                peak_anon = max(peak_anon, _rss_anon_kb())
    print(json.dumps({"sum": total, "peak_anon_kb": peak_anon, "rss_after_load_kb": rss_after_load}))


def _run_child(args: list[str]) -> tuple[dict, int, float]:
    """Run this script as a child; return its JSON output, peak RSS (kB) and wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1]), int(usage.ru_maxrss), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0, help="approximate size of the generated pickle")
    ap.add_argument("--width", type=int, default=448, help="width of every Linear layer")
    ap.add_argument("--dir", default=None, help="where to write the pickle (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        role = args.child[0]
        if role == "generate":
            child_generate(args.child[1], args.gb, args.width)
        else:
            child_load(args.child[1], role)
        return

    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_load_"))
    path = folder / "big_sequential.pt"
    info, _, _ = _run_child(["--gb", str(args.gb), "--width", str(args.width), "--child", "generate", str(path)])
    size_mb = path.stat().st_size / 2**20
    print(f"file: {path.name}, {size_mb:.0f} MiB, {info['layers']} Linear({args.width}, {args.width}) + ReLU layers")
    results = {}
    for how in ("inert", "torch", "torch-mmap"):
        out, rss_kb, wall = _run_child(["--child", how, str(path)])
        results[how] = (out, rss_kb, wall)
        print(f"{how:>10}: RSS after load {out['rss_after_load_kb'] / 1024:6.0f} MiB   peak RSS {rss_kb / 1024:6.0f} MiB   peak private (RssAnon) {out['peak_anon_kb'] / 1024:6.0f} MiB   check sum {out['sum']:.0f}")
    sums = {round(r[0]["sum"], 3) for r in results.values()}
    print(f"same weights read by all loaders: {'yes' if len(sums) == 1 else 'NO: ' + str(sums)}")
    inert, torch_full, torch_mmap = results["inert"], results["torch"], results["torch-mmap"]
    print(f"peak private memory ratio  torch.load(weights_only=False) / inert: {torch_full[0]['peak_anon_kb'] / max(1, inert[0]['peak_anon_kb']):.1f}x")
    print(f"RSS-after-load ratio       torch.load(weights_only=False) / inert: {torch_full[0]['rss_after_load_kb'] / max(1, inert[0]['rss_after_load_kb']):.1f}x")
    print(f"peak RSS ratio             torch.load(weights_only=False) / inert: {torch_full[1] / max(1, inert[1]):.2f}x  (RSS counts mapped file pages once read)")
    print(f"reference: torch.load(mmap=True) / inert, private memory: {torch_mmap[0]['peak_anon_kb'] / max(1, inert[0]['peak_anon_kb']):.2f}x (still runs the pickle)")
    print(f"wall-time ratio (load + read all weights) torch.load / inert: {torch_full[2] / inert[2]:.2f}x")
    if not args.keep and args.dir is None:
        path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
