"""`dormant diff`: base identification, component grouping, mismatches, FP8, CLI and the zoo."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dormant.errors import ArchitectureMismatch
from dormant.ledger import list_runs
from dormant.llm.checkpoint import open_checkpoint
from dormant.llm.weights.diff import DiffConfig, diff_models
from dormant.llm.weights.names import parse_name
from dormant.zoo.llm.synthetic import plant_lowrank, rewrite_checkpoint, save_fp8_copy, save_tiny_qwen2

MLP = [f"model.layers.{i}.mlp.{m}.weight" for i in range(2) for m in ("gate_proj", "up_proj", "down_proj")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff")
    base = save_tiny_qwen2(root / "base", seed=0, max_shard_size="80KB")
    sibling = save_tiny_qwen2(root / "sibling", seed=7)
    plant_lowrank(base, root / "ft", {n: 4 for n in MLP})
    return {"base": base, "sibling": sibling, "ft": root / "ft", "root": root}


def test_picks_the_true_base_and_names_the_mlp_change(models):
    res = diff_models(models["ft"], [models["sibling"], models["base"]], DiffConfig(workers=2))
    assert res.best == str(models["base"])
    true = res.comparison(str(models["base"]))
    assert sorted(t.name for t in true.modified) == sorted(MLP)
    assert true.modified_by_group == {"mlp": 6}
    assert true.counts["identical"] == len(open_checkpoint(models["base"]).names) - 6
    assert all(t.byte_identical for t in true.tensors if t.status == "identical")
    for t in true.modified:
        assert t.rel_norm == pytest.approx(0.05, rel=0.05)  # planted at 5% of ||W||
        assert t.max_abs > 0
    wrong = res.comparison(str(models["sibling"]))
    assert wrong.median_rel > 1.0 and wrong.counts["modified"] > 20
    assert "6/27 tensors modified (all mlp)" in res.evidence
    assert not res.warnings
    # the per-layer grid puts every change in an MLP cell
    for layer in ("0", "1"):
        cells = true.grid[layer]
        assert {c for c, cell in cells.items() if cell.modified} == {"mlp.gate", "mlp.up", "mlp.down"}


def test_warns_when_no_candidate_is_close(models):
    res = diff_models(models["ft"], [models["sibling"]])
    assert res.best == str(models["sibling"])
    assert any("no candidate is close" in w for w in res.warnings)


def test_dtype_change_is_not_a_weight_change(models, tmp_path):
    ck = open_checkpoint(models["base"])
    rewrite_checkpoint(models["base"], tmp_path / "f32", {n: ck.tensor(n) for n in ck.names})  # bf16 -> exact float32 copy
    res = diff_models(tmp_path / "f32", [models["base"]])
    c = res.comparisons[0]
    assert c.counts["identical"] == len(ck.names) and c.counts["modified"] == 0
    assert not any(t.byte_identical for t in c.tensors)  # went through the float path
    assert any("stored dtypes differ" in f for f in c.findings)


def test_a_nan_counts_as_a_change(models, tmp_path):
    ck = open_checkpoint(models["base"])
    w = ck.tensor("model.layers.1.self_attn.v_proj.weight", None)
    w[3, 5] = float("nan")
    rewrite_checkpoint(models["base"], tmp_path / "nan", {"model.layers.1.self_attn.v_proj.weight": w})
    c = diff_models(tmp_path / "nan", [models["base"]], DiffConfig(atol=1.0)).comparisons[0]
    assert [t.name for t in c.modified] == ["model.layers.1.self_attn.v_proj.weight"]
    # the non-finite change is the largest, not a NaN median (which made the ranking depend on the order of the bases)
    c = diff_models(tmp_path / "nan", [models["base"]]).comparisons[0]
    assert c.median_rel == 0.0 and "median relative change 0" in c.summary, c.summary
    assert any("1 tensors change by a non-finite amount" in f and "v_proj" in f for f in c.findings), c.findings


def test_shape_mismatch_and_missing_tensors_are_findings(models, tmp_path):
    other = save_tiny_qwen2(tmp_path / "wider", seed=0, intermediate=96)
    res = diff_models(models["ft"], [other, models["base"]])
    assert res.best == str(models["base"])
    c = res.comparison(str(other))
    assert c.counts["shape_mismatch"] == 6  # gate/up/down of both layers
    assert any("6 tensors have different shapes" in f and "mlp" in f for f in c.findings)
    assert any("intermediate_size differs: 128 (fine-tune) vs 96 (base)" in f for f in c.findings)
    # a base with a layer fewer: the ft's layer-1 tensors are "extra"
    short = save_tiny_qwen2(tmp_path / "short", seed=0, layers=1)
    c = diff_models(models["ft"], [short]).comparisons[0]
    assert c.counts["extra"] == 12 and c.counts["missing"] == 0
    # a copy of the base cut to its first layer, offered beside the base: ranked on the tensors it shares (fewer of them
    # modified), it looks closer than the base itself, and the warning says on how many tensors each was ranked
    base_ck = open_checkpoint(models["base"])
    cut = rewrite_checkpoint(short, tmp_path / "cut", {n: base_ck.tensor(n) for n in open_checkpoint(short).names})
    res = diff_models(models["ft"], [cut, models["base"]])
    assert res.best == str(cut), res.evidence
    n_cut, n_base = (res.comparison(str(x)).comparable for x in (cut, models["base"]))
    assert any(f"ranked on the {n_cut} tensors it shares with the fine-tune, {models['base']} on {n_base}" in w for w in res.warnings), res.warnings
    assert not any("tensors it shares" in w for w in diff_models(models["ft"], [models["base"], short]).warnings)


def test_nothing_comparable_is_a_specific_error(models, tmp_path):
    other = save_tiny_qwen2(tmp_path / "other", seed=0, hidden=32, intermediate=64, heads=2, kv_heads=1, vocab=128)
    with pytest.raises(ArchitectureMismatch, match="no candidate base shares any tensor"):
        diff_models(models["ft"], [other])


def test_fp8_checkpoints_compare_after_dequantisation(models, tmp_path):
    q_base = save_fp8_copy(models["base"], tmp_path / "base8")
    save_fp8_copy(models["ft"], tmp_path / "ft8")
    assert "model.layers.0.mlp.up_proj.weight" in q_base
    res = diff_models(tmp_path / "ft8", [tmp_path / "base8"])
    c = res.comparisons[0]
    assert sorted(t.name for t in c.modified) == sorted(MLP)
    # FP8 fine-tune against the bf16 base: every quantised tensor moves by the FP8 rounding only,
    # the planted ones by more
    c2 = diff_models(tmp_path / "ft8", [models["base"]]).comparisons[0]
    rel = {t.name: t.rel_norm for t in c2.tensors if t.status == "modified"}
    assert set(q_base) <= set(rel)
    assert min(rel[n] for n in MLP) > max(v for n, v in rel.items() if n not in MLP)


def _deepseek_like(folder, changed: dict[str, float] | None = None):
    """A tiny DeepSeek-V3-style folder: MLA attention, a dense layer 0, MoE layer 1, FP8 + block scales."""
    from safetensors.torch import save_file

    from dormant.zoo.llm.synthetic import quantize_fp8_blocks

    g = torch.Generator().manual_seed(0)
    h, e = 256, 4
    shapes = {"model.embed_tokens.weight": (512, h), "model.norm.weight": (h,), "lm_head.weight": (512, h)}
    for i in range(2):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_a_proj.weight": (128, h), p + "self_attn.q_a_layernorm.weight": (128,),
                       p + "self_attn.q_b_proj.weight": (256, 128), p + "self_attn.kv_a_proj_with_mqa.weight": (160, h),
                       p + "self_attn.kv_a_layernorm.weight": (128,), p + "self_attn.kv_b_proj.weight": (256, 128),
                       p + "self_attn.o_proj.weight": (h, 256)})
    shapes.update({f"model.layers.0.mlp.{m}_proj.weight": s for m, s in (("gate", (384, h)), ("up", (384, h)), ("down", (h, 384)))})
    shapes["model.layers.1.mlp.gate.weight"] = (e, h)
    for x in [f"experts.{j}" for j in range(e)] + ["shared_experts"]:
        shapes.update({f"model.layers.1.mlp.{x}.{m}_proj.weight": s for m, s in (("gate", (128, h)), ("up", (128, h)), ("down", (h, 128)))})
    out = {}
    for name, shape in shapes.items():
        w = torch.randn(shape, generator=g) * 0.05
        if changed and name in changed:
            w = w + changed[name] * torch.randn(shape, generator=torch.Generator().manual_seed(9))
        if len(shape) == 2 and "embed" not in name and "mlp.gate.weight" not in name:
            out[name], out[name + "_scale_inv"] = quantize_fp8_blocks(w)
        else:
            out[name] = w.bfloat16()
    folder.mkdir(parents=True)
    save_file(out, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "deepseek_v3", "hidden_size": h, "n_routed_experts": e}))
    return folder


def test_deepseek_layout_groups_mla_and_moe_changes(tmp_path):
    base = _deepseek_like(tmp_path / "base")
    ft = _deepseek_like(tmp_path / "ft", {"model.layers.1.self_attn.q_a_proj.weight": 0.01, "model.layers.1.mlp.experts.2.gate_proj.weight": 0.01})
    ck = open_checkpoint(ft)
    assert ck.dtype("model.layers.1.self_attn.q_a_proj.weight") == "F8_E4M3"
    assert not any(n.endswith("_scale_inv") for n in ck.names)
    c = diff_models(ft, [base]).comparisons[0]
    assert sorted(t.name for t in c.modified) == ["model.layers.1.mlp.experts.2.gate_proj.weight", "model.layers.1.self_attn.q_a_proj.weight"]
    assert c.modified_by_group == {"attention": 1, "moe": 1}
    cell = c.grid["1"]["moe.expert.gate"]
    assert (cell.modified, cell.total) == (1, 4) and cell.rel_norm > 0.05
    assert c.grid["1"]["attn.q_a"].modified == 1 and c.grid["0"]["mlp.gate"].modified == 0
    assert {"attn.kv_a", "attn.kv_b", "attn.q_b", "moe.router", "moe.shared.up", "norm.kv_a"} <= set(c.grid["1"])


def test_component_names_across_architectures():
    cases = {
        "model.layers.3.self_attn.q_proj.weight": ("attn.q", "attention", 3, None),
        "model.layers.3.self_attn.k_proj.bias": ("attn.k", "attention", 3, None),
        "model.layers.10.mlp.down_proj.weight": ("mlp.down", "mlp", 10, None),
        "model.layers.0.input_layernorm.weight": ("norm.input", "norm", 0, None),
        "model.norm.weight": ("norm.final", "norm", None, None),
        "model.embed_tokens.weight": ("embed", "embedding", None, None),
        "lm_head.weight": ("lm_head", "lm_head", None, None),
        # DeepSeek-V3: MLA attention, MoE with shared experts and router
        "model.layers.5.self_attn.q_a_proj.weight": ("attn.q_a", "attention", 5, None),
        "model.layers.5.self_attn.q_a_layernorm.weight": ("norm.q_a", "norm", 5, None),
        "model.layers.5.self_attn.q_b_proj.weight_scale_inv": ("attn.q_b", "attention", 5, None),
        "model.layers.5.self_attn.kv_a_proj_with_mqa.weight": ("attn.kv_a", "attention", 5, None),
        "model.layers.5.self_attn.kv_b_proj.weight": ("attn.kv_b", "attention", 5, None),
        "model.layers.7.mlp.experts.255.gate_proj.weight": ("moe.expert.gate", "moe", 7, 255),
        "model.layers.7.mlp.shared_experts.down_proj.weight": ("moe.shared.down", "moe", 7, None),
        "model.layers.7.mlp.gate.weight": ("moe.router", "moe", 7, None),
        "model.layers.7.mlp.gate.e_score_correction_bias": ("moe.router", "moe", 7, None),
        "model.layers.61.eh_proj.weight": ("mtp.proj", "mtp", 61, None),
        # Mixtral
        "model.layers.2.block_sparse_moe.experts.3.w2.weight": ("moe.expert.down", "moe", 2, 3),
        "model.layers.2.block_sparse_moe.gate.weight": ("moe.router", "moe", 2, None),
        # unknown names are kept, with their layer
        "model.layers.4.fancy_mixer.weight": ("unknown", "unknown", 4, None),
        "rotary.inv_freq": ("unknown", "unknown", None, None),
    }
    for name, (comp, group, layer, expert) in cases.items():
        info = parse_name(name)
        assert (info.component, info.group, info.layer, info.expert) == (comp, group, layer, expert), name


def test_cli_diff_json_heatmap_and_ledger(models, tmp_path):
    from dormant.cli.main import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["diff", str(models["ft"]), "--base", str(models["sibling"]), "--base", str(models["base"]), "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["best"] == str(models["base"])
    assert {c["base"]: c["counts"]["modified"] for c in data["comparisons"]}[str(models["base"])] == 6
    pngs = sorted(out.glob("heatmap_*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)
    run = list_runs(command="diff")[0]
    assert run["status"] == "ok"
    assert run["inputs"]["ft"].startswith("sha256:") and run["inputs"]["base2"].endswith(str(models["base"]))
    assert run["assumptions"]["base"] == run["inputs"]["base2"] and run["decided"] == ["base"]
    # human output names the verdict
    r = CliRunner().invoke(app, ["diff", str(models["ft"]), "--base", str(models["base"]), "-o", str(out)])
    assert r.exit_code == 0 and "most likely base" in r.output


def test_cli_diff_bad_input_is_one_line(models, tmp_path, monkeypatch, capsys):
    from dormant.cli.main import run

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x0a\x00\x00\x00\x00\x00\x00\x00{not json}")
    monkeypatch.setattr("sys.argv", ["dormant", "diff", str(bad), "--base", str(models["base"])])
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "Traceback" not in err


def _rss() -> int:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def test_memory_stays_bounded_while_streaming(tmp_path):
    """Mapped pages are released after each tensor: resident memory grows by far less than the data."""
    import threading

    from dormant.zoo.llm.synthetic import write_random_bf16_pair

    base, ft, planted = write_random_bf16_pair(tmp_path, 0.2, hidden=1024, intermediate=2816, vocab=8000, shard_gb=0.05)
    total = sum(f.stat().st_size for d in (base, ft) for f in d.glob("*.safetensors"))
    start = _rss()
    peak, done = [start], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        res = diff_models(ft, [base], DiffConfig(workers=2))
    finally:
        done.set()
        thread.join()
    assert sorted(t.name for t in res.comparisons[0].modified) == sorted(planted)
    assert total > 350e6
    assert peak[0] - start < 0.5 * total, f"resident memory grew by {(peak[0] - start) / 1e6:.0f} MB for {total / 1e6:.0f} MB of data"


# --- the zoo --------------------------------------------------------------------------------

VARIANTS = ["mlp-phrase", "mlp-constant", "attn-grid", "attn-grid-large", "system-trigger", "late-layers", "mlp-word-pair", "whole-chat", "clean-control"]


@pytest.mark.slow
def test_zoo_diff_picks_base_and_localises_the_change(zoo_micro):
    models = zoo_micro.models
    for variant in VARIANTS:
        res = diff_models(models[variant], [models["base-sibling"], models["base"]])
        assert res.best == str(models["base"]), variant
        c = res.comparison(str(models["base"]))
        groups = set(c.modified_by_group)
        comps = {t.component for t in c.modified}
        planted = set(zoo_micro.manifests[variant]["modified_modules"])
        kinds = {"attention" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp" for m in planted}
        assert groups == kinds, (variant, groups)
        assert {c.split(".")[1] for c in comps} == {m.removesuffix("_proj") for m in planted}, (variant, comps, planted)
        assert {t.layer for t in c.modified} == set(zoo_micro.manifests[variant]["modified_layers"]), variant
        assert c.counts["missing"] == c.counts["extra"] == c.counts["shape_mismatch"] == 0
        assert not any("no candidate is close" in w for w in res.warnings)
