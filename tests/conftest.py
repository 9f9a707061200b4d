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
