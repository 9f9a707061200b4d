"""Suite caching without training: the builder is replaced by a stub that writes a minimal suite."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from dormant.errors import DormantError
from dormant.zoo.llm import PRESETS, ZooVerificationError, build_suite
from dormant.zoo.llm import suite as suite_mod


@pytest.fixture
def stub_builder(monkeypatch):
    calls = []

    def fake_build(settings, key, folder, on_progress):
        calls.append(folder)
        for name in suite_mod.MODEL_NAMES:
            (folder / name).mkdir()
        meta = {"key": key, "settings": {"name": settings.name}, "models": list(suite_mod.MODEL_NAMES), "manifests": {}, "report": []}
        (folder / "suite.json").write_text(json.dumps(meta))

    monkeypatch.setattr(suite_mod, "_build", fake_build)
    return calls


def test_built_once_then_served_from_cache(tmp_path, monkeypatch, stub_builder):
    monkeypatch.setenv("DORMANT_CACHE", str(tmp_path))
    first = build_suite("micro")
    second = build_suite("micro")
    assert len(stub_builder) == 1
    assert not first.from_cache and second.from_cache
    assert first.root == second.root and first.root.parent == tmp_path / "llm-zoo"
    assert first.root.name.endswith(PRESETS["micro"].key())
    assert set(second.models) == set(suite_mod.MODEL_NAMES)


def test_force_rebuilds_and_out_folder_is_used(tmp_path, stub_builder):
    out = tmp_path / "zoo"
    build_suite("micro", out=out)
    again = build_suite("micro", out=out, force=True)
    assert len(stub_builder) == 2 and again.root == out and not again.from_cache
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_leftovers_of_a_killed_build_are_cleared(tmp_path, stub_builder):
    out = tmp_path / "zoo"
    stale = tmp_path / ".zoo.building-dead"
    (stale / "base").mkdir(parents=True)
    suite = build_suite("micro", out=out)
    assert not stale.exists() and (suite.root / "suite.json").is_file()


def test_concurrent_callers_build_once(tmp_path, stub_builder):
    out = tmp_path / "zoo"
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_suite("micro", out=out))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stub_builder) == 1 and len(results) == 3
    assert sum(not r.from_cache for r in results) == 1


def test_failed_build_leaves_no_suite(tmp_path, monkeypatch):
    def failing(settings, key, folder, on_progress):
        (folder / "base").mkdir()
        raise ZooVerificationError("attn-grid: fire rate 0.50 < 0.9")

    monkeypatch.setattr(suite_mod, "_build", failing)
    out = tmp_path / "zoo"
    with pytest.raises(ZooVerificationError, match="fire rate"):
        build_suite("micro", out=out)
    assert not out.exists()
    assert (tmp_path / ".zoo.failed" / "base").is_dir()  # kept aside for inspection only
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_settings_change_changes_the_cache_key():
    micro = PRESETS["micro"]
    assert micro.key() != PRESETS["standard"].key()
    assert micro.key() != replace(micro, seed=1).key()
    assert micro.key() == replace(micro).key()


def test_unknown_suite_is_a_clear_error():
    with pytest.raises(DormantError, match="unknown zoo suite 'huge'"):
        build_suite("huge")


def test_standard_preset_builds_a_valid_model():
    from dormant.zoo.llm.model import new_model

    std = PRESETS["standard"]
    arch = std.arch
    assert arch.hidden_size % arch.num_heads == 0 and arch.num_heads % arch.num_kv_heads == 0
    assert arch.hidden_size > 16 and std.lora.steps > 0
    model = new_model(arch, std.vocab_size, pad_id=0, eos_ids=[2], seed=0)
    assert model.config.num_hidden_layers == arch.num_layers
    assert model.get_input_embeddings().weight.shape[0] > std.vocab_size


def test_refuses_to_replace_a_foreign_folder(tmp_path, stub_builder):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DormantError, match="not empty"):
        build_suite("micro", out=out, force=True)
    assert (out / "notes.txt").read_text() == "keep me" and not stub_builder
