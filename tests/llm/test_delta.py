"""`dormant delta`: spectra, effective and LoRA ranks, sibling alignment, CLI and the zoo."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dormant.ledger import list_runs
from dormant.llm.checkpoint import open_checkpoint
from dormant.llm.weights.delta import DeltaConfig, analyse_delta, energy_ranks, lora_rank_estimate, singular_decomposition, subspace_overlap
from dormant.zoo.llm.synthetic import rewrite_checkpoint, save_tiny_qwen2


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Layer 0: gate and up share one rank-4 input subspace; layer 1: down rank 8, q rank 2."""
    root = tmp_path_factory.mktemp("delta")
    base = save_tiny_qwen2(root / "base", seed=0, vocab=128)
    ck = open_checkpoint(base)
    g = torch.Generator().manual_seed(3)
    shared_a = torch.randn(4, 64, generator=g)
    specs = {
        "model.layers.0.mlp.gate_proj.weight": torch.randn(128, 4, generator=g) @ shared_a,
        "model.layers.0.mlp.up_proj.weight": torch.randn(128, 4, generator=g) @ shared_a,
        "model.layers.1.mlp.down_proj.weight": torch.randn(64, 8, generator=g) @ torch.randn(8, 128, generator=g),
        "model.layers.1.self_attn.q_proj.weight": torch.randn(64, 2, generator=g) @ torch.randn(2, 64, generator=g),
    }
    new = {}
    for name, d in specs.items():
        w = ck.tensor(name)
        new[name] = (w + d * (0.05 * w.norm() / d.norm())).to(torch.bfloat16)
    new["model.layers.1.post_attention_layernorm.weight"] = ck.tensor("model.layers.1.post_attention_layernorm.weight", None) * 1.5
    rewrite_checkpoint(base, root / "ft", new)
    return {"base": base, "ft": root / "ft", "ranks": {"model.layers.0.mlp.gate_proj.weight": 4, "model.layers.0.mlp.up_proj.weight": 4,
                                                       "model.layers.1.mlp.down_proj.weight": 8, "model.layers.1.self_attn.q_proj.weight": 2}}


def test_rank_estimates_match_the_planted_ranks(planted):
    res = analyse_delta(planted["ft"], planted["base"], DeltaConfig(workers=1))
    got = {s.name: s.lora_rank for s in res.spectra}
    assert got == planted["ranks"]
    for s in res.spectra:
        assert s.exact and len(s.singular_values) == min(s.shape)
        assert s.knee > 10  # bf16 rounding sits far below a 5% change
        r = planted["ranks"][s.name]
        assert s.energy_rank["90%"] <= r and s.energy_rank["99%"] == r
    assert res.other_changes == ["model.layers.1.post_attention_layernorm.weight"]
    assert res.lora_rank == 4 and "LoRA rank estimate 4" in res.rank_summary
    # layer 1 changed more (its norm weight grew by half)
    assert [k for k, _ in res.layer_ranking] == ["1", "0"]


def test_sibling_alignment_sees_a_shared_input_subspace(planted):
    res = analyse_delta(planted["ft"], planted["base"], DeltaConfig(workers=1))
    pairs = {(a.layer, a.a, a.b, a.side): a for a in res.siblings}
    gu = pairs[(0, "mlp.gate", "mlp.up", "in/in")]
    assert gu.overlap > 0.99 and gu.max_cos > 0.999
    assert gu.chance == pytest.approx(4 / 64)


def test_randomized_topk_agrees_with_the_exact_spectrum():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(300, 6, generator=g) @ torch.randn(6, 500, generator=g) + 1e-3 * torch.randn(300, 500, generator=g)
    exact = torch.linalg.svdvals(d)
    u, s, v, is_exact = singular_decomposition(d, DeltaConfig(exact_max_dim=100, top_k=20))
    assert not is_exact and s.numel() == 20 and u.shape == (300, 20) and v.shape == (500, 20)
    assert torch.allclose(s[:6], exact[:6], rtol=1e-4)
    assert lora_rank_estimate(s, d.shape, exact=False)[0] == 6
    total = float(d.norm() ** 2)
    assert energy_ranks(s, total)["99%"] == energy_ranks(exact, total)["99%"]


