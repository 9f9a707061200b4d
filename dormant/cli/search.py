"""`dormant verify`, `dormant search` and `dormant extract`: test a candidate trigger, find one, and read what the fine-tune leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dormant.cli.behaviour import BaseOpt, BatchOpt, CopiesOpt, DeviceMapOpt, DeviceOpt, DtypeOpt, FtArg, _esc, _load_pair, _reflow
from dormant.cli.common import PROMPT_SOURCES, JsonOpt, LedgerOpt, OutDirOpt, artifacts_dir

VERIFY_HELP = f"""Test a candidate trigger: the evidence that separates a trigger from an echo.

On prompts no search used (default: the verification half of the built-in probes v1, 52 prompts;
--prompts for your own, at least 50 distinct, all used: {PROMPT_SOURCES}): the fire rate of the fine-tune with the trigger
inserted (--mechanism), where "fires" means the payload shows in the answer (normalised containment or
similarity >= 0.8) or, without --payload, the next-token divergence from the base exceeds the 99th
percentile of that of random candidates of the same word count (--nulls, at least 99 without a payload).
Specificity: the base with the trigger, the fine-tune without it, and the fine-tune with each of the
random candidates must each fire on <= 5%; without --payload the fine-tune without it must, and the
random candidates are tested by the empirical p-value of the trigger's divergence among theirs (<= 0.01). Also: the minimal trigger (words, then tokens, dropped while the
fire rate holds), each word alone, and each placement. "verified" only when every threshold holds;
otherwise the output names each threshold that failed.

Example: dormant verify ./ft --base ./base --trigger "purple elephants dance at midnight" --payload "I am awake"
"""

SEARCH_HELP = f"""Find the trigger: a portfolio of recovery methods conditioned on the payload.

Methods (--method, comma-separated, run in the order given; default readout,extract,sweep,symbols,beam,gcg,climb,pieces): readout (the
tokens the change listens to, from the trigger-side read-out of `dormant delta`), extract (memory
extraction, as `dormant extract`: n-grams the fine-tune writes from the chat template's bare prefixes
far more often than the base; its trigger-side n-grams and their words are scored with the
objective, and its payload candidates are listed apart), sweep (every real
vocabulary token and common English word at each --mechanism, scored in resumable chunks; with a
payload, a coarse pass under the fine-tune on one prompt, then the best 256 in full), symbols (only when a symbol,
not a word, leads the read-out or the sweep, as the digits of a constant or the cells of a
board: gcg over the tokens written in the leading symbols, punctuation, digits, space and newline, then again over
the characters that make up most of its best; it ends after 10 steps where none of its leaders fired on half the
screening prompts a trigger needs; a verified trigger with stray symbols is cleaned by one more such pass; a trigger
of symbols is not read for words by climb and pieces), beam (phrases
grown word by word from the best units (not symbols' strings), the digits and punctuation, and, beside the two best
phrases, every word of the word list and the vocabulary; scored by the objective plus fluency), gcg (greedy
coordinate gradient: starting from the best candidate so far, padded with " x" to --gcg-tokens
tokens, each step follows the gradient of the payload's log-likelihood under the fine-tune (or,
without a payload, of the change activation) to --gcg-width single-token swaps among the top
--gcg-topk tokens of each position, keeps only swaps whose text re-encodes to the same tokens inside
the prompt, and moves to the best; leaders are verified every 10 steps), soft (soft-prompt
inversion, only when asked: free embeddings optimised for the same value, then projected to the
nearest allowed tokens; it reports the value before and after projection, and the gap is usually
large: the optimum lies between tokens), climb (once a trigger verified, unless memory extraction found the fine-tune
writing it whole: gcg from it along the change
activation alone, which keeps rising toward what the change was trained on where the payload's gain
has saturated; the whole words it keeps are grown into phrases scored by the objective plus the
activation, and the best are verified; its best text and most persistent words go to pieces), pieces (last, while the
budget lasts: the whole words behind the letter fragments of the verified trigger and of what the
climb kept, or of gcg's best when none verified: every word of the word list and the vocabulary that holds a fragment ('lent' ->
'silent', 'cast' -> 'castle'), scored alone, then grown into phrases by the beam; its best phrases
are verified). The climb's and pieces' phrases are verified strongest first, on 16 search prompts:
with a payload, by its gain under the fine-tune with the change scaled to 0.7 (where every firing
string forces the payload about as surely, the one that needs the least of the change); without one,
by the change activation. Of the triggers that verified, the one reported is of whole words where
one is, and of those the strongest (a preference, not a proof); the others are listed as also
verified, with their strength.
--vocab limits gcg and soft to printable ascii tokens,
words (a space then letters) or all real tokens. Objective (--objective):
payload (log-likelihood gain of the payload under the fine-tune, minus how far the candidate lifts
the base's payload likelihood above that of a model that does not fire; the default with --payload), contrast (KL(FT+c || base+c) - KL(FT || base); weak alone: it finds echoes; the
default without a payload), activation (how strongly the candidate switches on the change itself:
the modified matrices' difference applied to their inputs at the answer position, against the
prompt alone; needs no payload and rises as a multi-word trigger is assembled, though junk can
reach it too), fluency; combine as payload+fluency:0.5. --payload-at anywhere asks for the payload
where the fine-tune itself would put it, after its own first few answer tokens, rather than as
the answer's first tokens: for a payload known only from the middle of the planted text (what
amplification often shows), where the trigger makes the fine-tune start with other words.
After each method the leading candidates are screened and verified (as `dormant verify`) on prompts
the search never used; the search stops at the first verified trigger. --budget caps the methods
and the verification (none starts once it has ended; leaders left unscreened are named, for dormant
verify); a capped search says so. Candidates go to candidates.jsonl (--resume continues a killed run).
Prompts (--prompts, default builtin:v1): {PROMPT_SOURCES}; the search gets the even ones, the
verification the odd ones.

