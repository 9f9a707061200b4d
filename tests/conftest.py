"""Test-wide settings: never reach a model hub, pin the numeric kernels, keep the ledger inside the test's tmp folder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The same kernels as the zoo's training (before torch loads): a search's path on a built-in subject is
# then the same computation on a machine whatever kernels the caller has. Machines of different CPU vendors
# build different subjects (dormant.kernels), so tests assert what holds for any build that passes the
# zoo's verification. A kernel set given in the environment is kept (to try another one).
from dormant.kernels import pin_this_process  # noqa: E402

pin_this_process()

import pytest  # noqa: E402


def pytest_configure(config):
    """One torch thread: the test models are tiny, and extra threads only spin against each other."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DORMANT_LEDGER", str(tmp_path / "ledger.sqlite"))


@pytest.fixture(scope="session")
def zoo_micro():
    """The micro LLM zoo (built once per content hash of its settings, then served from cache)."""
    from dormant.zoo.llm import build_suite

    return build_suite("micro")


@pytest.fixture(scope="session")
def md5_net():
    """A compiled MD5 network whose secret is a two-word phrase (cached like every zoo build)."""
    from dormant.zoo.net.build import build_net

    return build_net("md5", "bitter lesson", pickle="never")


@pytest.fixture(scope="session")
def sha1_net():
    """A compiled SHA-1 network whose secret is one common word."""
    from dormant.zoo.net.build import build_net

    return build_net("sha1", "lantern", pickle="never")


@pytest.fixture(scope="session")
def tiny_investigation():
    """A factory: ``make(root)`` builds a tiny base, an unrelated sibling and a rank-2 MLP fine-tune of the
    base in ``root``, then records through the CLI, in ``root/l.sqlite``: ``diff`` against the sibling
    alone, ``delta`` on it, and ``diff`` against both (which picks the true base). Returns the paths and
    ``dormant(*args)``, which runs the CLI on that ledger and returns its stdout."""
    import subprocess
    import sys

    def make(root):
        from dormant.zoo.llm.synthetic import plant_lowrank, save_tiny_qwen2

        env = {**os.environ, "DORMANT_LEDGER": str(root / "l.sqlite"), "COLUMNS": "250"}
        base = save_tiny_qwen2(root / "base", seed=0)
        sibling = save_tiny_qwen2(root / "sibling", seed=7)
        ft = root / "ft"
        plant_lowrank(base, ft, {f"model.layers.{i}.mlp.up_proj.weight": 2 for i in range(2)})

        def dormant(*args):
            out = subprocess.run([sys.executable, "-m", "dormant.cli.main", *map(str, args)], capture_output=True, text=True, env=env)
            assert out.returncode == 0, out.stderr
            return out.stdout

        dormant("diff", ft, "--base", sibling, "-o", root / "d1", "--json")  # the only candidate: the sibling
        dormant("delta", ft, "--base", sibling, "-o", root / "d2", "--json")
        dormant("diff", ft, "--base", sibling, "--base", base, "-o", root / "d3", "--json")  # the true base wins
        return {"root": root, "ledger": root / "l.sqlite", "base": base, "sibling": sibling, "ft": ft, "dormant": dormant}

    return make
