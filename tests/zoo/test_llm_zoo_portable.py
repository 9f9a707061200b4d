"""The micro zoo is the same on a machine whatever kernels the caller has: its training runs with pinned kernels.

Seeded training is bit-identical only under the same kernels. Built with each machine's best kernels,
an AVX-512 machine and an AVX2 one trained different subjects from the same seeds. The builder therefore
trains in spawned workers with PyTorch's AVX2 kernels and MKL's compatible path on any x86-64 CPU with AVX2
(``dormant.kernels.pinned_kernels``). That does not make machines of different CPU vendors build the same
subjects (an AMD EPYC and an Intel Xeon did not: ``dormant.kernels``), so no test compares the bytes with a
digest recorded elsewhere; the tests of the subjects assert what holds for any build that passes the zoo's
verification.

These tests emulate other machines from this one: a parent process limited to the scalar kernels
(``ATEN_CPU_CAPABILITY=default``) or to MKL's AVX2 path (``MKL_ENABLE_INSTRUCTIONS=AVX2``, what an
AVX2-only CPU gets) must train the same bytes through the builder, while the same short run with the
process's own kernels differs between them (so the probe would see a difference if the pin failed).
``bench/zoo_portability.py`` builds the whole suite under several kernel sets and compares every model.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dormant.kernels import pinned_kernels

PINNED = "from dormant.zoo.llm.suite import _run_jobs\nfrom dormant.zoo.llm import jobs as J\n" \
         "if __name__ == '__main__':\n    print(_run_jobs([('p', J.kernel_probe, (20,))], None, 1, 1)['p'])\n"
NATIVE = "import torch\ntorch.set_num_threads(1)\nfrom dormant.zoo.llm import jobs as J\nprint(J.kernel_probe(20))\n"


def _probe(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def pin():
    pin = pinned_kernels()
    if not pin:
        pytest.skip("no kernels to pin on this machine (not x86-64): its zoo trains with its own kernels")
    return pin


def test_builder_trains_the_same_bytes_whatever_kernels_the_parent_has(pin, zoo_micro):
    here = zoo_micro.environment["kernel_probe"]  # what the builder's workers trained with in this process's environment
    assert _probe(PINNED, ATEN_CPU_CAPABILITY="default") == here
    assert _probe(PINNED, MKL_ENABLE_INSTRUCTIONS="AVX2") == here
    # the same run in this process's environment with the pinned kernels gives the pinned bytes (so the session's
    # suite was trained on the pinned kernels)...
    assert _probe(NATIVE, ATEN_CPU_CAPABILITY=pin["ATEN_CPU_CAPABILITY"], MKL_CBWR=pin["MKL_CBWR"]) == here
    # ...and with the scalar kernels other bytes, so the probe can tell kernels apart (where the pin is not the scalar set)
    if pin["ATEN_CPU_CAPABILITY"] != "default":
        assert _probe(NATIVE, ATEN_CPU_CAPABILITY="default") != here


def test_the_session_suite_was_trained_on_the_pinned_kernels(zoo_micro, pin):
    env = zoo_micro.environment
    assert env["torch_threads"] == 1
    assert env["cpu_capability"] == pin["ATEN_CPU_CAPABILITY"].upper() and env["mkl_cbwr"] == pin["MKL_CBWR"]
    # its kernel probe is the pinned kernels' own: the test above compares it with a run under them
