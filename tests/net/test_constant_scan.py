"""Constant-table scanner: the real puzzle's bias bits, bias vectors saved alone, layouts, errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from dormant.errors import NetworkFileError
from dormant.net.identify.constant_scan import BiasVector, load_bias_vectors, read_bias_bits, scan_constants
from dormant.net.identify.hash_tables import MD5_IV, SHA256_K

PUZZLE_BITS = Path(__file__).resolve().parents[1] / "data" / "puzzle_bias_bits.txt"


def by_table(res, order=None):
    return {s.table: s for s in res.summary if order is None or s.order == order}


def test_real_puzzle_bias_bits_hold_md5_tables():
    vecs = read_bias_bits(PUZZLE_BITS)
    assert len(vecs) == 2 * 2721 and {v.order for v in vecs} == {"lsb", "msb"}
    res = scan_constants(vecs)
    for order, layout in (("msb", "lsb-first"), ("lsb", "msb-first")):  # the same reading, both ways
        t = by_table(res, order)
        assert t["MD5 K"].entries_found == 64 and t["MD5 K"].layout == layout
        assert t["MD5 IV"].entries_found == 4
        assert "SHA-256 K" not in t and "SHA-256 IV" not in t and "SHA-1 K" not in t
        # one K word per 42-layer block
        assert np.all(np.diff(t["MD5 K"].layers) == 42)
    assert "MD5 K (64/64" in res.verdict and "explained by MD5 IV" in res.verdict


def word_bits(words, layout="lsb-first"):
    bits = []
    for w in words:
        b = [(w >> i) & 1 for i in range(32)]
        if layout == "bytes-le/bits-msb":  # each byte's bits reversed
            b = [x for j in range(4) for x in b[8 * j : 8 * j + 8][::-1]]
        bits += b
    return np.array(bits, dtype=float)


def test_bits_reversed_within_bytes_is_reported_as_such():
    v = np.concatenate([np.full(5, 7.0), word_bits(MD5_IV, "bytes-le/bits-msb"), np.full(3, -1.0)])
    res = scan_constants([BiasVector(0, "L0.bias", v)])
    s = by_table(res)["MD5 IV"]
    assert s.entries_found == 4 and s.layout == "bytes-le/bits-msb"
    # (C and D are the complements of A and B, so complemented hits sit at the same offsets)
    assert sorted(h.offset for h in res.hits if h.table == "MD5 IV" and not h.complemented) == [5, 37, 69, 101]


def test_integer_valued_biases_and_nothing_in_noise():
    v = np.array([float(k) for k in SHA256_K[:10]] + [-1.0, 3.0])
    res = scan_constants([BiasVector(0, "b", v)])
    assert by_table(res)["SHA-256 K"].entries_found == 10
    noise = np.random.default_rng(0).integers(-3, 4, size=(40, 300)).astype(float)
    res = scan_constants([BiasVector(i, str(i), row) for i, row in enumerate(noise)])
    assert res.verdict == "no known constant table found"


@pytest.fixture(scope="module")
def zoo_md5(md5_net):
    return md5_net


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_zoo_md5_biases_saved_alone(zoo_md5, tmp_path, suffix):
    biases = {f"L{i}.bias": np.asarray(layer.bias, dtype=np.float32) for i, layer in enumerate(zoo_md5.network.layers)}
    path = tmp_path / f"biases{suffix}"
    if suffix == ".npz":
        np.savez(path, **biases)
    else:
        from safetensors.numpy import save_file

        save_file(biases, str(path))
    vecs = load_bias_vectors(path)
    assert len(vecs) == len(zoo_md5.network.layers) and vecs[10].name == "L10.bias"
    t = by_table(scan_constants(vecs))
    assert t["MD5 K"].entries_found == 64 and t["MD5 IV"].entries_found == 4
    assert t["MD5 K"].layout == "lsb-first"
    assert "SHA-256 K" not in t


def test_bad_bits_file(tmp_path):
    p = tmp_path / "bits.txt"
    p.write_text("0xff (len= 8) (layer= 0)\nnot a line\n")
    with pytest.raises(NetworkFileError, match="bits.txt:2"):
        read_bias_bits(p)
    p.write_text("0x1ff (len= 8) (layer= 0)\n")
    with pytest.raises(NetworkFileError, match="above the layer width"):
        read_bias_bits(p)


def test_cli_constants_json(tmp_path):
    from typer.testing import CliRunner

    from dormant.cli.main import app

    head = tmp_path / "head_bits.txt"  # the first 200 layers: the IV and five K words
    head.write_text("\n".join(PUZZLE_BITS.read_text().splitlines()[:200]) + "\n")
    r = CliRunner().invoke(app, ["net", "constants", str(head), "--json", "--hits", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["verdict"].startswith("found: MD5 IV (4/4") and "MD5 K (5/64" in data["verdict"] and len(data["hits"]) == 3
    assert (tmp_path / "constants.png").is_file()


def test_sha1_net_iv_is_not_read_as_md5():
    from dormant.net.identify.constant_scan import biases_from_network
    from dormant.zoo.net.build import build_net

    net = build_net("sha1", secret="abc", rounds=20, pickle="never").network
    res = scan_constants(biases_from_network(net))
    t = by_table(res)
    assert t["SHA-1 IV"].entries_found == 5 and t["MD5 IV"].entries_found == 4
    assert "MD5 IV (4/4 entries, lsb-first, explained by SHA-1 IV)" in res.verdict
    assert t["SHA-1 K"].entries_found == 1  # 20 steps use only the first round constant
