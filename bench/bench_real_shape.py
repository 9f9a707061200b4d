"""Peak memory and wall time of every model command on the real-shape subject, against one model.

The subject (``dormant.zoo.llm.real_shape``, built once and cached): random bf16 weights with the
exact shapes of Qwen2.5-0.5B-Instruct (151,936 embedding rows, tied, 2 shards, ~0.99 GB per model)
and a fine-tune that adds a rank-16 change to gate/up/down of every layer. Each command runs in its
own process (``python -m dormant.cli.main ...``); the parent reads the child's peak resident set
size from ``os.wait4``.

Baseline, measured in the same run: a process that imports transformers and loads one model with
``from_pretrained(dtype=bfloat16)`` (what a user's own script would hold). Printed per command: peak
RSS as a multiple of one model's bf16 weights, the goal (<= 1.3x one model + 1 GiB), and wall time as
a multiple of the baseline's.

``--shape 1.5b`` uses the shapes of Qwen2.5-1.5B-Instruct instead (hidden 1536, 28 layers, 12/2
heads, intermediate 8960, ~3.1 GB per model), to show how memory grows with size.
``--heap-baseline`` also runs ``delta`` with glibc's default heap behaviour
(``DORMANT_HEAP_BOUND=0``, see ``dormant.memory``), the "before" of the same run.

    .venv/bin/python bench/bench_real_shape.py               # all commands
    .venv/bin/python bench/bench_real_shape.py --only score  # one command
    .venv/bin/python bench/bench_real_shape.py --shape 1.5b --only delta
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

GIB = 1 << 30
SHAPES = {"0.5b": {}, "1.5b": {"hidden": 1536, "layers": 28, "heads": 12, "kv_heads": 2, "intermediate": 8960}}  # RealShape overrides


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now (0 if gone)."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS bytes, stderr tail) of one command.

    Peak RSS: the larger of the child's own peak (``ru_maxrss`` from ``os.wait4``, which also
    covers the processes it waited for) and the peak of the whole process tree summed, sampled every
    0.1 s (a command that starts a helper process holds both at once)."""
    import threading

    t0 = time.perf_counter()
    errf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errf, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    errf.seek(0)
    err = errf.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, max(usage.ru_maxrss * 1024.0, float(peak[0])), err[-2000:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="Run only these commands (repeatable).")
    ap.add_argument("--threads", type=int, default=2, help="Torch threads per command.")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5b", help="Qwen2.5 model size whose shapes the subject has.")
    ap.add_argument("--heap-baseline", action="store_true", help="Also run delta with the default heap (DORMANT_HEAP_BOUND=0).")
    args = ap.parse_args()

    from dormant.zoo.llm.real_shape import RealShape, build_real_shape

    t0 = time.perf_counter()
    subject = build_real_shape(RealShape(**SHAPES[args.shape]))
    print(f"subject: {subject.ft} ({subject.model_bytes / 1e9:.2f} GB per model, ready in {time.perf_counter() - t0:.1f} s)")
    model = subject.model_bytes
    ft, base = str(subject.ft), str(subject.base)
    work = Path(tempfile.mkdtemp(prefix="bench-real-shape-"))
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(f"Question number {i}: what is the capital of a country you like?" for i in range(16)) + "\n")
    payload = " ".join(["answer", "is", "always", "hidden", "inside"] * 4)  # 20 words
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "DORMANT_LEDGER": str(work / "ledger.sqlite"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    py = sys.executable
    cli = [py, "-m", "dormant.cli.main"]
    out = ["--out", str(work / "out")]
    commands = {
        "diff": cli + ["diff", ft, "--base", base] + out,
        "delta": cli + ["delta", ft, "--base", base, "--export-lora", str(work / "lora")] + out,
        "amplify": cli + ["amplify", ft, "--base", base, "--limit", "4", "--max-new-tokens", "8", "--alphas", "0,1,3"] + out,
        "score": cli + ["score", ft, "--base", base, "--prompts", str(prompts), "--payload", payload, "--views", "ft,base,amp:3"] + out,
        "compare": cli + ["compare", ft, "--base", base, "--prompt", "What is the capital of France?", "--views", "base,ft,amp:3", "--max-new-tokens", "8"],
    }
    baseline_code = ("import torch, sys; from transformers import AutoModelForCausalLM; "
                     f"m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16); torch.set_num_threads({args.threads})")
    rc, base_wall, base_rss, err = _run([py, "-c", baseline_code, ft], env)
    if rc != 0:
        sys.exit(f"baseline failed: {err}")
    goal = 1.3 * model + GIB
    print(f"baseline (from_pretrained one model, bf16): peak RSS {base_rss / GIB:.2f} GiB = {base_rss / model:.2f}x one model, {base_wall:.1f} s")
    print(f"goal: peak RSS <= 1.3x one model + 1 GiB = {goal / GIB:.2f} GiB = {goal / model:.2f}x one model")
    runs = [(name, argv, env) for name, argv in commands.items() if not args.only or name in args.only]
    if args.heap_baseline:
        runs.insert(0, ("delta (default heap)", commands["delta"], {**env, "DORMANT_HEAP_BOUND": "0"}))
    results = {}
    for name, argv, run_env in runs:
        rc, wall, rss, err = _run(argv, run_env)
        ok = rc == 0 and rss <= goal
        results[name] = {"rc": rc, "wall_s": wall, "peak_rss": rss, "ratio": rss / model, "meets_goal": ok}
        status = "meets goal" if ok else ("FAILED" if rc else "over goal")
        print(f"{name:20s} peak RSS {rss / GIB:5.2f} GiB = {rss / model:5.2f}x one model (goal {goal / model:.2f}x), "
              f"wall {wall:6.1f} s = {wall / base_wall:5.2f}x baseline load  [{status}]")
        if rc:
            print("   " + err.strip().replace("\n", "\n   "))
    print(json.dumps({"shape": args.shape, "model_bytes": model, "baseline": {"peak_rss": base_rss, "wall_s": base_wall}, "commands": results}))


if __name__ == "__main__":
    main()