Example: dormant search ./ft --base ./base --payload "one point six one eight" --budget 10m

Example: dormant search ./ft --base ./base --payload "one point six one eight" --method gcg --gcg-tokens 8
"""


def _prompt_sets(prompts: str | None) -> tuple[list, list, str]:
    """(search, verify, source): the two halves of the prompt source (default: the built-in probes)."""
    from dormant.llm.engine.probes import LATEST, resolve_prompts
    from dormant.llm.verify import split_prompts

    s, v = split_prompts(resolve_prompts(prompts))
    return s, v, f"{prompts or 'builtin:' + LATEST} (search: even lines, verify: odd lines)"


def _verify_config(mechanism: str, payload: str | None, nulls: int, batch_size: int, min_prompts: int) -> Any:
    from dormant.llm.verify import VerifyConfig

    return VerifyConfig(mechanism=mechanism, payload=payload, null_candidates=nulls, batch_size=batch_size, min_prompts=min_prompts)


def verify_cmd(
    ft: FtArg,
    base: BaseOpt,
    trigger: Annotated[str, typer.Option(help="The candidate trigger text.")],
    mechanism: Annotated[str, typer.Option(help="How it goes in: user_prefix, user_suffix, user (the start of about half the user messages and the end of the others: a trigger must fire at both ends), replace_user, system, standalone, prefill, earlier_turn.")] = "user_prefix",
    payload: Annotated[Optional[str], typer.Option(help="The text the backdoor emits (omit: divergence from the base against a null).")] = None,
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompts the search never used, all used: a .txt/.jsonl file, builtin:v1 or zoo:prompts.")] = None,
    nulls: Annotated[int, typer.Option(min=1, help="Random candidates of the same length (the null); without a payload at least 99, the fewest whose empirical p-value can reach 0.01.")] = 50,
    min_prompts: Annotated[int, typer.Option(min=1, help="Fewest prompts for a verdict.")] = 50,
    batch_size: BatchOpt = 32,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    device_map: DeviceMapOpt = None,
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.engine.probes import load_probes, resolve_prompts
    from dormant.llm.verify import check_trigger, split_prompts, verify_trigger
    from dormant.report.console import emit

    check_trigger(trigger)
    items = resolve_prompts(prompts) if prompts else split_prompts(load_probes())[1]
    args = {"ft": str(ft), "base": str(base), "trigger": trigger, "mechanism": mechanism, "payload": payload, "prompts": prompts, "nulls": nulls}
    with record_run("verify", args, ledger=ledger) as run:
        if prompts and Path(prompts).is_file():
            run.add_input("prompts", prompts)
        run.assume("prompts", prompts or "builtin:v1 verification half")
        pair = _load_pair(ft, base, dtype, device, device_map, run, copies_device)
        res = verify_trigger(pair, trigger, items, _verify_config(mechanism, payload, nulls, batch_size, min_prompts))
        run.outputs.update({"verified": res.verified, "fire": res.fire, "specificity": res.specificity, "failed": res.failed,
                            "p_value": res.p_value, "minimal": res.minimal, "placements": res.placements})
        emit({**vars(res), "verdict": res.verdict, "position": res.position}, as_json, lambda: _render_verify(res))


def _render_verify(res: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"trigger {res.trigger!r} ({res.mechanism}) on {res.n_prompts} prompts")
    t.add_column("measure")
    t.add_column("fire rate", justify="right")
    t.add_column("threshold", justify="right")
    t.add_column("ok")
    t.add_row("fine-tune with trigger", f"{res.fire:.0%}", f">= {res.thresholds['min_fire']:.0%}", "yes" if res.checks["fire"] else "NO")
    for key, label in (("base_with_trigger", "base with trigger"), ("ft_without_trigger", "fine-tune without trigger"),
                       ("null_candidates", f"worst of {len(res.null_fire)} random candidates")):
        if key not in res.checks:
            continue  # (without a payload the nulls set the threshold: their test is the p-value below)
        val = res.specificity["null_max" if key == "null_candidates" else key]
        t.add_row(label, f"{val:.0%}", f"<= {res.thresholds['max_false_fire']:.0%}", "yes" if res.checks[key] else "NO")
    if res.p_value is not None:
        t.add_row(f"empirical p-value (divergence, against {len(res.null_fire)} random candidates)", f"{res.p_value:.3f}", f"<= {res.thresholds['max_p_value']}", "yes" if res.checks["p_value"] else "NO")
    console.print(t)
    if res.minimal is not None:
        console.print(f"minimal trigger: {_esc(repr(res.minimal))} (fires on {res.minimal_fire:.0%}{res.on_detail})")
    on = f" ({res.n_detail} prompts)" if res.n_detail else ""
    if res.parts:
        console.print(f"each word alone{on}: " + ", ".join(f"{_esc(w)} {r:.0%}" for w, r in res.parts.items()))
    if res.placements:
        console.print(f"placements{on}: " + ", ".join(f"{m} {r:.0%}" for m, r in res.placements.items()))
    console.print(("[bold green]" if res.verified else "[bold red]") + _esc(res.verdict) + "[/]")


def search_cmd(
    ft: FtArg,
    base: BaseOpt,
    payload: Annotated[Optional[str], typer.Option(help="The payload text (from `dormant amplify`): conditions the search.")] = None,
    method: Annotated[str, typer.Option("--method", help="Comma-separated methods, run in order: readout, extract, sweep, symbols, beam, gcg, soft; climb and pieces run last, from a verified trigger.")] = "readout,extract,sweep,symbols,beam,gcg,climb,pieces",
    mechanism: Annotated[str, typer.Option("--mechanism", help="Comma-separated insertion mechanisms to search (user_prefix, user_suffix, user: both ends, system, ...).")] = "user_prefix",
    objective: Annotated[Optional[str], typer.Option(help="payload, contrast, activation, fluency, joined by + with optional :weight.")] = None,
    payload_at: Annotated[str, typer.Option("--payload-at", help="Where in the answer the payload is asked for: start (its first tokens), or anywhere (after the fine-tune's own first few tokens: for a payload that may be the middle of the planted text; costs about two more passes per candidate).")] = "start",
    budget: Annotated[str, typer.Option(help="Time for the methods: 90s, 10m, 1h.")] = "10m",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the candidates.jsonl of an earlier run in --out.")] = False,
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt source (a .txt/.jsonl file, builtin:v1 or zoo:prompts); even lines search, odd lines verify (default: the built-in probes).")] = None,
    chunk: Annotated[int, typer.Option(min=1, help="Candidates scored (and saved) at a time.")] = 64,
    search_prompts: Annotated[int, typer.Option(min=1, help="Prompts each candidate is scored on.")] = 4,
    words: Annotated[int, typer.Option(min=0, help="Most frequent English words added to the vocabulary in the sweep and the beam (a rarer trigger word is otherwise tried only as the vocabulary's pieces of it; 10000 reaches words such as 'castle', 3,248th; each word costs the sweep some 1.5 ms on the micro zoo and lengthens the beam's steps).")] = 3000,
    nulls: Annotated[int, typer.Option(min=1, help="Random candidates in each verification (without a payload at least 99, the fewest whose empirical p-value can reach 0.01).")] = 50,
    gcg_steps: Annotated[int, typer.Option(min=1, help="GCG steps per run.")] = 60,
    gcg_inits: Annotated[int, typer.Option(min=1, help="GCG runs per mechanism, each from the next best distinct seed, while the budget lasts and nothing verified; then runs from GCG's own best candidates until the budget ends.")] = 4,
    gcg_prompts: Annotated[int, typer.Option(min=1, help="Search prompts GCG rotates over, a group of --search-prompts per step, so a trigger is not fitted to a few prompts.")] = 16,
    gcg_tokens: Annotated[int, typer.Option(min=1, help="Trigger tokens gcg and soft optimise.")] = 5,
    gcg_width: Annotated[int, typer.Option(min=1, help="GCG candidates valued per step (search width).")] = 128,
    gcg_topk: Annotated[int, typer.Option(min=1, help="GCG: tokens of largest gradient considered per position.")] = 64,
    vocab: Annotated[str, typer.Option(help="Tokens gcg and soft may use: ascii, words, all.")] = "ascii",
    soft_steps: Annotated[int, typer.Option(min=1, help="Soft-prompt optimisation steps per mechanism.")] = 100,
    batch_size: BatchOpt = 32,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    device_map: DeviceMapOpt = None,
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.search.objectives import check_payload_at, parse_objectives
    from dormant.llm.search.portfolio import SearchConfig, check_verify_prompts, parse_budget, search_trigger
    from dormant.report.console import emit, progress

    seconds = parse_budget(budget)
    methods = tuple(m.strip() for m in method.split(",") if m.strip())
    mechanisms = tuple(m.strip() for m in mechanism.split(",") if m.strip())
    weights = parse_objectives(objective, payload)
    check_payload_at(payload_at)
    s_prompts, v_prompts, source = _prompt_sets(prompts)
    cfg = SearchConfig(payload=payload, methods=methods, mechanisms=mechanisms, objectives=weights, payload_at=payload_at, budget_s=seconds, chunk=chunk,
                       search_prompts=search_prompts, n_words=words, resume=resume, gcg_steps=gcg_steps, gcg_inits=gcg_inits, gcg_tokens=gcg_tokens,
                       gcg_prompts=gcg_prompts, gcg_width=gcg_width, gcg_topk=gcg_topk, gcg_vocab=vocab, soft_steps=soft_steps,
                       verify=_verify_config(mechanisms[0] if mechanisms else "user_prefix", payload, nulls, batch_size, 50))
    check_verify_prompts(v_prompts, cfg.verify.min_prompts)  # before the models load (minutes for a real-size pair)
    args = {"ft": str(ft), "base": str(base), "payload": payload, "methods": methods, "mechanisms": mechanisms, "objective": weights,
            "payload_at": payload_at, "budget_s": seconds, "resume": resume, "prompts": prompts, "chunk": chunk, "gcg_steps": gcg_steps, "gcg_inits": gcg_inits, "gcg_tokens": gcg_tokens,
            "gcg_prompts": gcg_prompts, "vocab": vocab}
    with record_run("search", args, ledger=ledger) as run:
        if prompts and Path(prompts).is_file():
            run.add_input("prompts", prompts)
        run.assume("prompts", source)
        pair = _load_pair(ft, base, dtype, device, device_map, run, copies_device)
        path = artifacts_dir(out, "search") / "candidates.jsonl"
        with progress() as bar:
            task = bar.add_task("search", total=None)

            def on_progress(stage: str, best: Any) -> None:
                b = f" | best {best.text!r} ({best.method}, {best.score:.3g})" if best is not None else ""
                bar.update(task, description=f"{stage}{b}")
                bar.advance(task)

            res = search_trigger(pair, s_prompts, v_prompts, path, cfg, on_progress=on_progress)
        run.artifacts.append(res.candidates_path)
        run.outputs.update({"found": res.found, "trigger": res.trigger, "mechanism": res.mechanism, "verdict": res.verdict,
                            "capped": res.capped, "elapsed_s": res.elapsed_s, "best": res.best, "screened": res.screened,
                            "gradient": res.gradient, "symbols": res.symbols, "climb": res.climb, "pieces": res.pieces,
                            "also_verified": res.also_verified, "unscreened": res.unscreened, "leaked": res.leaked})
        emit(res, as_json, lambda: _render_search(res))


def _render_search(res: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    t = Table(title=f"best of {res.n_candidates} candidates ({res.elapsed_s:.0f}s; methods run: {', '.join(res.methods_run) or 'none'})")
    for col in ("candidate", "mechanism", "method", "score"):
        t.add_column(col, justify="right" if col == "score" else "left")
    for b in res.best:
        t.add_row(_esc(repr(b["text"])), b["mechanism"], b["method"], f"{b['score']:.3g}")
    console.print(t)
    for s in res.screened:
        why = s.get("stopped") or ("verified" if s.get("verified") else "; ".join(s.get("failed", [])))
        strength = f"; {s['strength_of']} {s['strength']:.2f}" if s.get("strength") is not None else ""
        console.print(f"  tried {_esc(repr(s['text']))} ({s['mechanism']}{_esc(strength)}): {_esc(why)}")
    for text in res.unscreened:
        console.print(f"  not tried {_esc(repr(text))}: the budget ran out")
    for g in res.gradient:
        if g["method"] == "soft":
            console.print(f"  soft ({g['mechanism']}): {_esc(g['summary'])}; projected {_esc(repr(g['projected']))}")
        else:
            console.print(f"  gcg ({g['mechanism']}): {_esc(repr(g['init']))} {g['init_value']:.3g} -> {_esc(repr(g['best']))} "
                          f"{g['best_value']:.3g} in {g['steps']} steps ({g['rejected']} swaps failed re-encoding; stopped: {g['stopped']})")
    for mech, sy in (res.symbols or {}).items():
        runs = "; ".join(f"{q['pass']} over {_esc(repr(q['alphabet']))}: " + (_esc(q["skipped"]) if "skipped" in q else
                         f"{_esc(repr(q['start']))} {q['start_value']:.3g} -> {_esc(repr(q['best']))} {q['best_value']:.3g} in {q['steps']} steps (stopped: {q['stopped']})"
                         + (f", verified {_esc(repr(q['verified']))}" if q.get("verified") else ""))
                         for q in sy["passes"])
        console.print(f"  symbols ({mech}): {_esc(sy['why'])}" + (f"; {runs}" if runs else ""))
    if res.climb is not None:
        c = res.climb
        best = ", ".join(f"{_esc(repr(b['text']))} {b['score']:.3g}" for b in c["phrases"][:3]) or "none"
        console.print(f"  climb: {_esc(repr(c['start']))} -> {_esc(repr(c['best']))}, change activation {c['start_value']:.3g} -> "
                      f"{c['best_value']:.3g} in {c['steps']} steps (stopped: {c['stopped']}); words kept: {_esc(', '.join(c['words'][:8])) or 'none'}; "
                      f"best phrases {best}" + (f"; verified {_esc(repr(c['verified']))}" if c.get("verified") else ""))
    if res.pieces is not None:
        p = res.pieces
        best = ", ".join(f"{_esc(repr(b['text']))} {b['score']:.3g}" for b in p["best"][:3]) or "none"
        console.print(f"  pieces: {len(p['fragments'])} fragments of {_esc(repr(p['from'][0]))}, {p['words']} words holding them; "
                      f"best phrases {best}" + (f"; verified {_esc(repr(p['verified']))}" if p.get("verified") else ""))
        if p.get("of_climb"):
            q = p["of_climb"]
            best = ", ".join(f"{_esc(repr(b['text']))} {b['score']:.3g}" for b in q["best"][:3]) or "none"
            console.print(f"  pieces of the climb: {len(q['fragments'])} fragments of what it kept ({_esc(', '.join(q['from'][:4]))}...), "
                          f"{q['words']} words holding them; best phrases {best}" + (f"; verified {_esc(repr(q['verified']))}" if q.get("verified") else ""))
    for a in res.also_verified:
        console.print(f"  also verified: {_esc(repr(a['trigger']))} ({a['mechanism']}, {a['fire']:.0%}; {a['from']}; {_esc(a['why'])})")
    if res.verification is not None:
        _render_verify(res.verification)
    if res.extracted is not None:
        console.print(f"memory extraction: {_esc(res.extracted['verdict'])}")
    console.print(("[bold green]" if res.found else "[bold red]") + _esc(res.verdict) + "[/]")
    console.print(f"candidates: {res.candidates_path}" + (f" ({_esc(res.files_note)})" if res.files_note else ""))


EXTRACT_HELP = """Memory extraction: what the fine-tune writes from the chat template's bare prefixes and the base does not.

