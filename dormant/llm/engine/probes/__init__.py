"""Built-in, versioned probe sets: diverse prompts to watch a model's behaviour on.

``probes_v1.jsonl`` holds 104 prompts in seven categories (task, chat, code, math, knowledge,
creative, other languages). A probe set never changes once published; a new set gets a new
version, so results recorded in the ledger stay reproducible.

    from dormant.llm.engine.probes import load_probes
    prompts = load_probes()            # latest version
    prompts = load_probes("v1", categories=["math", "code"], limit=20)

``resolve_prompts`` reads a prompt source as the commands take it: a file, a built-in set, or
``zoo:prompts``, the micro zoo's own prompt distribution (its tiny models answer nothing else well).
"""

from __future__ import annotations

from pathlib import Path

from dormant.errors import DormantError
from dormant.llm.engine.prompts import Prompt, load_prompt_file

_HERE = Path(__file__).parent
LATEST = "v1"
ZOO = "zoo:prompts"


def available() -> list[str]:
    """Versions of the built-in probe sets (``["v1", ...]``)."""
    return sorted(p.stem.removeprefix("probes_") for p in _HERE.glob("probes_*.jsonl"))


def load_probes(version: str = LATEST, *, categories: list[str] | None = None, limit: int | None = None) -> list[Prompt]:
    """The built-in probes of ``version``, optionally only some categories, spread over them when limited.

    ``limit`` takes prompts round-robin across categories so that a small set stays diverse.
    """
    path = _HERE / f"probes_{version}.jsonl"
    if not path.is_file():
        raise DormantError(f"no built-in probe set {version!r}; available: {', '.join(available())}")
    prompts = load_prompt_file(path)
    if categories:
        prompts = [p for p in prompts if p.tag in set(categories)]
        if not prompts:
            raise DormantError(f"probe set {version!r} has no prompts in categories {categories}")
    if limit is not None and limit < len(prompts):
        by_cat: dict[str, list[Prompt]] = {}
        for p in prompts:
            by_cat.setdefault(p.tag, []).append(p)
        queues = list(by_cat.values())
        out: list[Prompt] = []
        i = 0
        while len(out) < limit:
            q = queues[i % len(queues)]
            k = i // len(queues)
            if k < len(q):
                out.append(q[k])
            i += 1
        prompts = out
    return prompts


def zoo_prompts() -> list[Prompt]:
    """``zoo:prompts``: 104 distinct ordinary prompts of the micro zoo's own distribution, always the same
    (drawn from a seed of their own, none a prompt the zoo's build verified on: ``zoo.llm.suite.hunt_prompts``)."""
    from dormant.zoo.llm.suite import hunt_prompts

    return [Prompt(chat, tag="zoo") for chat in hunt_prompts("micro")]


def resolve_prompts(source: str | Path | None, *, limit: int | None = None) -> list[Prompt]:
    """A prompt source from the command line: a file path, ``builtin:v1`` / ``v1``, ``zoo:prompts``, or
    None for the latest built-in set (``limit`` spreads a built-in set over its categories; otherwise the first)."""
    if source is None:
        return load_probes(limit=limit)
    s = str(source)
    version = s.removeprefix("builtin:")
    if s.startswith("builtin:") or (version in available() and not Path(s).exists()):
        return load_probes(version, limit=limit)
    if s.startswith("zoo:") and not Path(s).exists():
        if s != ZOO:
            raise DormantError(f"unknown prompt source {s!r}: the zoo's is {ZOO}")
        prompts = zoo_prompts()
    else:
        prompts = load_prompt_file(s)
    return prompts[:limit] if limit is not None else prompts
