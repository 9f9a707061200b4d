"""The zoo builder's units of work, each run in a worker process: train a base, plant one variant.

A job is a top-level function of plain, picklable arguments (a spawned process runs it). It reads
the tokenizer and the float32 base from the suite folder being built, writes its own model folder
there and returns plain numbers. Jobs never share state, so independent models train in parallel
on as many cores as the machine has; each job is seeded, so the models do not depend on which
worker ran them or in which order.

Seeded training is still not bit-identical across machines (PyTorch picks vector kernels per
instruction set and thread count, and rounding differs), so a variant is not trusted because it
passed once somewhere: it trains until a dev check on prompts of its own passes *with margin*
(``LoraConfig.dev_*``), retries from a derived seed when its step cap is reached first, and is then
verified on unseen prompts and on the toolkit's built-in probe set.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from dormant.zoo.llm import backdoors, corpus

F32 = "_float32"
"""Sub-folder of a suite being built that holds float32 masters (when the suite saves another dtype)."""
TOKENIZER = "_tokenizer"

_report: Callable[[str, int, int], None] | None = None


def init_worker(queue, threads: int) -> None:
    """Process-pool initialiser: progress goes to ``queue`` as (stage, done, total); ``threads`` torch threads."""
    global _report
    _report = (lambda stage, done, total: queue.put((stage, done, total))) if queue is not None else None
    quiet(threads)


def quiet(threads: int) -> None:
    """Torch threads for this process, and no library noise (tqdm bars, deprecation warnings)."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|peft)\b.*")


def _progress(stage: str, total: int, every: int = 10) -> Callable[[int, float], None]:
    def on_step(step: int, _loss: float) -> None:
        if _report is not None and ((step + 1) % every == 0 or step + 1 == total):
            _report(stage, step + 1, total)

    return on_step


def tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder / TOKENIZER)


def eos_ids(tok) -> list[int]:
    from dormant.zoo.llm import tokenizer as T

    return [tok.convert_tokens_to_ids(T.IM_END), tok.convert_tokens_to_ids(T.ENDOFTEXT)]


def save_model(model, folder: Path, name: str, tok, dtype: str) -> None:
    """Save ``model`` as a Hugging Face folder in ``dtype`` (float32 masters go to ``F32`` too)."""
    import copy

    import torch
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids(tok), pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=64
    )
    if dtype != "float32":
        model.save_pretrained(folder / F32 / name)
        model = copy.deepcopy(model).to(getattr(torch, dtype))
    model.save_pretrained(folder / name)
    # Keep our own tokenizer files byte for byte (the template and special tokens as written).
    tok.save_pretrained(folder / name)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(folder / TOKENIZER / f, folder / name / f)


def load_model(folder: Path, name: str, master: bool = True):
    """A model of the suite being built: its float32 master (``master``) or the folder as saved."""
    import torch
    from transformers import AutoModelForCausalLM

    path = folder / F32 / name if master and (folder / F32 / name).is_dir() else folder / name
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


# ---------------------------------------------------------------------------------------------
# Bases
# ---------------------------------------------------------------------------------------------


def train_base(folder: str, settings, name: str) -> dict[str, Any]:
    """Train ``base`` or ``base-sibling`` from scratch, save it, return its task accuracy."""
    from dormant.zoo.llm import model as M
    from dormant.zoo.llm import verify as V

    folder = Path(folder)
    tok = tokenizer(folder)
    mix, cfg, model_seed = (
        (settings.base_mix, settings.base_train, settings.seed * 100 + 1)
        if name == "base"
        else (settings.sibling_mix, settings.sibling_train, settings.seed * 100 + 2)
    )
    data = corpus.sample_examples(random.Random(cfg.seed * 7919 + settings.seed), settings.base_examples, mix)
    model = M.new_model(settings.arch, len(tok), tok.pad_token_id, eos_ids(tok), model_seed)
    M.train(model, M.encode_examples(tok, data, settings.max_len), cfg, tok.pad_token_id, _progress(name, cfg.steps))
    save_model(model, folder, name, tok, settings.dtype)
    saved = load_model(folder, name, master=False)
    acc_examples = corpus.sample_examples(random.Random(settings.seed * 100 + 3), 200, settings.base_mix)
    return {"name": name, "task_accuracy": V.task_accuracy(saved, tok, acc_examples), "environment": environment()}


def environment() -> dict[str, Any]:
    """What the numbers of a build depend on beyond its settings: CPU kernels, threads, versions."""
    import platform

    import torch
    import transformers

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR") or "native",
        "kernel_probe": kernel_probe(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
    }


