import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

from dormant.errors import DormantError
from dormant.llm.engine.prompts import encode
from dormant.llm.instruments.activations import ActivationsConfig, extract, parse_layers
from dormant.llm.instruments.hooks import collect

PROMPTS = ["What is 2 + 3?", "Name the capital of France. Please answer.", "hi", "Repeat the word cat three times."]


def test_parse_layers():
    assert parse_layers("0,2-3", 4) == (0, 2, 3) and parse_layers("-1", 4) == (3,) and parse_layers(None, 4) is None
    with pytest.raises(DormantError):
        parse_layers("7", 4)
    with pytest.raises(DormantError, match="end comes before the start; write 1-3"):
        parse_layers("3-1", 4)
    with pytest.raises(DormantError, match="bad layer list ''"):
        parse_layers("", 4)


def test_a_chunk_of_no_prompts_is_refused_before_writing(tiny_pair, tmp_path):
    with pytest.raises(DormantError, match="give --chunk 1 or more"):
        extract(tiny_pair, ["hello"], tmp_path / "a.safetensors", ActivationsConfig(chunk=0))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("reduce", ["all", "last"])
def test_extracted_rows_equal_the_activations_and_the_index_maps_them(tiny_pair, tmp_path, reduce):
    res = extract(tiny_pair, PROMPTS, tmp_path / "acts.safetensors", ActivationsConfig(layers=(1, 3), reduce=reduce, chunk=3, view="base"))
    index = json.loads((tmp_path / "acts.index.json").read_text())
    tiny_pair.base()
    ids = encode(tiny_pair.tokenizer, PROMPTS)
    want = collect(tiny_pair.model, ids, ["resid:1", "resid:3"], reduce=reduce)
    tiny_pair.ft()
    with safe_open(res.path, "pt") as f:
        assert sorted(f.keys()) == ["layer.1", "layer.3"] and f.metadata()["view"] == "base"
        for l in (1, 3):
            x = f.get_tensor(f"layer.{l}")
            assert x.shape == (sum(len(s) for s in ids) if reduce == "all" else len(ids), 32)
            for i, entry in enumerate(index["prompts"]):
                a, b = entry["rows"]
                assert entry["token_ids"] == ids[i]
                assert torch.allclose(x[a:b], want[f"resid:{l}"][i].reshape(-1, 32), atol=1e-6)


def test_extraction_memory_stays_far_below_the_array(tiny_pair_dirs, tmp_path):
    script = textwrap.dedent(f"""
        import json, resource, sys
        import torch
        torch.set_num_threads(1)
        from dormant.llm.engine.pair import ModelPair
        from dormant.llm.instruments.activations import ActivationsConfig, extract
        pair = ModelPair.load({str(tiny_pair_dirs['ft'])!r}, {str(tiny_pair_dirs['base'])!r})
        prompts = [f"Question {{i}}: what is {{i}} plus {{i + 1}}? Please answer with the number only, thank you." for i in range(3000)]
        extract(pair, prompts[:40], {str(tmp_path / 'warm.safetensors')!r}, ActivationsConfig(chunk=20))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        res = extract(pair, prompts, {str(tmp_path / 'big.safetensors')!r}, ActivationsConfig(chunk=20))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({{"growth": after - before, "bytes": res.bytes}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["bytes"] > 40e6  # the array: 3000 prompts x ~40 tokens x 4 layers x 32 floats
    assert got["growth"] < 0.1 * got["bytes"], got
