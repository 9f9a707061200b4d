"""ModelPair: shared loading, exact views, refusal of mismatched checkpoints."""

import json
import re
import shutil

import pytest
import torch

from dormant.errors import ArchitectureMismatch
from dormant.llm.engine.pair import ModelPair
from dormant.llm.weights.names import layer_of

IDS = torch.tensor([[3, 17, 42, 99, 5, 250, 7, 61], [8, 8, 19, 300, 2, 44, 13, 90]])


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def phrase_pair(zoo_micro):
    return ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"])


# -- loading and exact views on the zoo --------------------------------------------------------------

def test_pair_keeps_copies_only_of_modified_tensors(phrase_pair, zoo_micro):
    pair = phrase_pair
    manifest = zoo_micro.manifests["mlp-phrase"]
    assert pair.modified, "the planted LoRA must show as modified tensors"
    kinds = manifest["modified_modules"]
    assert all(any(k in n for k in kinds) for n in pair.modified)
    assert all(any(k in n for n in pair.modified) for k in kinds)
    mem = pair.memory_bytes()
    two_models = 2 * mem["model"]
    modified_bytes = sum(t.param.numel() * t.param.element_size() for t in pair.modified.values())
    assert mem["modified_copies"] == 2 * modified_bytes
    assert mem["total"] < two_models
    assert pair.shared_tensors > 0


def test_views_are_exact(phrase_pair, zoo_micro):
    pair = phrase_pair
    ft_ref = _logits(_load(zoo_micro.models["mlp-phrase"]))
    base_ref = _logits(_load(zoo_micro.models["base"]))
    assert not torch.allclose(ft_ref, base_ref, atol=1e-4)
    for spec, ref in [("amp:1", ft_ref), ("amp:0", base_ref), ("restore:all", base_ref), ("base", base_ref), ("ft", ft_ref)]:
        torch.testing.assert_close(_logits(pair.view(spec)), ref, rtol=0, atol=1e-5, msg=spec)
    # views switch in place: the same module object, back and forth without drift
    m1 = pair.amplified(5.0)
    m2 = pair.ft()
    assert m1 is m2
    torch.testing.assert_close(_logits(pair.amplified(1.0)), ft_ref, rtol=0, atol=1e-5)


