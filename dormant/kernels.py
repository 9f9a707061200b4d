"""The numeric kernels a process computes with, pinned so that a machine computes the same bytes whatever
kernels its caller chose.

Seeded training and inference are bit-identical only under the same kernels. PyTorch picks its
vectorised kernels by the CPU's instruction set (``ATEN_CPU_CAPABILITY``: default, avx2, avx512),
and MKL picks its code path by the CPU (``MKL_CBWR``: on Intel CPUs ``AVX2`` pins its AVX2 path; on
other x86-64 CPUs MKL honours only ``AUTO`` and ``COMPATIBLE``, per Intel's documentation of
conditional numerical reproducibility). The pin is PyTorch's AVX2 kernels and MKL's ``COMPATIBLE``
path. It is not the same computation on every machine: an AMD EPYC and an Intel Xeon (Sapphire
Rapids) trained the zoo's kernel probe to different bytes under it (``4b923a59154c17fe`` and
``f62088e81273348a``, torch 2.13.0), and no setting of ``MKL_CBWR``, ``MKL_ENABLE_INSTRUCTIONS`` or
``ATEN_CPU_CAPABILITY`` on the Intel machine reproduced the AMD bytes (MKL's matrix products are the
only MKL calls in training). What depends on the bytes (the zoo's models, a search's path on them)
is therefore the same within a machine, not across vendors.

This module imports no torch: the settings must be in the environment before torch loads.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def pinned_kernels() -> dict[str, str]:
    """The environment that pins a process's numeric kernels (empty: none to pin here).

    x86-64 with AVX2 (or better): PyTorch's AVX2 kernels and MKL's compatible path. x86-64 without AVX2:
    the scalar kernels and MKL's compatible path.
    Other machines (aarch64: no MKL): nothing; they compute with their own kernels."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    return {"ATEN_CPU_CAPABILITY": "avx2" if has_avx2() else "default", "MKL_CBWR": "COMPATIBLE"}


def has_avx2() -> bool:
    """Whether the CPU itself has AVX2 and FMA (what PyTorch's AVX2 kernels need), whatever
    ``ATEN_CPU_CAPABILITY`` this process runs with: from /proc/cpuinfo where there is one."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
        return "avx2" in flags and "fma" in flags
    except OSError:
        import torch

        return torch.backends.cpu.get_cpu_capability().upper().startswith(("AVX2", "AVX512"))


def pin_this_process() -> dict[str, str]:
    """Put the pinned kernels into this process's environment where it sets none of its own (a kernel
    set given explicitly, e.g. ``ATEN_CPU_CAPABILITY=default``, is kept); call it before torch is
    imported. Returns what the process now runs with."""
    for k, v in pinned_kernels().items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR") if k in os.environ}


def kernels_in_use() -> dict[str, str]:
    """What this process computes with, for the record beside a result (a run's ledger entry): the
    machine, Python, and, where torch is loaded already (it is not imported here), its version and the
    kernel set it chose, with MKL's path as the environment sets it."""
    import sys

    env = {"machine": platform.machine(), "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "backends"):
        env["torch"] = str(torch.__version__)
        try:
            env["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        except Exception:  # noqa: BLE001 - an old or partial torch: the version is still recorded
            pass
        env["MKL_CBWR"] = os.environ.get("MKL_CBWR", "(not set: MKL picks its path by the CPU)")
    return env


if __name__ == "__main__":  # the pins this environment lacks, as NAME=VALUE words (for ``env`` in the Makefile)
    print(" ".join(f"{k}={v}" for k, v in pinned_kernels().items() if k not in os.environ))