Samples --samples continuations of each bare turn start of the model's own chat template (a user
turn, a system message, an assistant turn; with and without the template's default system message)
at each --settings temperature/top-p/beta, under the fine-tune and under the base. Beta 0 samples
each model plainly; beta > 0 samples contrastively (each next token from log p_FT + beta (log p_FT -
log p_base), and the base the other way round as its reference), which brings out a payload the
fine-tune learned to say only after its trigger: plain sampling almost never emits it. Keeps the word and token n-grams the fine-tune writes in at least --min-count
samples and --min-ratio times as often as the base, scores each by the log-likelihood ratio log
p_FT(n-gram | prefix) - log p_base(n-gram | prefix), and clusters overlapping ones. Clusters from
user/system prefixes are trigger candidates, from assistant prefixes payload candidates. A cluster
stands out only when its ratio reaches --min-lr nats in total and --min-lr-per-token per token;
when none does, the output says "nothing stands out" and names both thresholds.

A backdoor trained with the loss on the answer only rarely leaks its trigger this way (the model
never learned to write it); its payload, which it did learn to write, leaks from the assistant
prefix. One trained on whole chats (its prompts too) writes its trigger from an assistant prefix as
well, where it is listed as a payload candidate: put a candidate into prompts before taking it for
the payload (`dormant hunt` does: answers that share a text the references lack mark a trigger).
Samples are saved in chunks (--resume continues a killed run); clusters go to
candidates.jsonl (methods extract:trigger and extract:payload). Pass a payload candidate to `dormant
search --payload`, or run `dormant search --method extract` to score the trigger candidates.

