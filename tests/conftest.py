"""Test-wide settings: never reach a model hub, keep the ledger inside the test's tmp folder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
