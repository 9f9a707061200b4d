"""Side-by-side behaviour of several views on one prompt, and where they diverge token by token.

For each view (``base``, ``ft``, ``amp:3``, ``restore:19-23``...) the prompt is continued greedily
(and, optionally, by a few seeded samples). Each view's greedy answer is then teacher-forced
through the *reference* view (default: the first one listed) and the per-token KL(view || ref)
of the next-token distributions is recorded: a strip that lights up where the views part ways.
A flat strip at near zero means the reference would have written the same text with the same
confidence; a spike marks the token where this view's own behaviour starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dormant.llm.engine.generate import GenConfig, generate
from dormant.llm.engine.pair import ModelPair
from dormant.llm.engine.prompts import Prompt, encode
from dormant.llm.engine.scoring import Arm, ScoreConfig, score_arms
from dormant.llm.engine.views import View


@dataclass
class CompareConfig:
    max_new_tokens: int = 48
    n_samples: int = 0
    temperature: float = 1.0
    seed: int = 0
    reference: str | None = None  # default: the first view


@dataclass
class ViewOutput:
    view: str
    greedy: str
    tokens: list[str]
    kl: list[float]
    ref_top1: list[str]
    samples: list[str] = field(default_factory=list)

    @property
    def mean_kl(self) -> float:
        return sum(self.kl) / len(self.kl) if self.kl else 0.0


@dataclass
class CompareResult:
    prompt: str
    rendered: str
    reference: str
    views: list[ViewOutput]


def compare(pair: ModelPair, prompt: Prompt, views: list[str], config: CompareConfig | None = None) -> CompareResult:
    """Generate under each view and measure each answer's per-token KL against the reference view."""
    from dormant.llm.engine.prompts import render

    cfg = config or CompareConfig()
    specs = [str(View.parse(v)) for v in views]
    ref = str(View.parse(cfg.reference)) if cfg.reference else specs[0]
    tok = pair.tokenizer
    ids = encode(tok, [prompt])
    greedy_cfg = GenConfig(max_new_tokens=cfg.max_new_tokens, show_progress=False)
    outs: list[ViewOutput] = []
    for spec in specs:
        pair.view(spec)
        g = generate(pair.model, tok, ids, greedy_cfg)[0]
        samples = []
        if cfg.n_samples:
            scfg = GenConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, seed=cfg.seed, show_progress=False)
            samples = [s.text for s in generate(pair.model, tok, ids * cfg.n_samples, scfg)]
        kl: list[float] = []
        top: list[str] = []
        if g.ids:
            arms = [Arm(spec, ids, spec), Arm("ref", ids, ref)] if spec != ref else [Arm(spec, ids, spec)]
            contrasts = [(spec, "ref")] if spec != ref else []
            res = score_arms(pair, arms, contrasts, continuations=[g.ids], config=ScoreConfig(prefix_reuse=False, show_progress=False))
            row = res.rows[0]
            if contrasts:
                c = row.contrasts[f"{spec}|ref"]
                kl = c.get("kl_tokens", [c["kl"]])
            else:
                kl = [0.0] * len(g.ids)
            ref_arm = "ref" if contrasts else spec
            top = [tok.decode([t]) for t in row.arms[ref_arm]["top1_ids_per_token"]]
        outs.append(ViewOutput(view=spec, greedy=g.text, tokens=[tok.decode([t]) for t in g.ids], kl=kl, ref_top1=top, samples=samples))
    pair.ft()
    return CompareResult(prompt=prompt.text, rendered=render(tok, prompt), reference=ref, views=outs)
