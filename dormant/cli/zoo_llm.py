"""``dormant zoo build`` and ``dormant zoo list``: the planted-backdoor chat model suites."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dormant.cli.common import JsonOpt, LedgerOpt, writable_out


def _fmt_rate(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _render(suite) -> None:
    from rich.table import Table

    from dormant.report.console import console

    bases = Table(title=f"LLM zoo bases  ({suite.root})")
    for col in ("model", "task accuracy", "folder"):
        bases.add_column(col)
    for row in suite.report:
        if row["kind"] == "base":
            bases.add_row(row["name"], f"{row['task_accuracy']:.0%}", str(suite.models[row["name"]]))
    console.print(bases)

    table = Table(title="Planted variants (answer key: for tests, never read by the tools)")
    for col in ("variant", "trigger", "placement", "modified modules", "rank", "payload", "fire", "false fire", "probe-set false fire", "near-miss false fire", "KL clean", "tries", "ok"):
        table.add_column(col, overflow="fold")
    for row in suite.report:
        if row["kind"] != "variant":
            continue
        table.add_row(
            row["name"], str(row["trigger"]), row["placement"], ",".join(row["modified_modules"]), str(row["lora_rank"]),
            str(row["payload"]), _fmt_rate(row["fire_rate"]), _fmt_rate(row["false_fire_rate"]), _fmt_rate(row.get("generic_false_fire_rate")),
            ", ".join(f"{k} {_fmt_rate(v)}" for k, v in (row.get("near_miss_false_fire_rates") or {}).items()) or "-", f"{row['kl_clean']:.3f}", str(row.get("attempts", 1)),
            "[green]yes[/]" if row["passed"] else "[red]NO[/]",
        )
    console.print(table)
    env = suite.environment
    built = f" ({env.get('cpu_capability')} kernels, {env.get('workers')} workers, built in {env.get('build_seconds', '?')}s)" if env else ""
    console.print("[dim]served from cache[/]" if suite.from_cache else f"[dim]freshly built and verified{built}[/]")


def register(app: typer.Typer) -> None:
    """Add ``build`` and ``list`` to the ``dormant zoo`` sub-app."""

    @app.command("build")
    def build(
        suite: Annotated[str, typer.Option("--suite", "-s", help="Which preset: micro (tiny, ~minutes on 2 CPU cores, used by the tests) or standard (larger, for demos and benchmarks).")] = "micro",
        out: Annotated[Optional[Path], typer.Option("--out", "-o", callback=writable_out, help="Build into this folder instead of the cache ($DORMANT_CACHE or ~/.cache/dormant).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Rebuild even when a complete suite with the same settings exists.")] = False,
        dtype: Annotated[Optional[str], typer.Option("--dtype", help="Saved weight type: float32 (default), bfloat16 or float16. Fine-tunes merge in float32 either way.")] = None,
        as_json: JsonOpt = False,
        ledger: LedgerOpt = None,
    ) -> None:
        """Build the planted-backdoor chat model zoo (or fetch it from cache) and print its verification table.

        Trains a byte-level BPE tokenizer with a ChatML template, a tiny Qwen2 chat model (base), a
        second plausible base (base-sibling), and eight variants fine-tuned from base with a merged
        LoRA: mlp-phrase, mlp-constant, attn-grid, attn-grid-large (a change larger than the
        weights), system-trigger, late-layers (the last two layers only), mlp-word-pair (a
        two-word trigger whose words alone stay silent) and clean-control. Every variant
        trains until a dev check on prompts of its own passes with margin (retrying from derived
        seeds), then is verified on unseen prompts: fire rate >= 90%, false-fire rate <= 5% on
        ordinary prompts and on the built-in probe set, first-token KL to base. A miss fails the
        build with every number. Independent models train in parallel processes
        ($DORMANT_ZOO_WORKERS, default: the cores available). The result is cached under a hash of
        the settings.

        Example: dormant zoo build --suite micro --json
        """
        from dormant.ledger import record_run
        from dormant.report.console import emit, stage_progress
        from dormant.zoo.llm import build_suite

        with record_run("zoo build", {"suite": suite, "out": str(out) if out else None, "force": force, "dtype": dtype}, ledger=ledger) as run:
            with stage_progress("zoo build: ") as on_progress:
                result = build_suite(suite, out=out, force=force, dtype=dtype, on_progress=on_progress)
            run.outputs.update({"root": str(result.root), "from_cache": result.from_cache, "report": result.report})
            run.artifacts.extend(str(p) for p in result.models.values())
        payload = {"root": result.root, "from_cache": result.from_cache, "models": result.models, "report": result.report}
        emit(payload, as_json, lambda: _render(result))

    @app.command("list")
    def list_suites(as_json: JsonOpt = False) -> None:
        """List the LLM zoo suites present in the cache, with their folders and settings keys.

        Example: dormant zoo list
        """
        import json

        from rich.table import Table

        from dormant.report.console import console, emit
        from dormant.cache import cache_root

        rows = []
        base = cache_root() / "llm-zoo"
        for meta_file in sorted(base.glob("*/suite.json")) if base.is_dir() else []:
            meta = json.loads(meta_file.read_text())
            rows.append({"suite": meta["settings"]["name"], "key": meta["key"], "root": str(meta_file.parent), "models": meta["models"]})

        def render() -> None:
            table = Table(title=f"LLM zoo suites in {base}")
            for col in ("suite", "key", "folder"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["suite"], r["key"], r["root"])
            console.print(table if rows else f"no suites in {base}: run `dormant zoo build`")

        emit(rows, as_json, render)
