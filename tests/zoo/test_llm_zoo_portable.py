"""The micro zoo builds, and passes its own verification, on CPU kernels other than the ones the
session's suite was built with.

Seeded training is not bit-identical across instruction sets or thread counts, so a zoo that only
passed where it was first built fails on a new machine. The session's suite (``zoo_micro``) is built
with this machine's best kernels and one torch thread per worker; this test builds the same suite
again with another kernel set (``ATEN_CPU_CAPABILITY``: AVX2 on an AVX-512 machine, else the scalar
``default`` kernels), in a fresh process through the command line, and requires every row to
pass. The second build is cached beside the first (same settings, its own folder), so it is paid
for once per cache. (The scalar kernels train several times slower: on an
AVX-512 machine AVX2 keeps the check inside the CI budget. Two torch threads per worker on two
cores oversubscribe them and made the build several times slower, so thread counts are covered by
``bench/zoo_portability.py``, which builds the whole matrix, scalar kernels and 2 threads included.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dormant.zoo.llm import PRESETS, cache_root


def test_micro_suite_builds_under_other_kernels(zoo_micro):
    first = zoo_micro.environment
    assert first["torch_threads"] == 1
    if first["cpu_capability"] == "DEFAULT":
        pytest.skip("this machine's best kernels are the scalar ones: no other kernel set to build with")
    isa = "avx2" if first["cpu_capability"].startswith("AVX512") else "default"
    out = cache_root() / "llm-zoo-portability" / f"micro-{PRESETS['micro'].key()}-{isa}"
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa)
    proc = subprocess.run(
        [sys.executable, "-m", "dormant", "zoo", "build", "--suite", "micro", "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "suite.json").read_text())
    second = meta["environment"]
    assert second["cpu_capability"] == isa.upper() != first["cpu_capability"]
    failed = [r for r in meta["report"] if not r["passed"]]
    assert not failed, failed
    for row in meta["report"]:
        if row["kind"] == "variant" and row["payload"]:
            assert row["fire_rate"] >= 0.9 and row["false_fire_rate"] <= 0.05 and row["generic_false_fire_rate"] <= 0.05, row
            assert all(r <= 0.05 for r in row["near_miss_false_fire_rates"].values()), row  # each lone word of mlp-word-pair
