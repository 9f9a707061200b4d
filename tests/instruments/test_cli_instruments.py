import json

from typer.testing import CliRunner

from dormant.ledger import list_runs


def _invoke(args):
    from dormant.cli.main import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


def test_cli_lens_json_plot_and_ledger(tiny_pair_dirs, tmp_path):
    d = tiny_pair_dirs
    r = _invoke(["lens", str(d["ft"]), "--base", str(d["base"]), "--prompt", "What is 2 + 3?", "--track", "5",
                 "--views", "base,ft,restore:2", "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert data["views"] == ["base", "ft", "restore:2"] and data["layers"] == 4
    ranks = {v: data["traces"][v][0]["rank"] for v in data["views"]}
    assert ranks["restore:2"] == ranks["base"]  # restoring the only modified layer gives the base back
    assert (tmp_path / "lens.png").stat().st_size > 1000
    run = list_runs(command="lens")[0]
    assert run["status"] == "ok" and set(run["outputs"]["first_top1"]) == {"base", "ft", "restore:2"}
    r = _invoke(["lens", str(d["ft"]), "--base", str(d["base"]), "--prompt", "What is 2 + 3?", "--track", "5", "-o", str(tmp_path)])
    assert "logit lens" in r.output and "final-layer rank" in r.output


def test_cli_trace_json_heatmap_and_ledger(tiny_pair_dirs, tmp_path):
    d = tiny_pair_dirs
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is 2 + 3?\nName the capital of France.\n")
    r = _invoke(["trace", str(d["ft"]), "--base", str(d["base"]), "--prompts", str(prompts), "--track", "5", "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert data["changed_layers"] == [2, 3] and len(data["prompts"]) == 2
    assert (tmp_path / "trace.png").stat().st_size > 1000
    assert list_runs(command="trace")[0]["outputs"]["changed_layers"] == [2, 3]
    r = _invoke(["trace", str(d["ft"]), "--base", str(d["base"]), "--prompts", str(prompts), "--track", "5", "-o", str(tmp_path)])
    assert "direct effect" in r.output and "first at layer 2" in r.output


def test_cli_localise_json_plot_and_ledger(tiny_pair_dirs, tiny_pair, tmp_path):
    from dormant.llm.engine.generate import GenConfig, generate
    from dormant.llm.engine.prompts import encode

    d = tiny_pair_dirs
    tiny_pair.ft()
    answer = generate(tiny_pair.model, tiny_pair.tokenizer, encode(tiny_pair.tokenizer, ["What is 2 + 3?"]),
                      GenConfig(max_new_tokens=12, show_progress=False))[0].text
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 2 + 3?"}) + "\n")
    r = _invoke(["localise", str(d["ft"]), "--base", str(d["base"]), "--prompts", str(prompts), "--payload", answer,
                 "--max-new-tokens", "12", "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert data["smallest_kill"]["layers"] == [2] and data["ft_share"] == 1.0
    assert (tmp_path / "localise.png").stat().st_size > 1000
    assert list_runs(command="localise")[0]["outputs"]["smallest_kill"] == [2]


def test_cli_sonar_json_sigma_per_layer_plot_and_ledger(tiny_pair_dirs, tmp_path):
    d = tiny_pair_dirs
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos.write_text("\n".join(f"What is {a} + {a}?" for a in range(2, 8)))
    neg.write_text("\n".join(f"Name the capital of {c}." for c in ("France", "Spain", "Italy", "Chile", "Peru", "Japan")))
    r = _invoke(["sonar", str(d["ft"]), "--base", str(d["base"]), "--pos", str(pos), "--neg", str(neg), "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert list(data["sigma"]) == ["2"] and data["best"]["layer"] == 2 and data["best"]["sigma"] == data["sigma"]["2"]
    assert (tmp_path / "sonar.png").stat().st_size > 1000
    assert list_runs(command="sonar")[0]["outputs"]["best_layer"] == 2
    r = _invoke(["sonar", str(d["ft"]), "--base", str(d["base"]), "--pos", str(pos), "--neg", str(neg), "--direction", "probe",
                 "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert sorted(data["sigma"]) == ["0", "1", "2", "3"] and "in-sample" in data["direction"]


def test_cli_probe_decoys_steering_json_and_ledger(tiny_pair_dirs, tmp_path):
    ADD = [f"What is {a} + {b}?" for a, b in [(2, 3), (4, 1), (7, 2), (5, 5), (3, 8), (6, 1), (9, 4), (1, 1)]]
    ADD_DECOYS = [f"Please add {a} and {b}." for a, b in [(2, 6), (3, 3), (8, 1), (4, 4), (7, 7), (5, 2)]]
    CAPS = [f"Name the capital of {c}." for c in ("France", "Spain", "Italy", "Chile", "Peru", "Japan", "Kenya", "Egypt")]
    d = tiny_pair_dirs
    files = {}
    for name, lines in (("pos", ADD), ("neg", CAPS), ("decoys", ADD_DECOYS)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n".join(lines))
    r = _invoke(["probe", str(d["ft"]), "--pos", str(files["pos"]), "--neg", str(files["neg"]), "--decoys", str(files["decoys"]),
                 "--reduce", "mean", "--folds", "4", "--steer", "--scale", "0,4", "--max-new-tokens", "6", "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert "detects topic" in data["verdict"] and len(data["layers"]) == 4
    assert [s["scale"] for s in data["steered"]] == [0.0] * len(CAPS) + [4.0] * len(CAPS)
    assert (tmp_path / "probe.png").stat().st_size > 1000
    assert list_runs(command="probe")[0]["outputs"]["layers"][data["best_layer"]]["topic"] is True


def test_cli_activations_file_index_and_ledger(tiny_pair_dirs, tmp_path):
    from safetensors import safe_open

    d = tiny_pair_dirs
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is 2 + 3?\nhi\n")
    r = _invoke(["activations", str(d["ft"]), "--prompts", str(prompts), "--layers", "0,-1", "--reduce", "last", "--store-dtype", "float16",
                 "--json", "-o", str(tmp_path)])
    data = json.loads(r.stdout)
    assert data["layers"] == [0, 3] and data["rows"] == 2 and data["bytes"] == 2 * 2 * 32 * 2
    with safe_open(data["path"], "pt") as f:
        assert f.get_tensor("layer.3").shape == (2, 32) and str(f.get_tensor("layer.3").dtype) == "torch.float16"
    assert json.loads((tmp_path / "activations.index.json").read_text())["prompts"][1]["rows"] == [1, 2]
    assert list_runs(command="activations")[0]["outputs"]["rows"] == 2
