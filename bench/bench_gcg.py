"""GCG step time and loss curve: ours (``dormant.llm.search.gcg``) vs nanoGCG 0.3.0, on a micro-zoo fine-tune.

Both optimise the same number of trigger tokens from the same init, placed before the same user
prompt (our ``user_prefix`` mechanism; nanoGCG's ``"{optim_str} <prompt>"``), for the same target
string (the variant's payload, every token, teacher-forced), with the same search width, top-k,
one token replaced per candidate, no buffer (always move to the step's best), printable-ASCII
tokens and the decode/re-encode filter on (ours: in context). The script checks that both place
the same token ids before scoring, and reports nanoGCG's loss (mean cross-entropy over the target)
for ours as ``-(payload log-likelihood) / target tokens``.

nanoGCG pins ``transformers<=4.47.1``; it runs in a virtual environment of its own, created on
first use under ``$DORMANT_CACHE/bench-venvs/nanogcg`` (``pip install torch==<this torch>
nanogcg==0.3.0 transformers==4.47.1``), in a subprocess with the same thread count.

Timed per step: gradient, sampling, filtering and valuing the candidates (ours: without the
re-scoring of the step's best by the full objective, which nanoGCG does not do; it is reported
apart). Seeds alternate between the two (ours, nanoGCG, ours, ...). Prints both loss curves, the
per-step seconds and the ratio nanoGCG / ours (the speed-up). No absolute-time claims.

    .venv/bin/python bench/bench_gcg.py                      # mlp-constant, 20 steps, width 256, top-k 128, 8 tokens, 10 seeds
    .venv/bin/python bench/bench_gcg.py --steps 40 --width 512 --topk 256 --tokens 20 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NANOGCG = "nanogcg==0.3.0"
TRANSFORMERS = "transformers==4.47.1"

RUNNER = r'''
import json, sys, time
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
import transformers, nanogcg
from nanogcg import gcg as G
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(args["model"], torch_dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(args["model"])
tok.chat_template = open(args["template"]).read()
stamps = []
orig = G.GCG.compute_token_gradient
def timed(self, ids):
    stamps.append(time.perf_counter())
    return orig(self, ids)
G.GCG.compute_token_gradient = timed
seen = {}
orig_init = G.GCG.init_buffer
def init_buffer(self):
    b = orig_init(self)
    seen["ids"] = [int(x) for x in self.tokenizer(self.tokenizer.apply_chat_template(
        [{"role": "user", "content": args["content"].replace("{optim_str}", args["init"])}], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False)["input_ids"]]
    seen["target"] = [int(x) for x in self.target_ids[0]]
    return b
G.GCG.init_buffer = init_buffer
runs = []
for seed in args["seeds"]:
    cfg = G.GCGConfig(num_steps=args["steps"], optim_str_init=args["init"], search_width=args["width"], topk=args["topk"], n_replace=1,
                      buffer_size=0, allow_non_ascii=False, filter_ids=True, use_prefix_cache=True, seed=seed, verbosity="WARNING")
    stamps.clear()
    res = nanogcg.run(model, tok, [{"role": "user", "content": args["content"]}], args["target"], cfg)
    stamps.append(time.perf_counter())
    runs.append({"losses": [float(x) for x in res.losses], "best": res.best_string, "step_s": [b - a for a, b in zip(stamps, stamps[1:])]})
print(json.dumps({"runs": runs, "ids": seen.get("ids"), "target": seen.get("target"), "transformers": transformers.__version__}))
'''


def nanogcg_python() -> Path:
    """The nanoGCG environment's interpreter, created (once) with this process's torch version."""
    import torch

    from dormant.cache import cache_root, locked

    root = cache_root() / "bench-venvs" / "nanogcg"
    py = root / "bin" / "python"
    with locked(root.parent / ".nanogcg.lock"):
        if not (root / ".ready").exists():
            print(f"creating {root} ({NANOGCG}, {TRANSFORMERS}, torch=={torch.__version__}) ...", file=sys.stderr)
            try:
                subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
                subprocess.run([str(py), "-m", "pip", "install", "-q", f"torch=={torch.__version__}"], check=True)
                subprocess.run([str(py), "-m", "pip", "install", "-q", NANOGCG, TRANSFORMERS], check=True)
            except subprocess.CalledProcessError as e:
                sys.exit(f"could not set up nanoGCG's environment in {root} ({' '.join(map(str, e.cmd))} failed): it needs the "
                         f"package index or local wheels of {NANOGCG}, {TRANSFORMERS} and torch=={torch.__version__}")
            (root / ".ready").write_text("ok\n")
    return py


def curve(xs: list[float]) -> str:
    return " ".join(f"{x:.3f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="mlp-constant")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=256, help="search width (candidates per step)")
    ap.add_argument("--topk", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=8, help="trigger tokens optimised (init: that many 'x')")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=10, help="runs of each, seeds 0..N-1 (curves are averaged; one run's final loss varies "
                    "by +-0.03 across seeds on mlp-constant, more than the differences judged, so fewer seeds decide by chance)")
    args = ap.parse_args()

    import torch

    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.prompts import Prompt
    from dormant.llm.search.gcg import GCGConfig, record, run_gcg
    from dormant.llm.search.objectives import Objective
    from dormant.llm.search.slots import initial_ids, make_slot
    from dormant.zoo.llm import build_suite, corpus

    torch.set_num_threads(args.threads)
    suite = build_suite("micro")
    man = suite.manifests[args.variant]
    model_dir = suite.models[args.variant]
    text = corpus.sample_prompts(random.Random(2002), 1, {k: 1.0 for k in corpus.TASKS})[0][-1]["content"]
    init = " ".join(["x"] * args.tokens)
    payload = man["payload"]
    print(f"{args.variant}: prompt {text!r}, target {payload!r}, {args.tokens} tokens from {init!r}, width {args.width}, top-k {args.topk}, "
          f"{args.steps} steps, {args.threads} thread(s)")

    # -- ours -----------------------------------------------------------------------------------
    pair = ModelPair.load(model_dir, suite.models["base"])
    obj = Objective(pair, [Prompt.user(text)], "user_prefix", payload, payload_tokens=None)
    slot = make_slot(obj)
    ids0 = initial_ids(slot, init)
    ours_ids = slot.before[0] + ids0 + slot.after[0]
    T = len(obj.payload_ids)
    base_ft = obj.baseline()["ft"]
    py = nanogcg_python()

    def nanogcg_run(seed: int) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "run_nanogcg.py"
            script.write_text(RUNNER)
            spec = {"model": str(model_dir), "template": str(model_dir / "chat_template.jinja"), "content": "{optim_str} " + text,
                    "init": init, "target": payload, "steps": args.steps, "width": args.width, "topk": args.topk, "threads": args.threads,
                    "seeds": [seed]}
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            out = subprocess.run([str(py), str(script), json.dumps(spec)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"nanoGCG failed:\n{out.stderr[-3000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])

    # seeds alternate between the two (ours, nanoGCG, ours, ...), so that a slower stretch of a shared
    # machine falls on both rather than on one
    ours, ng, got = [], [], {}
    for seed in range(args.seeds):
        r = run_gcg(obj, None, GCGConfig(steps=args.steps, init=init, search_width=args.width, topk=args.topk, n_replace=1, buffer_size=0,
                                         vocab="ascii", record_top=0, seed=seed))
        ours.append({"losses": [-(v + base_ft) / T for v in r.values], "best": r.best_text, "step_s": r.step_s,
                     "evaluated": r.evaluated, "rejected": r.rejected})
        got = nanogcg_run(seed)
        ng += got["runs"]
    t = time.perf_counter()
    record(slot, None, [(r.best_ids, r.best_text, r.best_value)])
    rescore_s = time.perf_counter() - t

    same = got["ids"] == ours_ids and got["target"] == obj.payload_ids
    print(f"same token ids before scoring (prompt with init, target): {same}")
    if not same:
        print(f"  ours:    {ours_ids} / {obj.payload_ids}\n  nanoGCG: {got['ids']} / {got['target']}")
    print()
    def mean_curve(runs: list[dict], key: str) -> list[float]:
        return [statistics.mean(r[key][i] for r in runs) for i in range(min(len(r[key]) for r in runs))]

    def best_curve(runs: list[dict]) -> list[float]:
        return mean_curve([{"b": [min(r["losses"][: i + 1]) for i in range(len(r["losses"]))]} for r in runs], "b")

    print(f"loss per step (mean cross-entropy of the target, lower is better; mean of {args.seeds} seeds)")
    print(f"  ours:    {curve(mean_curve(ours, 'losses'))}")
    print(f"  nanoGCG: {curve(mean_curve(ng, 'losses'))}")
    b_ours, b_ng = best_curve(ours), best_curve(ng)
    print(f"  best so far, mean over steps: ours {statistics.mean(b_ours):.3f}, nanoGCG {statistics.mean(b_ng):.3f}; "
          f"final (mean of seeds): ours {b_ours[-1]:.3f}, nanoGCG {b_ng[-1]:.3f}")
    for i, (a, b) in enumerate(zip(ours, ng)):
        print(f"  seed {i}: ours {min(a['losses']):.3f} {a['best']!r}; nanoGCG {min(b['losses']):.3f} {b['best']!r}")
    print()
    s_ours = [x for r in ours for x in r["step_s"]]
    s_ng = [x for r in ng for x in r["step_s"]]
    print("seconds per step (mean of seeds)")
    print(f"  ours:    {curve(mean_curve(ours, 'step_s'))}")
    print(f"  nanoGCG: {curve(mean_curve(ng, 'step_s'))}")
    m_ours, m_ng = statistics.median(s_ours), statistics.median(s_ng)
    ratio = m_ng / m_ours
    print(f"  median: ours {m_ours:.3f}, nanoGCG {m_ng:.3f}; speed-up (nanoGCG / ours): {ratio:.2f}x "
          f"(means: {statistics.mean(s_ng) / statistics.mean(s_ours):.2f}x)")
    print(f"  ours: {sum(r['evaluated'] for r in ours)} candidates valued, {sum(r['rejected'] for r in ours)} rejected by the round trip in "
          f"context; re-scoring one candidate with the full objective (fine-tune and base), not timed above: {rescore_s:.3f}s")
    print(f"  nanoGCG ran with transformers {got['transformers']}")
    goal = ratio >= 3 and b_ours[-1] <= b_ng[-1] + 1e-6
    print(f"goal (>= 3x per step, final loss equal or better): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
