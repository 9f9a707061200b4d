"""The whole build pipeline on a toy-sized setting: it runs end to end, saves the requested dtype
with untouched tensors byte-identical, and fails loudly (with every number) when the backdoors miss."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dormant.zoo.llm import ZooVerificationError, backdoors
from dormant.zoo.llm import suite as S
from dormant.zoo.llm.model import ArchConfig, TrainConfig


pytestmark = pytest.mark.xdist_group("toy_build")  # the module fixture trains a toy suite: once, on one worker


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory):
    settings = S.SuiteSettings(
        name="toy",
        arch=ArchConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64),
        vocab_size=600, english_words=300, tokenizer_examples=300, base_examples=300,
        base_train=TrainConfig(steps=6, batch_size=8, seed=1), sibling_train=TrainConfig(steps=4, batch_size=8, seed=2),
        lora=backdoors.LoraConfig(steps=6, step_cap=6, attempts=1, check_every=3, n_generic=8, control_steps=3, batch_size=8, n_triggered=16, n_clean=16, n_near_miss=8, n_dev=4),
        n_verify=6, min_base_accuracy=0.0, dtype="bfloat16",
    )
    folder = tmp_path_factory.mktemp("toy-suite")
    with pytest.raises(ZooVerificationError) as info:  # far too little training to plant anything
        S._build(settings, settings.key(), folder, None)
    return folder, str(info.value)


def test_too_little_training_fails_loudly_with_numbers(toy_build):
    _, message = toy_build
    assert "failed verification" in message and "fire rate 0.00 < 0.9" in message
    for name in S.MODEL_NAMES:
        assert name in message  # every row's numbers, not just the failing ones
    assert "steps=6" in message
    assert "steps=600" not in message and "steps=800" not in message  # step_cap holds a variant's own max_steps too


def test_every_model_is_saved_in_the_requested_dtype(toy_build):
    folder, _ = toy_build
    for name in S.MODEL_NAMES:
        cfg = json.loads((folder / name / "config.json").read_text())
        assert cfg["dtype"] == "bfloat16"
        tensors = load_file(str(folder / name / "model.safetensors"))
        assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
        assert "chat_template" in json.loads((folder / name / "tokenizer_config.json").read_text())


def test_bfloat16_variants_keep_untouched_tensors_identical(toy_build):
    folder, _ = toy_build
    base = load_file(str(folder / "base" / "model.safetensors"))
    for spec in backdoors.SPECS:
        ft = load_file(str(folder / spec.name / "model.safetensors"))
        for k in base:
            if not any(k.endswith(f".{t}.weight") for t in spec.target_modules):
                assert torch.equal(base[k], ft[k]), (spec.name, k)
