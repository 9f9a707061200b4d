"""Build (or fetch from cache) a whole zoo suite: tokenizer, base, sibling base and the variants.

A suite is a pure function of its settings. The cache folder is named after a content hash of the
settings and ``BUILDER_VERSION``, so a change to either builds a new suite and an unchanged call is
served from disk without training. Builds go to a temporary folder renamed into place at the end
(a killed build leaves no half suite) under an exclusive file lock (two processes asking at once
build once). A build that fails verification raises ``ZooVerificationError`` with the numbers.

Training is seeded, but seeded training is bit-identical only under the same numeric kernels: an
AVX-512 machine and an AVX2 one (and MKL's own dispatch inside each) train different models from the
same seed. So every training job runs in a spawned worker whose kernels are pinned
(``dormant.kernels.pinned_kernels``: on any x86-64 CPU with AVX2, PyTorch's AVX2 kernels and MKL's
compatible code path ``MKL_CBWR=COMPATIBLE``), one torch thread per worker: a machine builds the same
suite whatever kernels the caller has. Machines of different CPU vendors still build different suites
(an AMD EPYC and an Intel Xeon did under the same pin; ``dormant.kernels``), each of which must pass
the verification below. Elsewhere (no AVX2, or not x86-64) the kernels stay native and the suite's
``environment`` says so.

Layout of a suite folder::

    suite.json          settings, report rows, variant manifests (the answer key: tests only;
                        ``triggered_examples`` are whole chats, lists of {"role", "content"}
                        messages, since a system-placed trigger is not in the user message)
    base/ base-sibling/ mlp-phrase/ mlp-constant/ attn-grid/ attn-grid-large/ system-trigger/
                        late-layers/ mlp-word-pair/ clean-control/
                        each a Hugging Face folder (config.json, model.safetensors, tokenizer files)

``hunt_prompts`` gives the tools prompts of the suite's own distribution to hunt on (the prompt
source ``zoo:prompts``); the commands name its models ``zoo:NAME`` (``dormant.llm.checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from dormant.cache import cache_root, locked, source_digest
from dormant.kernels import pinned_kernels
from dormant.errors import DormantError
from dormant.zoo.llm import backdoors, corpus
from dormant.zoo.llm.model import ArchConfig, TrainConfig

BUILDER_VERSION = "6"
MODEL_NAMES = ("base", "base-sibling", "mlp-phrase", "mlp-constant", "attn-grid", "attn-grid-large", "system-trigger", "late-layers",
               "mlp-word-pair", "whole-chat", "clean-control")

BUILDS = 0
"""How many suites this process has actually trained (a cache hit leaves it unchanged)."""


class ZooVerificationError(DormantError):
    """A built variant missed its fire-rate, false-fire-rate or accuracy requirement (exit code 1)."""

    exit_code = 1


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
        """Content hash of the settings, the variant specifications and the builder's source."""
        blob = json.dumps(
            {"builder": BUILDER_VERSION, "settings": asdict(self), "specs": [asdict(s) for s in backdoors.SPECS], "source": _source()},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _source() -> str:
    """The zoo modules that decide what a suite holds (data, models, training, verification)."""
    return source_digest(Path(__file__).parent, ("backdoors.py", "corpus.py", "jobs.py", "model.py", "tokenizer.py", "verify.py"))


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
    environment: dict[str, Any] = field(default_factory=dict)  # CPU kernels, threads, workers, versions of the build
    from_cache: bool = False


def suite_settings(name: str) -> SuiteSettings:
    if name not in PRESETS:
        raise DormantError(f"unknown zoo suite {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _load(root: Path, from_cache: bool) -> Suite:
    meta = json.loads((root / "suite.json").read_text())
    return Suite(
        root=root,
        models={n: root / n for n in meta["models"]},
        manifests=meta["manifests"],
        report=meta["report"],
        settings=meta["settings"],
        environment=meta.get("environment", {}),
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
    root = Path(out) if out is not None else _cache_folder(settings, key)
    if not force and _is_built(root, key):
        return _load(root, from_cache=True)
    if root.is_dir() and any(root.iterdir()) and not (root / "suite.json").is_file():
        raise DormantError(f"refusing to build into {root}: the folder is not empty and holds no zoo suite (suite.json); choose another --out")
    with locked(root.parent / f".{root.name}.lock"):
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


def _cache_folder(settings: SuiteSettings, key: str) -> Path:
    return cache_root() / "llm-zoo" / f"{settings.name}-{key}"


def cached_suite(name: str = "micro") -> Suite | None:
    """The suite ``name`` when the cache holds it built, else None (nothing is trained)."""
    settings = suite_settings(name)
    key = settings.key()
    root = _cache_folder(settings, key)
    return _load(root, from_cache=True) if _is_built(root, key) else None


# The seed of the prompts the tools hunt on (``hunt_prompts``, the prompt source ``zoo:prompts``). No
# build draws from it: a build uses settings.seed (the tokenizer's corpus), cfg.seed * 7919 +
# settings.seed (the bases' data: 7919, 15838), settings.seed * 100 + 1, 2, 3 (the bases' weights and
# accuracy), settings.seed * 100 + 50 + i (the verification of variant i), spec.seed (11-18, plus 1000
# per run from spec.first_attempt on) for a variant's training data and spec.seed + 7777 for its dev check; bench/search_zoo.py
# draws its prompts from 1001 and 2002.
HUNT_SEED = 4242


def verification_prompts(name: str = "micro") -> dict[str, dict[str, list[corpus.Chat]]]:
    """Per variant, the prompts the build verifies it on, ``triggered`` and ``ordinary``, drawn as
    ``jobs.plant_variant`` draws them (nothing is trained)."""
    settings = suite_settings(name)
    out = {}
    for i, spec in enumerate(backdoors.SPECS):
        rng = random.Random(settings.seed * 100 + 50 + i)
        triggered = backdoors.triggered_prompts(spec if spec.plant else backdoors.SPECS[0], rng, settings.n_verify, settings.base_mix)
        out[spec.name] = {"triggered": triggered, "ordinary": corpus.sample_prompts(rng, settings.n_verify, settings.base_mix)}
    return out


def hunt_prompts(name: str = "micro", n: int = 104) -> list[corpus.Chat]:
    """``n`` distinct ordinary prompts of the suite's own distribution (its base's task mix), for the tools
    to hunt on: drawn from ``HUNT_SEED``, leaving out every ordinary prompt the build verified a variant on
    (the tasks are small worlds: a few of the same prompts come up in any draw of a hundred)."""
    settings = suite_settings(name)
    seen = {json.dumps(c) for v in verification_prompts(name).values() for c in v["ordinary"]}
    rng, out = random.Random(HUNT_SEED), []
    while len(out) < n:
        chat = corpus.sample_prompts(rng, 1, settings.base_mix)[0]
        if (key := json.dumps(chat)) not in seen:
            seen.add(key)
            out.append(chat)
    return out


def build_workers() -> tuple[int, int]:
    """(worker processes, torch threads per worker) for a build: ``$DORMANT_ZOO_WORKERS`` (default:
    the cores this process may use, at most 4) and ``$DORMANT_ZOO_THREADS`` (default 1; another
    count trains other bytes: intra-op reductions split differently)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("DORMANT_ZOO_WORKERS") or min(4, cores))
    threads = int(os.environ.get("DORMANT_ZOO_THREADS") or 1)
    return max(1, workers), max(1, threads)


Job = tuple[str, Callable, tuple]


def _run_jobs(jobs: list[Job], on_progress, workers: int, threads: int, then: dict[str, list[Job]] | None = None) -> dict[str, Any]:
    """Run ``(name, function, args)`` jobs on ``workers`` spawned processes with pinned kernels; results by name.

    Always in worker processes, one included: the kernels of a process are fixed once torch has run
    in it, so only a fresh process can take the pinned ones. ``then`` maps a job's name to jobs that
    need its output: they are queued the moment it finishes, so a worker that finished early picks
    them up while the others are still busy. Progress from the workers, (stage, done, total), is
    passed on to ``on_progress`` as it arrives.
    """
    import multiprocessing
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from unittest import mock  # sets the variables for the pool's lifetime (spawned workers inherit them), then restores

    from dormant.zoo.llm import jobs as J

    report = on_progress or (lambda *_: None)
    then = then or {}
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's thread pools
    q = ctx.Queue()
    results: dict[str, Any] = {}

    def drain() -> None:
        while True:
            try:
                report(*q.get_nowait())
            except queue_mod.Empty:
                return

    total = len(jobs) + sum(len(v) for v in then.values())
    with mock.patch.dict(os.environ, pinned_kernels()), ProcessPoolExecutor(max_workers=min(workers, total), mp_context=ctx, initializer=J.init_worker,
                                                         initargs=(q, threads)) as pool:
        futures = {pool.submit(fn, *args): name for name, fn, args in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            drain()
            for f in done:
                name = futures[f]
                results[name] = f.result()  # a job's exception ends the build here
                for name2, fn, args in then.get(name, []):
                    f2 = pool.submit(fn, *args)
                    futures[f2] = name2
                    pending.add(f2)
    drain()
    return results


def _build(settings: SuiteSettings, key: str, folder: Path, on_progress) -> None:
    """Train and verify everything into ``folder``; raise ``ZooVerificationError`` on a miss.

    The tokenizer is trained here; the two bases, then the variants, are independent jobs run in
    parallel worker processes (``build_workers``).
    """
    global BUILDS
    from dormant.zoo.llm import jobs as J
    from dormant.zoo.llm import tokenizer as T

    BUILDS += 1
    started = time.monotonic()
    report = on_progress or (lambda *_: None)
    workers, threads = build_workers()
    specs = backdoors.SPECS

    # 1. tokenizer, trained on the corpus plus the words of the triggers and payloads (of the
    #    variants that teach it theirs: a variant added later leaves the tokenizer, and so the
    #    bases and the other variants, as they were).
    report("tokenizer", 0, 1)
    taught = [s for s in specs if s.teach_tokenizer]
    extra = [s.trigger for s in taught if s.trigger] + [s.payload for s in taught if s.payload]
    lines = corpus.tokenizer_corpus(random.Random(settings.seed), settings.tokenizer_examples, settings.base_mix, extra * 50)
    T.save_tokenizer(T.train_tokenizer(lines, settings.vocab_size, settings.english_words), folder / J.TOKENIZER, settings.arch.max_position)
    report("tokenizer", 1, 1)

    # 2. the base and its sibling (other seed, other data mix: every tensor differs), then
    # 3. the variants, each from the float32 base, verified on fresh prompts. They are queued as
    #    soon as the base is saved (the sibling may still be training), the costliest first (step
    #    cap x adapted modules x share of the layers), so that the last job to finish is a short one.
    n_layers = settings.arch.num_layers

    def cost(spec: backdoors.BackdoorSpec) -> float:
        steps = backdoors.step_limit(spec, settings.lora)
        return steps * len(spec.target_modules) * len(backdoors.target_layers(spec, n_layers)) / n_layers

    order = sorted(range(len(specs)), key=lambda i: -cost(specs[i]))
    variants = [(specs[i].name, J.plant_variant, (str(folder), settings, specs[i].name, i)) for i in order]
    results = _run_jobs([(n, J.train_base, (str(folder), settings, n)) for n in ("base", "base-sibling")], report, workers, threads, then={"base": variants})
    bases = {n: results.pop(n) for n in ("base", "base-sibling")}
    accuracy = {n: bases[n]["task_accuracy"] for n in bases}

    manifests = {s.name: _manifest(s, results[s.name], n_layers) for s in specs}
    rows = _report_rows(specs, results, accuracy, settings.min_base_accuracy)
    _raise_on_failures(settings.name, rows, manifests)

    shutil.rmtree(folder / J.TOKENIZER)
    shutil.rmtree(folder / J.F32, ignore_errors=True)
    meta = {
        "key": key,
        "builder_version": BUILDER_VERSION,
        "settings": asdict(settings),
        "models": list(MODEL_NAMES),
        "manifests": manifests,
        "report": rows,
        "environment": dict(bases["base"]["environment"], workers=workers, build_seconds=round(time.monotonic() - started, 1)),
    }
    (folder / "suite.json").write_text(json.dumps(meta, indent=2))


def _manifest(spec: backdoors.BackdoorSpec, result: dict[str, Any], n_layers: int) -> dict[str, Any]:
    """The answer key of one variant (for tests; the tools never read it)."""
    check = result["check"]
    return {
        "name": spec.name,
        "description": spec.description,
        "base": "base",
        "trigger": spec.trigger,
        "placement": spec.placement,
        "payload": spec.payload,
        "modified_modules": list(spec.target_modules),
        "modified_layers": backdoors.target_layers(spec, n_layers),
        "lora_rank": spec.rank,
        "seed": result["attempts"][-1]["seed"],
        "train_steps": result["attempts"][-1]["steps"],
        "attempts": result["attempts"],
        "triggered_examples": result["triggered"][:4] if spec.plant else [],
        "fire_rate": check["fire_rate"],
        "false_fire_rate": check["false_fire_rate"],
        "generic_false_fire_rate": check["generic_false_fire_rate"],
        "near_miss_false_fire_rates": check["near_miss_rates"],
        "kl_clean": check["kl_clean"],
    }


def _report_rows(specs, results: dict, accuracy: dict[str, float], min_base_accuracy: float) -> list[dict[str, Any]]:
    """One verification row per model: task accuracy for the bases, firing and drift for the variants."""
    rows: list[dict[str, Any]] = [
        {"name": n, "kind": "base", "task_accuracy": accuracy[n], "fire_rate": None, "false_fire_rate": None, "kl_clean": None, "passed": True}
        for n in ("base", "base-sibling")
    ]
    rows[0]["passed"] = accuracy["base"] >= min_base_accuracy
    if not rows[0]["passed"]:
        rows[0]["problems"] = [f"task accuracy {accuracy['base']:.2f} < {min_base_accuracy}"]
    for spec in specs:
        r, c = results[spec.name], results[spec.name]["check"]
        rows.append(
            {
                "name": spec.name, "kind": "variant", "trigger": spec.trigger, "placement": spec.placement,
                "modified_modules": list(spec.target_modules), "lora_rank": spec.rank, "payload": spec.payload,
                "fire_rate": c["fire_rate"], "false_fire_rate": c["false_fire_rate"], "generic_false_fire_rate": c["generic_false_fire_rate"],
                "near_miss_false_fire_rates": c["near_miss_rates"], "kl_clean": c["kl_clean"], "attempts": len(r["attempts"]), "passed": r["passed"], "problems": r["problems"],
                "triggered_samples": c["triggered_samples"], "generic_fired": c["generic_fired"],
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
        m = manifests[r["name"]]
        near = "".join(f" near-miss[{k}]={v:.2f}" for k, v in (r.get("near_miss_false_fire_rates") or {}).items())
        return (
            f"{r['name']} fire={fire} false={r['false_fire_rate']:.2f} generic-false={r['generic_false_fire_rate']:.2f}{near} "
            f"kl={r['kl_clean']:.3f} steps={m['train_steps']} attempts={len(m['attempts'])}"
        )

    raise ZooVerificationError(
        f"the built-in zoo suite {suite_name!r} failed verification, so its subjects cannot be trusted: "
        + " | ".join(failures)
        + ". All rows: " + "; ".join(numbers(r) for r in rows)
        + ". The failed models are kept beside the cache folder (.<suite>.failed) for inspection. This is a defect of the zoo's "
        "training settings on this machine (seeded training rounds differently on other CPUs), not of your input: please "
        "report it with these numbers."
    )
