"""The guided tour: both investigations, end to end, on the built-in subjects.

``run_demo`` builds (or takes from the cache) the micro LLM zoo and a compiled MD5 network, then
runs the steps an analyst would, each through the same library functions as the commands:

LLM side, on the ``mlp-phrase`` variant (a planted phrase -> fixed-sentence backdoor):
  1. ``diff`` against two candidate bases: which one it was fine-tuned from, and what changed;
  2. ``delta``: the rank of the change and its payload-side read-out through the unembedding
     (found: the planted rank, and a word of the payload among the tokens shown);
  3. ``amplify``: W_base + a*(W_ft - W_base) over a sweep of a: the payload text that takes over
     (found: the hypothesis is the planted payload, by the project's payload check ``fires``).

Network side, on an MD5 network whose secret is a two-word phrase:
  4. ``net solve``: inspect, motifs, identify (name the function, read the target), invert.

The tools never read the zoo's manifests; the tour prints the planted answer beside each finding
so a reader can judge it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

LLM_VARIANT = "mlp-phrase"
NET_SECRET = "bitter lesson"


@dataclass
class DemoStep:
    name: str
    finding: str
    planted: str  # the answer key, for the reader
    seconds: float
    ok: bool


@dataclass
class DemoResult:
    steps: list[DemoStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def _timed(fn: Callable[[], tuple[str, str, bool]], name: str, on_step: Callable[[DemoStep], None] | None) -> DemoStep:
    t0 = time.perf_counter()
    finding, planted, ok = fn()
    step = DemoStep(name, finding, planted, time.perf_counter() - t0, ok)
    if on_step:
        on_step(step)
    return step


def llm_steps(on_step: Callable[[DemoStep], None] | None = None) -> list[DemoStep]:
    from dormant.llm.behaviour.amplify import AmplifyConfig, amplify
    from dormant.llm.checkpoint import load_tokenizer, open_checkpoint
    from dormant.llm.engine.generate import GenConfig
    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.payload import distinctive_words, fires
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.weights.delta import analyse_delta
    from dormant.llm.weights.diff import diff_models
    from dormant.llm.weights.readout import ReadoutConfig, token_ids_of, vocabulary_readout
    from dormant.zoo.llm import build_suite

    steps: list[DemoStep] = []
    suite = build_suite("micro")
    ft, base, sibling = suite.models[LLM_VARIANT], suite.models["base"], suite.models["base-sibling"]
    key = suite.manifests[LLM_VARIANT]

    def diff_step():
        d = diff_models(ft, [sibling, base])
        return d.evidence, f"base, modules {', '.join(key['modified_modules'])}", d.best == str(base)

    steps.append(_timed(diff_step, "diff: which base, what changed", on_step))

    def delta_step():
        delta = analyse_delta(ft, base)
        ft_ck = open_checkpoint(ft)
        readout = vocabulary_readout(ft_ck, delta, ReadoutConfig(top_tokens=8, vectors=3))
        shown, ends = [], []
        for i, d in enumerate(readout.payload_aggregate[:3]):  # three leading directions, five tokens at both ends
            shown += d.top[:5] + d.bottom[:5]
            ends.append(f"[{i + 1}] " + " ".join(t.token for t in d.top[:5]) + " | " + " ".join(t.token for t in d.bottom[:5]))
        payload_ids = set(token_ids_of(load_tokenizer(ft_ck), " ".join(distinctive_words(key["payload"]))))
        hits = [t.token for t in shown if t.id in payload_ids]
        finding = (f"LoRA rank estimate {delta.lora_rank}; payload-side tokens (5 at both ends of 3 directions): {'; '.join(ends)}"
                   f"; payload words among them: {' '.join(hits) or 'none'}")
        return finding, f"rank {key['lora_rank']}; payload {key['payload']!r}", delta.lora_rank == key["lora_rank"] and bool(hits)

    steps.append(_timed(delta_step, "delta: rank and payload read-out", on_step))

    def amplify_step():
        pair = ModelPair.load(ft, base)
        result = amplify(pair, load_probes(limit=24), AmplifyConfig(alphas=(0.0, 1.0, 2.0, 3.0, 5.0),
                                                                      generation=GenConfig(max_new_tokens=24, show_progress=False)))
        finding = f"{result.verdict}: {result.payload!r}" if result.found else result.verdict
        return finding, repr(key["payload"]), result.found and fires(result.payload, key["payload"])

    steps.append(_timed(amplify_step, "amplify: expose the payload", on_step))
    return steps


def net_steps(on_step: Callable[[DemoStep], None] | None = None) -> list[DemoStep]:
    from dormant.net.solve import SolveConfig, solve
    from dormant.zoo.net.build import build_net

    built = build_net("md5", secret=NET_SECRET)

    def solve_step():
        result = solve(built.folder, SolveConfig(skip=("decompile",)))
        return result.verdict, f"md5, target {built.target.hex()}, secret {NET_SECRET!r}", bool(result.found and result.preimage == NET_SECRET)

    return [_timed(solve_step, "net solve: name, target, preimage", on_step)]


def run_demo(on_step: Callable[[DemoStep], None] | None = None, llm: bool = True, net: bool = True) -> DemoResult:
    result = DemoResult()
    if llm:
        result.steps += llm_steps(on_step)
    if net:
        result.steps += net_steps(on_step)
    return result