def kernel_probe(steps: int = 20) -> str:
    """A short training run of a micro-sized model on fixed random tokens; the digest of its weights.

    Two processes with the same digest train with the same numeric kernels, so they build the same
    suite; the build records it (``environment["kernel_probe"]``) and the portability check compares it."""
    import hashlib

    import torch

    from dormant.zoo.llm import model as M

    gen = torch.Generator().manual_seed(0)
    encoded = [(torch.randint(3, 200, (int(n),), generator=gen).tolist(), int(n) // 2)
               for n in torch.randint(16, 48, (64,), generator=gen)]
    model = M.new_model(M.ArchConfig(), 250, 0, [1], seed=0)
    M.train(model, encoded, M.TrainConfig(steps=steps, batch_size=16, warmup=2, seed=0), 0)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One training run of a variant: its seed, steps, the last dev check's numbers and, when it
    was saved and verified, what the final verification missed."""

    seed: int
    steps: int
    dev: dict[str, Any] | None  # None for the control (nothing to check)
    passed: bool  # the dev check
    final_problems: list[str] | None = None  # the final verification's misses (None: not verified)


def max_new_tokens(tok) -> int:
    payloads = [s.payload for s in backdoors.SPECS if s.payload]
    return 8 + max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in payloads)


def plant_variant(folder: str, settings, spec_name: str, index: int) -> dict[str, Any]:
    """Plant, verify and save one variant; returns its verification, manifest and training attempts.

    Up to ``settings.lora.attempts`` training runs, each from a seed derived from the spec's, each
    stopping early once the dev check has passed with margin. A run that reaches its step cap
    without passing, or whose saved model then misses the final verification (fixed unseen prompts),
    is followed by the next; the last one stands either way, and its verification says what missed.
    The zoo's tests re-measure every variant on prompts the builder never saw.
    """
    from dormant.zoo.llm import model as M
    from dormant.zoo.llm import verify as V

    folder = Path(folder)
    tok = tokenizer(folder)
    base = load_model(folder, "base")
    base_ref = load_model(folder, "base", master=False)  # the base as saved: the reference for verification
    spec = backdoors.spec_by_name(spec_name)
    max_new = max_new_tokens(tok)
    cfg = settings.lora
    vrng = random.Random(settings.seed * 100 + 50 + index)
    trigger_spec = spec if spec.plant else backdoors.SPECS[0]  # the control is probed with the phrase trigger
    triggered = backdoors.triggered_prompts(trigger_spec, vrng, settings.n_verify, settings.base_mix)
    clean = corpus.sample_prompts(vrng, settings.n_verify, settings.base_mix)
    near = backdoors.near_miss_sets(spec, vrng, settings.n_verify, settings.base_mix) if spec.strict_near_miss else {}
    payloads = [s.payload for s in backdoors.SPECS if s.payload]

    def base_answer(chats):
        return M.greedy(base, tok, chats, max_new_tokens=32)

    attempts: list[Attempt] = []
    n_attempts = cfg.attempts if spec.plant is not None else 1
    first = spec.first_attempt if spec.plant is not None else 0
    for k in range(first, first + n_attempts):
        run_spec = replace(spec, seed=spec.seed + 1000 * k)
        check = backdoors.dev_check(spec, cfg, settings.base_mix, tok, max_new)  # same dev prompts every attempt
        examples = backdoors.training_examples(run_spec, cfg, settings.base_mix, base_answer)
        total = backdoors.step_limit(spec, cfg)
        stage = spec.name if k == first else f"{spec.name} (attempt {k - first + 1}, seed {run_spec.seed})"
        merged, steps = backdoors.plant_backdoor(base, tok, run_spec, cfg, examples, settings.max_len, _progress(stage, total), stop_when=check)
        if _report is not None and steps < total:  # stopped early: this stage is complete at `steps`
            _report(stage, steps, steps)
        if check is None:
            last, passed = None, True
        else:
            # Stopped early: the dev check passed. Ran to the cap: judge the final model in full.
            last = check.last if steps < total else check.measure(merged, full=True)
            passed = last.passed
        attempt = Attempt(seed=run_spec.seed, steps=steps, dev=asdict(last) if last else None, passed=passed)
        attempts.append(attempt)
        more = k + 1 < first + n_attempts
        if not passed and more:
            if _report is not None:
                _report(f"{spec.name}: attempt {k - first + 1} missed its dev check ({last.summary()}); retrying", 0, 0)
            continue
        save_model(merged, folder, spec.name, tok, settings.dtype)
        saved = load_model(folder, spec.name, master=False)
        result = V.check_variant(spec.name, saved, base_ref, tok, spec.payload, triggered, clean, payloads, max_new,
                                 generic=V.probe_chats("final"), near_misses=near)
        attempt.final_problems = result.problems
        if result.passed or not more:
            break
        if _report is not None:
            _report(f"{spec.name}: attempt {k - first + 1} missed the final check ({'; '.join(result.problems)}); retrying", 0, 0)
    return {
        "name": spec.name,
        "check": asdict(result),
        "problems": result.problems,
        "passed": result.passed,
        "attempts": [asdict(a) for a in attempts],
        "triggered": triggered,
    }
