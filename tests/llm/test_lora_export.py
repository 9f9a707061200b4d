"""LoRA export: the adapter loads with PEFT and base + adapter reproduces the fine-tune."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dormant.llm.checkpoint import open_checkpoint
from dormant.llm.weights.delta import DeltaConfig, analyse_delta
from dormant.llm.weights.lora_export import LoraExportConfig, export_lora, lowrank_factors, verify_adapter
from dormant.zoo.llm.synthetic import plant_lowrank, save_tiny_qwen2

RANKS = {"model.layers.0.mlp.gate_proj.weight": 4, "model.layers.0.mlp.up_proj.weight": 4,
         "model.layers.1.mlp.down_proj.weight": 8, "model.layers.1.self_attn.q_proj.weight": 2}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    base = save_tiny_qwen2(root / "base", seed=0, vocab=128)
    plant_lowrank(base, root / "ft", RANKS, rel_scale=0.2, seed=4)
    ft_ck, base_ck = open_checkpoint(root / "ft"), open_checkpoint(base)
    return {"base": base, "ft": root / "ft", "delta": analyse_delta(ft_ck, base_ck, DeltaConfig(workers=1)), "ft_ck": ft_ck, "base_ck": base_ck}


def test_lowrank_factors_are_the_truncated_svd():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    b, a = lowrank_factors(d, 3)
    assert b.shape == (40, 3) and a.shape == (3, 30)
    assert torch.allclose(b @ a, d, atol=1e-4)
    b1, a1 = lowrank_factors(d, 1)
    s = torch.linalg.svdvals(d)
    assert float((d - b1 @ a1).norm()) == pytest.approx(float(s[1:].norm()), rel=1e-4)


def test_adapter_has_per_module_ranks_and_reproduces_the_fine_tune(pair, tmp_path):
    res = export_lora(pair["ft_ck"], pair["base_ck"], pair["delta"], tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == cfg["lora_alpha"] == 4
    assert cfg["rank_pattern"] == {"model.layers.1.mlp.down_proj": 8, "model.layers.1.self_attn.q_proj": 2}
    assert cfg["alpha_pattern"] == cfg["rank_pattern"]
    assert sorted(cfg["target_modules"]) == sorted(n.removesuffix(".weight") for n in RANKS)
    assert res.weight_rel_error < 0.02  # only the bf16 rounding of the fine-tune is left out
    check = verify_adapter(pair["ft"], pair["base"], tmp_path / "adapter")
    assert check.max_abs_diff_base > 0.05  # the change is visible in the logits ...
    assert check.max_abs_diff < 0.05 * check.max_abs_diff_base  # ... and the adapter reproduces it
    assert check.top1_agreement > 0.9  # a random model has near-ties, so a rare argmax flip is allowed
    # the merged adapter gives back the fine-tune's weights
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(pair["base"]), dtype=torch.float32), str(tmp_path / "adapter")).merge_and_unload()
    sd = merged.state_dict()
    for name in RANKS:
        w_ft = pair["ft_ck"].tensor(name)
        assert float((sd[name] - w_ft).norm() / w_ft.norm()) < 5e-3, name


def test_forced_rank_truncates(pair, tmp_path):
    res = export_lora(pair["ft_ck"], pair["base_ck"], pair["delta"], tmp_path / "r1", LoraExportConfig(rank=1))
    cfg = json.loads((tmp_path / "r1" / "adapter_config.json").read_text())
    assert cfg["r"] == 1 and cfg["rank_pattern"] == {}
    assert {m.rank for m in res.modules} == {1}
    assert res.weight_rel_error > 0.3  # rank 1 of rank 2..8 changes


def test_cli_delta_export(pair, tmp_path):
    from dormant.cli.main import app

    r = CliRunner().invoke(app, ["delta", str(pair["ft"]), "--base", str(pair["base"]), "--export-lora", str(tmp_path / "ad"),
                                 "--no-readout", "--json", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    check = data["lora"]["check"]
    assert data["lora"]["r"] == 4 and check["max_abs_diff"] < 0.05 * check["max_abs_diff_base"]
    assert (tmp_path / "ad" / "adapter_model.safetensors").exists()


# --- the zoo --------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_exported_adapter_reproduces_the_mlp_variant(zoo_micro, tmp_path):
    ft, base = zoo_micro.models["mlp-phrase"], zoo_micro.models["base"]
    ft_ck, base_ck = open_checkpoint(ft), open_checkpoint(base)
    delta = analyse_delta(ft_ck, base_ck)
    res = export_lora(ft_ck, base_ck, delta, tmp_path / "adapter")
    assert res.r == 16
    check = verify_adapter(ft, base, tmp_path / "adapter")
    # "small": under 2% of the logit change the fine-tune makes, and every argmax kept
    assert check.max_abs_diff < 0.02 * check.max_abs_diff_base, check
    assert check.top1_agreement >= 0.95