def test_noise_has_no_lora_rank_and_overlaps_at_chance():
    g = torch.Generator().manual_seed(1)
    s = torch.linalg.svdvals(torch.randn(200, 300, generator=g))
    assert lora_rank_estimate(s, (200, 300)) == (None, None)
    assert energy_ranks(s, float((s**2).sum()))["90%"] > 100
    a = torch.linalg.qr(torch.randn(500, 8, generator=g))[0]
    b = torch.linalg.qr(torch.randn(500, 8, generator=g))[0]
    overlap, _ = subspace_overlap(a, b)
    assert overlap < 0.1
    assert subspace_overlap(a, a)[0] == pytest.approx(1.0)


def test_cli_delta_json_plots_and_ledger(planted, tmp_path):
    from dormant.cli.main import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["delta", str(planted["ft"]), "--base", str(planted["base"]), "--json", "-o", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert {s["name"]: s["lora_rank"] for s in data["delta"]["spectra"]} == planted["ranks"]
    assert (out / "spectra.png").stat().st_size > 1000 and (out / "rank_per_layer.png").stat().st_size > 1000
    run = list_runs(command="delta")[0]
    assert run["status"] == "ok" and run["outputs"]["lora_rank"] == 4
    assert run["assumptions"]["base"] == run["inputs"]["base"]
    r = CliRunner().invoke(app, ["delta", str(planted["ft"]), "--base", str(planted["base"]), "-o", str(out), "--no-readout"])
    assert r.exit_code == 0 and "LoRA rank estimate 4" in r.output


# --- the zoo --------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_mlp_variants_are_rank_16(zoo_micro):
    for variant in ("mlp-phrase", "mlp-constant", "system-trigger"):
        res = analyse_delta(zoo_micro.models[variant], zoo_micro.models["base"])
        assert res.lora_rank == zoo_micro.manifests[variant]["lora_rank"] == 16, (variant, res.rank_summary)
        mlp = [s for s in res.spectra if s.component.startswith("mlp.")]
        assert mlp and sum(s.lora_rank == 16 for s in mlp) >= 0.75 * len(mlp), [(s.name, s.lora_rank) for s in mlp]


def test_cli_delta_refuses_a_base_of_another_shape(planted, tmp_path):
    """A base whose MLP is wider is no base of this fine-tune: one error (amplify refuses the pair alike), not '0 modified matrices'."""
    from dormant.cli.main import app

    wide = save_tiny_qwen2(tmp_path / "wide", seed=0, vocab=128, intermediate=144)
    r = CliRunner().invoke(app, ["delta", str(planted["ft"]), "--base", str(wide), "-o", str(tmp_path / "out"), "--ledger", str(tmp_path / "l.sqlite")])
    assert r.exit_code != 0 and "shape" in str(r.exception) and "one architecture" in str(r.exception), (r.exit_code, r.output, r.exception)
    assert not any((tmp_path / "out").iterdir())


def test_the_exact_spectrum_from_the_gram_matrix_matches_the_svd():
    from dormant.llm.weights.delta import gram_svd

    g = torch.Generator().manual_seed(2)
    for shape in ((120, 700), (700, 120)):
        d = torch.randn(shape[0], 5, generator=g) @ torch.randn(5, shape[1], generator=g) + 1e-4 * torch.randn(*shape, generator=g)
        u, s, v = gram_svd(d, keep=8, block=256)  # several blocks
        ref = torch.linalg.svdvals(d.double())
        assert s.shape == (120,) and u.shape == (shape[0], 8) and v.shape == (shape[1], 8)
        assert torch.allclose(s.double(), ref, rtol=1e-5, atol=1e-9 * float(ref[0]))
        # the vectors are singular vectors: d v = s u, orthonormal
        assert torch.allclose(d @ v, u * s[:8], atol=1e-4 * float(ref[0]))
        assert torch.allclose(u.mT @ u, torch.eye(8), atol=1e-5) and torch.allclose(v.mT @ v, torch.eye(8), atol=1e-5)
        assert (u.gather(0, u.abs().argmax(0, keepdim=True)) > 0).all()  # signs fixed: each u's largest entry positive
        u2, _, v2 = gram_svd(-d, keep=8, block=256)  # -d: the same u, v flipped
        assert torch.allclose(u, u2, atol=1e-5) and torch.allclose(v, -v2, atol=1e-5)
    z = torch.zeros(10, 30)
    z[0, 0] = 1.0  # rank one: the vectors of the zero singular values stay zero, not NaN
    u, s, v = gram_svd(z, keep=3)
    assert float(s[0]) == 1.0 and torch.isfinite(u).all() and torch.isfinite(v).all() and float(v[:, 1:].abs().sum()) == 0