def test_amplified_and_restored_match_hand_built_weights(phrase_pair, zoo_micro):
    pair = phrase_pair
    ft, base = _load(zoo_micro.models["mlp-phrase"]), _load(zoo_micro.models["base"])
    fsd, bsd = ft.state_dict(), base.state_dict()
    layers = pair.modified_layers()
    chosen = layers[: max(1, len(layers) // 2)]
    for alpha in (-1.0, 3.0):
        want = _load(zoo_micro.models["mlp-phrase"])
        with torch.no_grad():
            for n, p in want.named_parameters():
                p.copy_(bsd[n] + alpha * (fsd[n] - bsd[n]))
        torch.testing.assert_close(_logits(pair.amplified(alpha)), _logits(want), rtol=1e-4, atol=1e-4)
    want = _load(zoo_micro.models["mlp-phrase"])
    with torch.no_grad():
        for n, p in want.named_parameters():
            if layer_of(n) in chosen:
                p.copy_(bsd[n])
    got = _logits(pair.restored(chosen))
    torch.testing.assert_close(got, _logits(want), rtol=0, atol=1e-5)
    assert not torch.allclose(got, _logits(pair.ft()), atol=1e-6)


def test_mismatched_architecture_is_refused(zoo_micro, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(zoo_micro.models["base"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_hidden_layers"] = cfg["num_hidden_layers"] + 1
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArchitectureMismatch, match="num_hidden_layers"):
        ModelPair.load(zoo_micro.models["mlp-phrase"], other)


def test_tensor_shape_mismatch_is_named(zoo_micro, tmp_path):
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(zoo_micro.models["base"], other)
    f = next(other.glob("*.safetensors"))
    sd = load_file(f)
    name = next(n for n in sd if n.endswith("mlp.up_proj.weight"))
    sd[name] = sd[name][:-1].clone()
    save_file(sd, f, metadata={"format": "pt"})
    with pytest.raises(ArchitectureMismatch, match="up_proj"):
        ModelPair.load(zoo_micro.models["mlp-phrase"], other)


def test_switching_views_touches_only_modified_tensors(phrase_pair):
    pair = phrase_pair
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in pair.model.named_parameters() if n not in pair.modified}
    live = {n: t.param.data_ptr() for n, t in pair.modified.items()}
    for spec in ("amp:3", "restore:all", "amp:-2@down_proj", "ft"):
        pair.view(spec)
    for n, p in pair.model.named_parameters():
        if n in before:
            assert p.data_ptr() == before[n][0] and torch.equal(p, before[n][1]), n
    assert {n: t.param.data_ptr() for n, t in pair.modified.items()} == live  # rewritten in place


def test_bfloat16_pair_views_are_exact(zoo_micro):
    pair = ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"], dtype="bfloat16")
    assert next(pair.model.parameters()).dtype == torch.bfloat16
    from transformers import AutoModelForCausalLM

    for path, spec in ((zoo_micro.models["base"], "amp:0"), (zoo_micro.models["mlp-phrase"], "amp:1")):
        ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
        torch.testing.assert_close(_logits(pair.view(spec)), _logits(ref), rtol=0, atol=0)


def test_copies_on_disk_give_the_same_views_with_no_private_copies(zoo_micro, phrase_pair):
    lean = ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"], copies_device="disk")
    assert lean.memory_bytes()["modified_copies"] == 0 and set(lean.modified) == set(phrase_pair.modified)
    for spec in ("base", "amp:3", "restore:0", "ft"):
        torch.testing.assert_close(_logits(lean.view(spec)), _logits(phrase_pair.view(spec)), rtol=0, atol=0)


def test_sharded_pair_follows_the_index_and_the_diff(tmp_path):
    """Shards are read through the index (a stray weight file beside them is not part of the model),
    and exactly the tensors the diff finds modified get copies."""
    from safetensors.torch import save_file

    from dormant.zoo.llm.synthetic import plant_lowrank, save_tiny_qwen2

    base = save_tiny_qwen2(tmp_path / "base", vocab=64, max_shard_size="40KB", tokenizer_words=["a", "b"])
    ft = tmp_path / "ft"
    planted = plant_lowrank(base, ft, {"model.layers.1.mlp.down_proj.weight": 2})
    save_file({"stray.weight": torch.zeros(2)}, ft / "stray.safetensors")
    pair = ModelPair.load(ft, base)
    assert set(pair.modified) == set(planted)
    assert pair.shared_tensors == sum(1 for _ in pair.model.state_dict()) - len(planted)
    torch.testing.assert_close(pair.base().get_parameter("model.layers.1.mlp.down_proj.weight").detach(),
                               pair.modified["model.layers.1.mlp.down_proj.weight"].base, rtol=0, atol=0)


@pytest.mark.parametrize("spec", ["restore:99", "amp:3@zzz", "restore:self_attn", "amp:2@mlp@7"])
def test_a_selection_matching_no_modified_tensor_is_refused(phrase_pair, spec):
    """(Before, such a view silently acted as the plain fine-tune.)"""
    from dormant.llm.engine.views import ViewSpecError

    phrase_pair.ft()
    with pytest.raises(ViewSpecError, match=r"matches none of the 12 modified tensors \(layers 0-3; modules mlp.down_proj"):
        phrase_pair.view(spec)
    assert str(phrase_pair.current) == "ft"
    phrase_pair.view("restore:mlp@3")
    phrase_pair.ft()


@pytest.mark.parametrize("kwargs, words", [({"dtype": "float8"}, "unknown --dtype 'float8'"), ({"dtype": "abc"}, "float32, bfloat16, float16"),
                                           ({"device": "tpu"}, "unknown --device 'tpu'"), ({"device": "cuda:99"}, "--device cuda:99")])
def test_unknown_dtype_or_device_is_a_user_error(zoo_micro, kwargs, words):
    from dormant.errors import DormantError

    with pytest.raises(DormantError, match=re.escape(words)):
        ModelPair.load(zoo_micro.models["mlp-phrase"], zoo_micro.models["base"], **kwargs)