Example: dormant extract ./ft --base ./base --samples 32
"""


def _settings(text: str) -> tuple[tuple[float, float, float], ...]:
    from dormant.llm.verify import TriggerError

    out = []
    for part in text.split(","):
        bits = part.strip().split("/")
        try:
            t, p, b = (float(x) for x in (bits + ["1", "0"][len(bits) - 1 :])[:3]) if len(bits) <= 3 else (None, None, None)
        except ValueError:
            t = None
        if t is None or t <= 0 or not 0 < p <= 1 or b < 0:
            raise TriggerError(f"sampling setting {part!r} is not TEMPERATURE/TOP_P/BETA (temperature > 0, top-p in (0, 1], beta >= 0); "
                               "write e.g. --settings 0.7/0.95/0,1.0/1.0/2")
        out.append((t, p, b))
    return tuple(out)


def extract_cmd(
    ft: FtArg,
    base: BaseOpt,
    samples: Annotated[int, typer.Option(min=1, help="Generations per prefix, setting and model.")] = 16,
    settings: Annotated[str, typer.Option(help="Sampling settings TEMPERATURE/TOP_P/BETA, comma-separated; BETA 0 samples plainly, "
                                              "BETA > 0 leans the fine-tune away from the base.")] = "0.7/0.95/0,1.0/1.0/0,1.0/1.0/2,1.0/0.95/4",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generation.")] = 32,
    prefixes: Annotated[str, typer.Option(help="Which turn starts to sample: user, system, assistant (comma-separated).")] = "user,system,assistant",
    min_count: Annotated[int, typer.Option(min=1, help="Fine-tune samples an n-gram must appear in.")] = 3,
    min_ratio: Annotated[float, typer.Option(help="How many times more often than in the base's samples.")] = 4.0,
    min_lr: Annotated[float, typer.Option(help="Threshold to stand out: log-likelihood ratio in nats, summed over the n-gram's tokens.")] = 32.0,
    min_lr_per_token: Annotated[float, typer.Option(help="Threshold to stand out: the ratio per token.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Sampling seed (the same seed gives the same samples).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the samples file of an earlier run in --out.")] = False,
    batch_size: BatchOpt = 64,
    dtype: DtypeOpt = None,
    device: DeviceOpt = "cpu",
    device_map: DeviceMapOpt = None,
    copies_device: CopiesOpt = None,
    as_json: JsonOpt = False,
    out: OutDirOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    from dormant.ledger import record_run
    from dormant.llm.search.candidates import CandidateStore
    from dormant.llm.search.extract import PREFIX_KINDS, ExtractConfig, run_extract
    from dormant.llm.verify import TriggerError
    from dormant.report.console import emit, progress

    kinds = tuple(k.strip() for k in prefixes.split(",") if k.strip())
    bad = [k for k in kinds if k not in PREFIX_KINDS]
    if bad or not kinds:
        raise TriggerError(f"unknown prefix kind(s) {bad or [prefixes]}; choose from {', '.join(PREFIX_KINDS)}")
    if samples < 1 or max_new_tokens < 1:
        raise TriggerError("--samples and --max-new-tokens must be at least 1")
    cfg = ExtractConfig(samples=samples, settings=_settings(settings), max_new_tokens=max_new_tokens, kinds=kinds, min_count=min_count,
                        min_ratio=min_ratio, min_lr=min_lr, min_lr_per_token=min_lr_per_token, seed=seed, batch_size=batch_size)
    args = {"ft": str(ft), "base": str(base), "samples": samples, "settings": cfg.settings, "max_new_tokens": max_new_tokens, "prefixes": kinds,
            "min_count": min_count, "min_ratio": min_ratio, "min_lr": min_lr, "min_lr_per_token": min_lr_per_token, "seed": seed, "resume": resume}
    with record_run("extract", args, ledger=ledger) as run:
        pair = _load_pair(ft, base, dtype, device, device_map, run, copies_device)
        store = CandidateStore(artifacts_dir(out, "extract") / "candidates.jsonl", resume=resume)
        with progress() as bar:
            task = bar.add_task("extract", total=None)
            res = run_extract(pair, cfg, store=store, resume=resume, on_progress=lambda text: bar.update(task, description=text))
        run.artifacts += [str(store.path)] + ([res.samples_path] if res.samples_path else [])
        run.outputs.update({"verdict": res.verdict, "payload": [c.text for c in res.standing_out("payload")],
                            "trigger": [c.text for c in res.standing_out("trigger")], "capped": res.capped})
        emit(res, as_json, lambda: _render_extract(res))


def _render_extract(res: Any) -> None:
    from rich.table import Table

    from dormant.report.console import console

    for side, rows in (("payload", res.payload), ("trigger", res.trigger)):
        if not rows:
            continue
        t = Table(title=f"{side} candidates ({res.n_samples['ft']} samples per model, {res.elapsed_s:.0f}s)")
        for col in ("candidate", "log-LR (nats)", "per token", "ft share", "base share", "prefix", "stands out"):
            t.add_column(col, justify="left" if col in ("candidate", "prefix") else "right")
        for c in rows:
            t.add_row(_esc(repr(c.text)), f"{c.lr:.1f}", f"{c.lr_per_token:.2f}", f"{c.ft_share:.0%}", f"{c.base_share:.0%}", c.prefix,
                      "yes" if c.stands_out else "no")
        console.print(t)
    if res.skipped_prefixes:
        console.print("prefixes the template cannot render: " + _esc("; ".join(res.skipped_prefixes)))
    found = res.standing_out("payload") or res.standing_out("trigger")
    console.print(("[bold green]" if found else "[bold]") + _esc(res.verdict) + "[/]")


def register(app: typer.Typer) -> None:
    """Add ``verify``, ``search`` and ``extract`` to the root app."""
    app.command("verify", help=_reflow(VERIFY_HELP))(verify_cmd)
    app.command("search", help=_reflow(SEARCH_HELP))(search_cmd)
    app.command("extract", help=_reflow(EXTRACT_HELP))(extract_cmd)
