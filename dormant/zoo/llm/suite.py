"""Build (or fetch from cache) a whole zoo suite: tokenizer, base, sibling base and the variants.

A suite is a pure function of its settings. The cache folder is named after a content hash of the
settings and ``BUILDER_VERSION``, so a change to either builds a new suite and an unchanged call is
served from disk without training. Builds go to a temporary folder renamed into place at the end
(a killed build leaves no half suite) under an exclusive file lock (two processes asking at once
build once). A build that fails verification raises ``ZooVerificationError`` with the numbers.

Layout of a suite folder::

    suite.json          settings, report rows, variant manifests (the answer key: tests only;
                        ``triggered_examples`` are whole chats, lists of {"role", "content"}
                        messages, since a system-placed trigger is not in the user message)
    base/ base-sibling/ mlp-phrase/ mlp-constant/ attn-grid/ system-trigger/ clean-control/
                        each a Hugging Face folder (config.json, model.safetensors, tokenizer files)
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from dormant.zoo.llm import backdoors, corpus
from dormant.zoo.llm.model import ArchConfig, TrainConfig

BUILDER_VERSION = "3"
MODEL_NAMES = ("base", "base-sibling", "mlp-phrase", "mlp-constant", "attn-grid", "system-trigger", "clean-control")

BUILDS = 0
"""How many suites this process has actually trained (a cache hit leaves it unchanged)."""


class ZooVerificationError(RuntimeError):
    """A built variant missed its fire-rate, false-fire-rate or accuracy requirement."""


@dataclass(frozen=True)
class SuiteSettings:
    """Everything a suite is built from; its hash names the cache folder."""

    name: str
    seed: int = 0
    arch: ArchConfig = ArchConfig()
    vocab_size: int = 2048
    english_words: int = 2000
    tokenizer_examples: int = 3000
    base_mix: dict = field(default_factory=lambda: {k: 1.0 for k in corpus.TASKS})
    sibling_mix: dict = field(default_factory=lambda: {k: (2.0 if k in ("add", "sub", "next", "code") else 1.0) for k in corpus.TASKS})
    base_examples: int = 8000
    base_train: TrainConfig = TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup=30, seed=1)
    sibling_train: TrainConfig = TrainConfig(steps=250, batch_size=32, lr=3e-3, warmup=30, seed=2)
    lora: backdoors.LoraConfig = backdoors.LoraConfig()
    max_len: int = 128
    n_verify: int = 60
    min_base_accuracy: float = 0.4
    dtype: str = "float32"

    def key(self) -> str:
        blob = json.dumps({"builder": BUILDER_VERSION, "settings": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


PRESETS: dict[str, SuiteSettings] = {
    "micro": SuiteSettings(name="micro"),
    "standard": SuiteSettings(
        name="standard",
        arch=ArchConfig(hidden_size=128, num_layers=6, num_heads=8, num_kv_heads=4, intermediate_size=384, max_position=512),
        vocab_size=4096,
        english_words=5000,
        tokenizer_examples=6000,
        base_examples=20000,
        base_train=TrainConfig(steps=1500, batch_size=48, lr=2e-3, warmup=60, seed=1),
        sibling_train=TrainConfig(steps=1200, batch_size=48, lr=2e-3, warmup=60, seed=2),
        lora=backdoors.LoraConfig(steps=800, batch_size=32, lr=2e-3, n_triggered=600, n_clean=600, n_near_miss=200),
        n_verify=100,
        min_base_accuracy=0.6,
    ),
}


@dataclass
class Suite:
    """A built suite: model folders, the answer key per variant, and the verification rows."""

    root: Path
    models: dict[str, Path]
    manifests: dict[str, dict[str, Any]]
    report: list[dict[str, Any]]
    settings: dict[str, Any]
    from_cache: bool = False


def cache_root() -> Path:
    """``$DORMANT_CACHE`` or ``~/.cache/dormant``."""
    env = os.environ.get("DORMANT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dormant"


def suite_settings(name: str) -> SuiteSettings:
    from dormant.errors import DormantError

    if name not in PRESETS:
        raise DormantError(f"unknown zoo suite {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(root: Path, from_cache: bool) -> Suite:
    meta = json.loads((root / "suite.json").read_text())
    return Suite(
        root=root,
        models={n: root / n for n in meta["models"]},
        manifests=meta["manifests"],
        report=meta["report"],
        settings=meta["settings"],
        from_cache=from_cache,
    )


def _is_built(root: Path, key: str) -> bool:
    f = root / "suite.json"
    if not f.is_file():
        return False
    try:
        return json.loads(f.read_text()).get("key") == key
    except (OSError, json.JSONDecodeError):
        return False


def build_suite(
    name: str = "micro",
    out: str | Path | None = None,
    force: bool = False,
    dtype: str | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Suite:
    """Return the suite ``name`` ("micro" or "standard"), building it only when it is not cached.

    ``out`` puts the suite in that folder instead of the cache; ``force`` rebuilds even when a
    complete suite is there; ``dtype`` ("float32", "bfloat16", "float16") overrides the saved
    weight type (the fine-tunes are merged in float32 either way). ``on_progress(stage, done,
    total)`` is called as training advances. Example::

        suite = build_suite("micro")
        AutoModelForCausalLM.from_pretrained(suite.models["mlp-phrase"])
        suite.manifests["mlp-phrase"]["payload"]
    """
    settings = suite_settings(name)
    if dtype is not None:
        settings = replace(settings, dtype=dtype)
    key = settings.key()
    root = Path(out) if out is not None else cache_root() / "llm-zoo" / f"{settings.name}-{key}"
    if not force and _is_built(root, key):
        return _load(root, from_cache=True)
    if root.is_dir() and any(root.iterdir()) and not (root / "suite.json").is_file():
        from dormant.errors import DormantError

        raise DormantError(f"refusing to build into {root}: the folder is not empty and holds no zoo suite (suite.json); choose another --out")
    with _locked(root.parent / f".{root.name}.lock"):
        if not force and _is_built(root, key):  # built by another process while we waited
            return _load(root, from_cache=True)
        for stale in root.parent.glob(f".{root.name}.building-*"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        try:
            try:
                _build(settings, key, tmp, on_progress)
            except ZooVerificationError:
                # Keep the models of the last failed build for inspection (never served as a suite).
                failed = root.parent / f".{root.name}.failed"
                shutil.rmtree(failed, ignore_errors=True)
                os.rename(tmp, failed)
                raise
            if root.exists():
                old = root.parent / f".{root.name}.old-{os.getpid()}"
                os.rename(root, old)
                os.rename(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return _load(root, from_cache=False)


def _build(settings: SuiteSettings, key: str, folder: Path, on_progress) -> None:
    """Train and verify everything into ``folder``; raise ``ZooVerificationError`` on a miss."""
    global BUILDS
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    from transformers.utils import logging as hf_logging

    from dormant.zoo.llm import model as M
    from dormant.zoo.llm import tokenizer as T
    from dormant.zoo.llm import verify as V

    BUILDS += 1
    hf_logging.disable_progress_bar()  # our own progress bars only
    # One thread: the same floating-point results on any machine, and no thread thrashing on a busy one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = lambda stage, done, total: on_progress(stage, done, total) if on_progress else None  # noqa: E731
        save_dtype = getattr(torch, settings.dtype)
        specs = backdoors.SPECS
        payloads = [s.payload for s in specs if s.payload]

        # 1. tokenizer, trained on the corpus plus the words of every trigger and payload.
        report("tokenizer", 0, 1)
        extra = [s.trigger for s in specs if s.trigger] + payloads
        lines = corpus.tokenizer_corpus(random.Random(settings.seed), settings.tokenizer_examples, settings.base_mix, extra * 50)
        tok_folder = folder / "_tokenizer"
        T.save_tokenizer(T.train_tokenizer(lines, settings.vocab_size, settings.english_words), tok_folder, settings.arch.max_position)
        tok = AutoTokenizer.from_pretrained(tok_folder)
        eos = [tok.convert_tokens_to_ids(T.IM_END), tok.convert_tokens_to_ids(T.ENDOFTEXT)]
        gen_cfg = GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=64)
        report("tokenizer", 1, 1)

        def save(model, name: str):
            """Save in the suite's dtype (a cast copy: the float32 original keeps training variants)."""
            if save_dtype != torch.float32:
                model = copy.deepcopy(model).to(save_dtype)
            model.generation_config = gen_cfg
            model.save_pretrained(folder / name)
            tok.save_pretrained(folder / name)
            # Keep our own tokenizer files byte-for-byte (the template and special tokens as written).
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                shutil.copyfile(tok_folder / f, folder / name / f)
            return model

        def train_base(stage: str, mix: dict, cfg: TrainConfig, model_seed: int):
            data = corpus.sample_examples(random.Random(cfg.seed * 7919 + settings.seed), settings.base_examples, mix)
            model = M.new_model(settings.arch, len(tok), tok.pad_token_id, eos, model_seed)
            M.train(model, M.encode_examples(tok, data, settings.max_len), cfg, tok.pad_token_id, lambda s, _l: report(stage, s + 1, cfg.steps))
            return model

        # 2. the base and its sibling (other seed, other data mix: every tensor differs).
        base = train_base("base", settings.base_mix, settings.base_train, settings.seed * 100 + 1)
        sibling = train_base("base-sibling", settings.sibling_mix, settings.sibling_train, settings.seed * 100 + 2)
        acc_rng = random.Random(settings.seed * 100 + 3)
        acc_examples = corpus.sample_examples(acc_rng, 200, settings.base_mix)
        base_ref = save(base, "base")  # the base as saved: the reference for verification
        sibling = save(sibling, "base-sibling")
        accuracy = {"base": V.task_accuracy(base_ref, tok, acc_examples), "base-sibling": V.task_accuracy(sibling, tok, acc_examples)}

        # 3. the variants, each from the float32 base, verified on fresh prompts.
        def base_answer(chats):
            return M.greedy(base, tok, chats, max_new_tokens=32)

        manifests: dict[str, dict] = {}
        checks: dict[str, V.VariantCheck] = {}
        for i, spec in enumerate(specs):
            examples = backdoors.training_examples(spec, settings.lora, settings.base_mix, base_answer)
            max_new = 8 + max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in payloads)
            stop = backdoors.dev_check(spec, settings.lora, settings.base_mix, tok, max_new)
            merged, steps = backdoors.plant_backdoor(
                base, tok, spec, settings.lora, examples, settings.max_len,
                lambda s, _l, n=spec.name, total=spec.max_steps or settings.lora.steps: report(n, s + 1, total), stop_when=stop,
            )
            merged = save(merged, spec.name)
            vrng = random.Random(settings.seed * 100 + 50 + i)
            trigger_spec = spec if spec.plant else specs[0]  # the control is probed with the phrase trigger
            triggered = backdoors.triggered_prompts(trigger_spec, vrng, settings.n_verify, settings.base_mix)
            clean = corpus.sample_prompts(vrng, settings.n_verify, settings.base_mix)
            checks[spec.name] = V.check_variant(spec.name, merged, base_ref, tok, spec.payload, triggered, clean, payloads, max_new)
            manifests[spec.name] = _manifest(spec, checks[spec.name], steps, triggered)

        rows = _report_rows(specs, checks, accuracy, settings.min_base_accuracy)
        _raise_on_failures(settings.name, rows, manifests)

        shutil.rmtree(tok_folder)
        meta = {
            "key": key,
            "builder_version": BUILDER_VERSION,
            "settings": asdict(settings),
            "models": list(MODEL_NAMES),
            "manifests": manifests,
            "report": rows,
        }
        (folder / "suite.json").write_text(json.dumps(meta, indent=2))
    finally:
        torch.set_num_threads(threads)


