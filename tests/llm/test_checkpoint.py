"""Streaming checkpoint reader: sharded folders, FP8 block scales, truncation and corruption."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from dormant.errors import CheckpointError
from dormant.llm.checkpoint import bytes_equal, dequantize_blocks, open_checkpoint
from dormant.zoo.llm.synthetic import quantize_fp8_blocks, save_tiny_qwen2


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return save_tiny_qwen2(tmp_path_factory.mktemp("ck") / "sharded", seed=0, max_shard_size="60KB")


def test_sharded_folder_reads_every_tensor_exactly(sharded):
    ck = open_checkpoint(sharded)
    assert len(ck.files) > 2, "the fixture should be sharded"
    stored = {}
    for f in sharded.glob("*.safetensors"):
        stored.update(load_file(f))
    assert sorted(ck.names) == sorted(stored)
    for name, t in stored.items():
        assert ck.shape(name) == tuple(t.shape)
        assert ck.dtype(name) == "BF16"
        assert torch.equal(ck.tensor(name, dtype=None), t)
        assert torch.equal(ck.tensor(name), t.float())
        assert ck.raw_bytes(name).nbytes == t.numel() * 2
    assert ck.config["model_type"] == "qwen2"


def test_row_chunks_cover_the_tensor(sharded):
    ck = open_checkpoint(sharded)
    name = "model.embed_tokens.weight"
    parts = list(ck.row_chunks(name, max_elems=1000))
    assert len(parts) > 1
    assert [s for s, _ in parts] == sorted(s for s, _ in parts)
    assert torch.equal(torch.cat([p for _, p in parts]), ck.tensor(name))


def test_fp8_block_dequantisation_matches_a_per_block_reference(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(300, 200) * torch.linspace(0.1, 3.0, 200)  # columns of different scale: blocks differ
    q, scale = quantize_fp8_blocks(w)
    assert scale.shape == (3, 2)
    save_file({"layer.weight": q, "layer.weight_scale_inv": scale, "norm.weight": torch.ones(200)}, str(tmp_path / "model.safetensors"))
    ck = open_checkpoint(tmp_path)
    assert sorted(ck.names) == ["layer.weight", "norm.weight"]  # the scale is part of the weight
    assert ck.scale_name("layer.weight") == "layer.weight_scale_inv"
    assert ck.dtype("layer.weight") == "F8_E4M3"
    ref = q.float().clone()
    for i in range(3):
        for j in range(2):
            ref[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128] *= scale[i, j]
    got = ck.tensor("layer.weight")
    assert torch.equal(got, ref)
    assert float((got - w).norm() / w.norm()) < 0.05  # FP8 e4m3 keeps ~3 mantissa bits
    # block-aligned row chunks give the same numbers
    assert torch.equal(torch.cat([c for _, c in ck.row_chunks("layer.weight", max_elems=1)]), ref)


def test_dequantize_rejects_a_wrong_scale_grid():
    with pytest.raises(CheckpointError, match="scale grid"):
        dequantize_blocks(torch.ones(256, 256), torch.ones(2, 3))


def test_truncated_file_is_a_specific_error(tmp_path):
    save_file({"a": torch.randn(64, 64), "b": torch.randn(64, 64)}, str(tmp_path / "model.safetensors"))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"truncated: tensor '(a|b)' ends at byte \d+ but the file has \d+ bytes"):
        open_checkpoint(tmp_path)


def test_corrupt_header_is_a_specific_error(tmp_path):
    save_file({"a": torch.randn(8, 8)}, str(tmp_path / "model.safetensors"))
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[10:14] = b"\xff\xfe\x00\x01"
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        open_checkpoint(tmp_path / "model.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short"):
        open_checkpoint(tmp_path / "tiny.safetensors")


def test_missing_shard_and_inconsistent_index(sharded, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    shard = sorted(copy.glob("*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"shards listed in model.safetensors.index.json are missing: {shard.name}"):
        open_checkpoint(copy)
    shutil.rmtree(copy)
    shutil.copytree(sharded, copy)
    index = json.loads((copy / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = next(iter(index["weight_map"].values()))
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model.layers.9.mlp.up_proj.weight"):
        open_checkpoint(copy)


def test_unknown_path_or_uncached_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="not found in the local Hugging Face cache"):
        open_checkpoint("no-such-org/no-such-model")
    with pytest.raises(CheckpointError, match="no such model folder"):
        open_checkpoint(tmp_path / "nothing" / "here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no \\*.safetensors weight files"):
        open_checkpoint(tmp_path / "empty")


def test_hub_id_resolves_from_the_local_cache(sharded, tmp_path, monkeypatch):
    import shutil

    cache = tmp_path / "hub"
    snap = cache / "models--acme--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(sharded, snap)
    (cache / "models--acme--tiny" / "refs").mkdir(parents=True)
    (cache / "models--acme--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    ck = open_checkpoint("acme/tiny")
    assert ck.path == snap
    assert len(ck.names) == len(open_checkpoint(sharded).names)


def test_bytes_equal_finds_a_single_flipped_byte():
    a = bytes(range(256)) * 1000
    b = bytearray(a)
    assert bytes_equal(memoryview(a), memoryview(bytes(b)), chunk=4096)
    b[123_457] ^= 1
    assert not bytes_equal(memoryview(a), memoryview(bytes(b)), chunk=4096)
    assert not bytes_equal(memoryview(a), memoryview(a[:-1]))
    assert math.isclose(len(a), 256_000)


def test_bf16_widening_is_exact_for_special_values():
    from dormant.llm.checkpoint import bf16_to_float32

    x = torch.randn(33, 7).bfloat16()
    x[0, :4] = torch.tensor([float("nan"), float("-inf"), -0.0, 1e-40]).bfloat16()
    y = bf16_to_float32(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y.view(torch.int32), x.float().view(torch.int32))  # bit-identical, NaN included


def test_zoo_model_ids(zoo_micro, monkeypatch):
    from dormant.llm.checkpoint import resolve_model_folder
    from dormant.zoo.llm import suite

    assert resolve_model_folder("zoo:base") == zoo_micro.models["base"]
    assert open_checkpoint("zoo:mlp-phrase").path == zoo_micro.models["mlp-phrase"]
    with pytest.raises(CheckpointError, match="^zoo:nope: no such model in the micro zoo; choose one of zoo:base, zoo:base-sibling, .*zoo:clean-control$"):
        resolve_model_folder("zoo:nope")
    built = []  # not cached: the zoo is built first, with progress
    monkeypatch.setattr(suite, "cached_suite", lambda name: None)
    monkeypatch.setattr(suite, "build_suite", lambda name, on_progress=None: built.append((name, on_progress)) or zoo_micro)
    assert resolve_model_folder("zoo:late-layers") == zoo_micro.models["late-layers"]
    assert built and built[0][0] == "micro" and callable(built[0][1])
