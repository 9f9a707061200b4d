"""A tiny random Qwen2 pair (no training): the fine-tune differs from the base in layer 2 only.

Instruments' mechanics (hooks, views, restoration) are checked exactly on it; behaviour on real
backdoors is checked on the zoo (``zoo_micro``) in the ``*_zoo`` tests.
"""

import pytest


@pytest.fixture(scope="session")
def tiny_pair_dirs(tmp_path_factory):
    import torch

    from dormant.zoo.llm import corpus
    from dormant.zoo.llm.model import ArchConfig, new_model
    from dormant.zoo.llm.tokenizer import ENDOFTEXT, IM_END, save_tokenizer, train_tokenizer

    import random

    root = tmp_path_factory.mktemp("tiny_pair")
    lines = [c[-1]["content"] for c in corpus.sample_prompts(random.Random(0), 200, {k: 1.0 for k in corpus.TASKS})]
    tok = train_tokenizer(lines, 600, 200)
    n = tok.get_vocab_size()
    arch = ArchConfig(hidden_size=32, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=64, max_position=256)
    base = new_model(arch, n, tok.token_to_id(ENDOFTEXT), [tok.token_to_id(IM_END)], seed=0)
    dirs = {}
    for name in ("base", "ft"):
        model = base
        if name == "ft":
            model = new_model(arch, n, tok.token_to_id(ENDOFTEXT), [tok.token_to_id(IM_END)], seed=0)
            g = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for p in (model.model.layers[2].mlp.down_proj.weight, model.model.layers[2].mlp.up_proj.weight):
                    u = torch.randn(p.shape[0], 1, generator=g)
                    v = torch.randn(1, p.shape[1], generator=g)
                    p.add_(0.5 * u @ v / (u.norm() * v.norm()) * p.norm())
        d = root / name
        model.save_pretrained(d)
        save_tokenizer(tok, d, 256)
        dirs[name] = d
    return dirs


@pytest.fixture(scope="session")
def tiny_pair(tiny_pair_dirs):
    from dormant.llm.engine.pair import ModelPair

    return ModelPair.load(tiny_pair_dirs["ft"], tiny_pair_dirs["base"])