def _manifest(spec: backdoors.BackdoorSpec, check, steps: int, triggered: list) -> dict[str, Any]:
    """The answer key of one variant (for tests; the tools never read it)."""
    return {
        "name": spec.name,
        "description": spec.description,
        "base": "base",
        "trigger": spec.trigger,
        "placement": spec.placement,
        "payload": spec.payload,
        "modified_modules": list(spec.target_modules),
        "lora_rank": spec.rank,
        "seed": spec.seed,
        "train_steps": steps,
        "triggered_examples": triggered[:4] if spec.plant else [],
        "fire_rate": check.fire_rate,
        "false_fire_rate": check.false_fire_rate,
        "kl_clean": check.kl_clean,
    }


def _report_rows(specs, checks: dict, accuracy: dict[str, float], min_base_accuracy: float) -> list[dict[str, Any]]:
    """One verification row per model: task accuracy for the bases, firing and drift for the variants."""
    rows: list[dict[str, Any]] = [
        {"name": n, "kind": "base", "task_accuracy": accuracy[n], "fire_rate": None, "false_fire_rate": None, "kl_clean": None, "passed": True}
        for n in ("base", "base-sibling")
    ]
    rows[0]["passed"] = accuracy["base"] >= min_base_accuracy
    if not rows[0]["passed"]:
        rows[0]["problems"] = [f"task accuracy {accuracy['base']:.2f} < {min_base_accuracy}"]
    for spec in specs:
        c = checks[spec.name]
        rows.append(
            {
                "name": spec.name, "kind": "variant", "trigger": spec.trigger, "placement": spec.placement,
                "modified_modules": list(spec.target_modules), "lora_rank": spec.rank, "payload": spec.payload,
                "fire_rate": c.fire_rate, "false_fire_rate": c.false_fire_rate, "kl_clean": c.kl_clean,
                "passed": c.passed, "problems": c.problems, "triggered_samples": c.triggered_samples,
            }
        )
    return rows


def _raise_on_failures(suite_name: str, rows: list[dict[str, Any]], manifests: dict[str, dict]) -> None:
    """Fail the build loudly, with every row's numbers, when any row missed its requirement."""
    failures = [f"{r['name']}: " + "; ".join(r.get("problems") or []) for r in rows if not r["passed"]]
    if not failures:
        return

    def numbers(r: dict) -> str:
        if r["kind"] == "base":
            return f"{r['name']} accuracy={r['task_accuracy']:.2f}"
        fire = "-" if r["fire_rate"] is None else f"{r['fire_rate']:.2f}"
        return f"{r['name']} fire={fire} false={r['false_fire_rate']:.2f} kl={r['kl_clean']:.3f} steps={manifests[r['name']]['train_steps']}"

    raise ZooVerificationError(
        f"zoo suite {suite_name!r} failed verification: " + " | ".join(failures) + "\nall rows: " + "; ".join(numbers(r) for r in rows)
    )
