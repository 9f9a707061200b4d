import math

import numpy as np
import pytest
import torch

from dormant.errors import DormantError
from dormant.llm.instruments.sonar import SonarConfig, delta_directions, load_direction, separation, sonar


def test_separation_is_cohens_d():
    assert separation([1.0, 3.0], [1.0, 3.0]) == 0.0
    assert separation([2.0, 4.0], [0.0, 2.0]) == pytest.approx(2 / math.sqrt(2))
    assert separation([1.0, 1.0], [0.0, 0.0]) == math.inf


def test_delta_directions_are_the_changes_input_directions(tiny_pair):
    dirs = delta_directions(tiny_pair, 2)
    assert sorted(dirs) == ["model.layers.2.mlp.down_proj", "model.layers.2.mlp.up_proj"]
    s, v = dirs["model.layers.2.mlp.up_proj"]
    t = tiny_pair.modified["model.layers.2.mlp.up_proj.weight"]
    delta = t.ft - t.base
    # a rank-1 change: its response to the first direction is the whole change
    assert s[1] < 1e-3 * s[0]
    assert torch.allclose((delta @ v[:, 0]).norm(), s[0], rtol=1e-4)


def test_sonar_listens_only_where_the_change_is(tiny_pair):
    pos = [f"What is {a} + {a}? Be brief." for a in range(2, 8)]
    neg = [f"Name the capital of {c}." for c in ("France", "Spain", "Italy", "Chile", "Peru", "Japan")]
    res = sonar(tiny_pair, pos, neg)
    assert set(res.sigma) == {2} and res.best_layer == 2 and res.best_score is not None
    assert set(res.null_sigma) == {2} and "control, random directions" in res.summary[1]
    assert set(res.scores[2]) == {f"{m} {s}" for m in ("mlp.up_proj", "mlp.down_proj") for s in ("v0", "v1", "v2", "v3", "response")}
    # identical sets never separate
    same = sonar(tiny_pair, pos, pos)
    assert same.best_sigma == 0.0


def test_sonar_along_a_given_direction_and_direction_files(tiny_pair, tmp_path):
    from dormant.llm.engine.prompts import encode
    from dormant.llm.instruments.hooks import collect

    pos = [f"What is {a} + {a}? Be brief." for a in range(2, 8)]
    neg = [f"Name the capital of {c}." for c in ("France", "Spain", "Italy", "Chile", "Peru", "Japan")]
    tiny_pair.ft()
    ids = encode(tiny_pair.tokenizer, pos + neg)
    acts = collect(tiny_pair.model, ids, ["resid:1"], reduce="mean")["resid:1"]
    v = torch.stack(acts[:6]).mean(0) - torch.stack(acts[6:]).mean(0)
    np.save(tmp_path / "v.npy", v.numpy())
    got = load_direction(tmp_path / "v.npy", 4)
    assert set(got) == {0, 1, 2, 3} and torch.allclose(got[1], v)
    res = sonar(tiny_pair, pos, neg, SonarConfig(direction=str(tmp_path / "v.npy")))
    assert set(res.sigma) == {0, 1, 2, 3} and res.direction.endswith("v.npy")
    assert res.sigma[1] > 1.0
    with pytest.raises(DormantError):
        load_direction(tmp_path / "missing.npy", 4)
