"""The network zoo: gates, adders, hash circuits and built nets, checked against hashlib."""

from __future__ import annotations

import hashlib
import json
import random
import string

import numpy as np
import pytest

from dormant.net.identify.reference_hashes import TRACERS
from dormant.net.load.network import InputAdapter
from dormant.net.logic.simulate import forward, run_text
from dormant.zoo.net import ZooNetError, build_net
from dormant.zoo.net import reference
from dormant.zoo.net.circuit import Circuit
from dormant.zoo.net.compile import compile_circuit, gate_census
from dormant.zoo.net.hashes import CIRCUITS

ALPHABET = string.ascii_letters + string.digits + " .,!-"


def random_strings(n: int, max_len: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len))) for _ in range(n)]


def run(built, texts):
    """Outputs and digest-lane bits of a built net on strings."""
    net = built.network
    x = np.stack([net.adapter.encode(t) for t in texts])
    out, acts = forward(net, x, record=[built.digest_layer])
    return out[:, 0], acts[built.digest_layer][:, built.digest_lanes]


def as_bits(digest: bytes) -> np.ndarray:
    return np.array([(byte >> k) & 1 for byte in digest for k in range(8)], dtype=np.float64)


def eval_circuit(c: Circuit, rows) -> np.ndarray:
    res = compile_circuit(c)
    y, _ = forward(res.network, np.asarray(rows, dtype=np.float64))
    return y


# ----------------------------------------------------------------------------- builder
def test_bit_gates_truth_tables():
    c = Circuit(n_inputs=3)
    a, b, s = c.input(0), c.input(1), c.input(2)
    gates = {
        "and": c.and_(a, b), "or": c.or_(a, b), "xor": c.xor(a, b), "nor": c.nor(a, b), "not": c.not_(a),
        "andnot": c.andnot(a, b), "parity3": c.parity([a, b, s]), "maj": c.majority([a, b, s]), "mux": c.mux(s, a, b),
    }
    full_sum, full_carry = c.full_add(a, b, s)
    outs = [c.wire(e) for e in list(gates.values()) + [full_sum, full_carry]]
    c.set_outputs(outs)
    rows = [[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    got = eval_circuit(c, rows)
    for (x, y, z), r in zip(rows, got):
        expect = [x & y, x | y, x ^ y, 1 - (x | y), 1 - x, x & (1 - y), x ^ y ^ z, int(x + y + z >= 2), x if z else y, (x + y + z) % 2, (x + y + z) // 2]
        assert r.tolist() == expect, (x, y, z)


@pytest.mark.parametrize("adder", ["ripple", "kogge-stone"])
def test_adders_are_exact_modulo_2_to_the_n(adder):
    n = 16
    c = Circuit(n_inputs=2 * n)
    a = [c.input(i) for i in range(n)]
    b = [c.input(n + i) for i in range(n)]
    k = c.const_word(0xBEEF, width=n)
    total = c.wire_word(c.add(a, b, k, adder=adder))
    c.set_outputs(total)
    rng = np.random.default_rng(0)
    va, vb = rng.integers(0, 2**n, 64), rng.integers(0, 2**n, 64)
    va[:3], vb[:3] = [0, 2**n - 1, 2**n - 1], [0, 1, 2**n - 1]
    rows = [[(x >> i) & 1 for i in range(n)] + [(y >> i) & 1 for i in range(n)] for x, y in zip(va, vb)]
    got = eval_circuit(c, rows)
    for x, y, r in zip(va, vb, got):
        assert int(sum(int(v) << i for i, v in enumerate(r))) == (int(x) + int(y) + 0xBEEF) % 2**n


def test_kogge_stone_is_shallow_and_ripple_is_deep():
    depths = {}
    for adder in ("ripple", "kogge-stone"):
        c = Circuit(n_inputs=64)
        s = c.wire_word(c.add([c.input(i) for i in range(32)], [c.input(32 + i) for i in range(32)], adder=adder))
        c.set_outputs(s)
        depths[adder] = len(compile_circuit(c).network.layers)
    assert depths["kogge-stone"] <= 8 < 30 <= depths["ripple"]


def test_threshold_bit_extraction_and_rotations():
    c = Circuit(n_inputs=1)
    bits = c.bits_msb_first(c.input(0), 8)
    c.set_outputs([c.wire(b) for b in c.rotl(bits, 3)])
    got = eval_circuit(c, [[v] for v in range(256)])
    for v, r in enumerate(got):
        rot = ((v << 3) | (v >> 5)) & 0xFF
        assert r.tolist() == [(rot >> i) & 1 for i in range(8)]


# ----------------------------------------------------------------------------- reference
def test_reference_equals_hashlib_at_full_rounds():
    for text in random_strings(40, 55, seed=1) + ["", "a" * 55, "bitter lesson"]:
        m = text.encode()
        assert reference.digest("md5", m) == hashlib.md5(m).digest()
        assert reference.digest("sha1", m) == hashlib.sha1(m).digest()
        assert reference.digest("sha256", m) == hashlib.sha256(m).digest()
    assert reference.digest("md5", b"bitter lesson").hex() == "c7ef65233c40aa32c2b9ace37595fa7c"


# ----------------------------------------------------------------------------- built nets
@pytest.fixture(scope="module")
def toy_net(tmp_path_factory):
    return build_net("toy", "lantern", out=tmp_path_factory.mktemp("toy"))


@pytest.mark.parametrize("fixture, hasher, secret", [("md5_net", hashlib.md5, "bitter lesson"), ("sha1_net", hashlib.sha1, "lantern")])
def test_full_nets_accept_only_the_secret_and_compute_the_real_hash(request, fixture, hasher, secret):
    built = request.getfixturevalue(fixture)
    assert built.target == hasher(secret.encode()).digest()
    near = [secret[:i] + ("x" if secret[i] != "x" else "y") + secret[i + 1 :] for i in range(len(secret))]
    near += [secret + " ", secret[:-1], secret.upper(), " " + secret]
    texts = [secret] + near + random_strings(40, 31, seed=7) + random_strings(8, 55, seed=8) + ["", "a" * 55]
    out, bits = run(built, texts)
    assert out.tolist() == [1.0] + [0.0] * (len(texts) - 1)
    for text, b in zip(texts, bits):
        assert np.array_equal(b, as_bits(hasher(text.encode()).digest())), text


def test_md5_net_is_exact_for_every_length_and_latin1(md5_net):
    texts = [("ab" * 28)[:n] for n in range(56)] + ["naïve café", "\xff" * 55, "Zürich"]
    out, bits = run(md5_net, texts)
    assert not out.any()
    for text, b in zip(texts, bits):
        assert np.array_equal(b, as_bits(hashlib.md5(text.encode("latin-1")).digest())), len(text)


@pytest.mark.parametrize("fixture, kind, labels", [("md5_net", "md5", {"sum": "T", "new": "new"}), ("sha1_net", "sha1", {"new": "new"})])
def test_tapped_state_words_equal_the_reference_trace(request, fixture, kind, labels):
    built = request.getfixturevalue(fixture)
    words = built.manifest["words"]
    texts = ["bitter lesson", "lantern"] + random_strings(6, 40, seed=11)
    layers = sorted({layer for bits in words.values() for layer, _ in bits})
    x = np.stack([built.network.adapter.encode(t) for t in texts])
    _, acts = forward(built.network, x, record=layers)
    trace = TRACERS[kind]([t.encode() for t in texts])
    steps = trace.words["new"].shape[0]
    for j, text in enumerate(texts):
        for step in (0, 1, 17, 40, steps - 1):
            for label, ref_label in labels.items():
                value = int(trace.words[ref_label][step, j])
                got = [acts[layer][j, lane] for layer, lane in words[f"step{step}.{label}"]]
                assert got == [(value >> k) & 1 for k in range(32)], (text, step, label)


def test_md5_net_follows_the_puzzle_conventions(md5_net):
    net, m = md5_net.network, md5_net.manifest
    assert net.widths[0] == 55 and net.widths[-1] == 1
    assert m["layers"] == len(net.layers) and 1000 < m["layers"] < 3000
    assert net.adapter.kind == "char_codes" and net.adapter.length == 55
    weights = np.concatenate([layer.weight.data for layer in net.layers])
    mags = np.unique(np.abs(weights))
    assert np.all(mags == 2.0 ** np.round(np.log2(mags))), mags  # every weight is +-2^k
    biases = np.concatenate([layer.bias for layer in net.layers])
    assert np.array_equal(biases, np.round(biases))
    # comparator: 16 bytes x 3 hats reading 8 bits with weights 1..128, then +1/-2/+1 and bias -15
    hat, last = net.layers[-2], net.layers[-1]
    assert hat.out_features == 48 and last.weight.toarray().tolist() == [[1.0, -2.0, 1.0] * 16]
    assert last.bias.tolist() == [-15.0]
    assert sorted(hat.weight.getrow(0).data.tolist()) == [1, 2, 4, 8, 16, 32, 64, 128]
    t = -hat.bias.reshape(16, 3)
    assert bytes(int(v) for v in t[:, 1]) == md5_net.target and np.array_equal(t[:, 0] + 1, t[:, 1])
    # the MD5 K table and IV appear as 32 adjacent constant lanes (no inputs, 0/1 biases)
    found = set()
    for layer in net.layers:
        const = np.diff(layer.weight.indptr) == 0
        bits = layer.bias
        for start in range(0, len(bits) - 31):
            if const[start : start + 32].all():
                found.add(sum(int(bits[start + i]) << i for i in range(32)))
    from dormant.net.identify.hash_tables import MD5_IV, MD5_K

    assert set(MD5_K) <= found and set(MD5_IV) <= found
    census = gate_census(net)
    assert census["wire"] > 0.5 * sum(census.values()) and census["and"] > 0 and census["and-not"] > 0


def test_reduced_rounds_match_the_reference():
    built = build_net("md5", "bitter lesson", rounds=6, pickle="never")
    assert built.rounds == 6 and built.manifest["layers"] < 200
    texts = ["bitter lesson"] + random_strings(20, 55, seed=3)
    out, bits = run(built, texts)
    assert out[0] == 1.0 and not out[1:].any()
    for text, b in zip(texts, bits):
        assert np.array_equal(b, as_bits(reference.digest("md5", text.encode(), 6)))
    assert reference.digest("md5", b"x", 6) != hashlib.md5(b"x").digest()


def test_length_bug_reproduces_the_puzzle_padding():
    built = build_net("md5", "bitter lesson", rounds=16, pickle="never", length_bug=True)
    assert built.length_bug and built.manifest["input"]["exact_lengths"] == "0-31"
    short, long = random_strings(10, 31, seed=12), [("xy" * 28)[:n] for n in range(32, 56)]
    out, bits = run(built, ["bitter lesson"] + short + long)
    assert out[0] == 1.0 and not out[1:].any()
    for text, b in zip(short, bits[1 : 1 + len(short)]):
        assert np.array_equal(b, as_bits(reference.digest("md5", text.encode(), 16)))  # the real (16-step) MD5
    for text, b in zip(long, bits[1 + len(short) :]):
        assert np.array_equal(b, as_bits(reference.digest("md5", text.encode(), 16, length_bug=True)))
        assert not np.array_equal(b, as_bits(reference.digest("md5", text.encode(), 16)))
    assert build_net("md5", "bitter lesson", rounds=16, pickle="never").folder != built.folder
    with pytest.raises(ZooNetError, match="no length field"):
        build_net("toy", "abc", length_bug=True)


def test_sha256_reduced_net_matches_the_reference():
    built = build_net("sha256", "lantern", rounds=12, pickle="never")
    texts = ["lantern", "lanterns", "Lantern"] + random_strings(10, 55, seed=5)
    out, bits = run(built, texts)
    assert out.tolist() == [1.0] + [0.0] * (len(texts) - 1)
    for text, b in zip(texts, bits):
        assert np.array_equal(b, as_bits(reference.digest("sha256", text.encode(), 12)))


def test_toy_net_is_small_and_its_pickle_is_a_plain_sequential(toy_net):
    import torch

    assert len(toy_net.network.layers) < 40 and toy_net.network.widths[0] == 8
    texts = ["lantern", "lanterN", "lanter", "", "abcdefgh"] + random_strings(20, 8, seed=9)
    out, bits = run(toy_net, texts)
    for text, y, b in zip(texts, out, bits):
        d = reference.toy(text.encode())
        assert np.array_equal(b, as_bits(d)) and y == float(d == toy_net.target)
    assert out[0] == 1.0
    seq = torch.load(toy_net.pickle_path, weights_only=False)
    assert isinstance(seq, torch.nn.Sequential) and seq.dormant_adapter == {"kind": "char_codes", "length": 8}
    assert len(seq) == 2 * len(toy_net.network.layers)
    x = torch.tensor(np.stack([toy_net.network.adapter.encode(t) for t in texts]), dtype=torch.float32)
    with torch.no_grad():
        assert np.array_equal(seq(x).numpy()[:, 0], out)


def test_manifest_cache_and_folder_format(toy_net, tmp_path, monkeypatch):
    from dormant.net.load.spec_format import load_network_folder

    m = json.loads((toy_net.folder / "manifest.json").read_text())
    assert m["function"] == "toy" and m["secret"] == "lantern" and m["target"] == toy_net.target.hex()
    assert m["digest"]["layer"] == len(toy_net.network.layers) - 3 and len(m["digest"]["lanes"]) == 32
    assert m["verified"]["hits"] == 1 and m["verified"]["near_misses"] >= 7
    again = load_network_folder(toy_net.folder)
    assert again.widths == toy_net.network.widths and again.adapter.length == 8
    monkeypatch.setenv("DORMANT_CACHE", str(tmp_path))
    first = build_net("toy", "owl", pickle="never")
    assert first.folder.parent == tmp_path / "netzoo" and first.pickle_path is None
    stamp = (first.folder / "layers.safetensors").stat().st_mtime_ns
    second = build_net("toy", "owl")  # cached: not rebuilt, pickle added because auto allows it
    assert (second.folder / "layers.safetensors").stat().st_mtime_ns == stamp
    assert second.pickle_path is not None and second.pickle_path.is_file()
    assert build_net("toy", "owls").folder != first.folder


def test_bad_arguments_raise_specific_errors():
    with pytest.raises(ZooNetError, match="at most 55"):
        build_net("md5", "x" * 56)
    with pytest.raises(ZooNetError, match="no NUL"):
        build_net("md5", "a\x00b")
    with pytest.raises(ZooNetError, match="unknown zoo function"):
        build_net("crc99", "abc")
    with pytest.raises(ZooNetError, match="at most 8"):
        build_net("toy", "too long!")
    with pytest.raises(ZooNetError, match="rounds must be 1..64"):
        build_net("md5", "abc", rounds=65, out=None)


def test_every_circuit_compiles_with_one_output():
    for kind, fn in CIRCUITS.items():
        target = reference.digest(kind, b"ab", 2 if kind != "toy" else None)
        c = fn(target, 2 if kind != "toy" else None)
        res = compile_circuit(c, adapter=InputAdapter("char_codes", c.n_inputs))
        assert res.network.widths[-1] == 1 and len(c.taps["digest"]) == 8 * reference.DIGEST_BYTES[kind]


def test_cli_builds_a_net_and_prints_json(tmp_path):
    from typer.testing import CliRunner

    from dormant.cli.main import app
    from dormant.ledger import list_runs

    res = CliRunner().invoke(app, ["zoo", "net", "toy", "--secret", "owl", "--out", str(tmp_path / "n"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["target"] == reference.toy(b"owl").hex() and data["layers"] < 40
    assert (tmp_path / "n" / "model.pt").is_file() and (tmp_path / "n" / "widths.png").is_file()
    assert list_runs(command="zoo net")[0]["status"] == "ok"
    bad = CliRunner().invoke(app, ["zoo", "net", "md5", "--secret", "y" * 60, "--out", str(tmp_path / "b")])
    assert isinstance(bad.exception, ZooNetError)


@pytest.mark.parametrize("kind, rounds", [("md5", 8), ("sha1", 10)])
def test_asap_style_computes_the_hash_unlike_the_standard_style(kind, rounds):
    from dormant.net.identify.comparator import read_target

    asap = build_net(kind, "owl", rounds=rounds, style="asap", pickle="never")
    standard = build_net(kind, "owl", rounds=rounds, pickle="never")
    assert asap.style == "asap" and asap.target == standard.target and asap.manifest["verified"]["hits"] == 1
    out, _ = run_text(asap.network, ["owl", "owk", "", "lantern"])
    assert out[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    # digest bits made over many layers (gates as soon as ready), no layer holding them all
    assert asap.digest_layer is None and len({layer for layer, _ in asap.digest_places}) > 20
    assert asap.manifest["comparator"]["kind"] == "xnor-and-tree"
    assert len(asap.network.layers) != len(standard.network.layers)
    # the hat read-out that reads the standard style's target reads nothing useful here
    assert read_target(standard.network).hex == standard.target.hex()
    assert read_target(asap.network).hex != asap.target.hex()


def test_cli_builds_an_asap_style_net(tmp_path):
    from typer.testing import CliRunner

    from dormant.cli.main import app

    res = CliRunner().invoke(app, ["zoo", "net", "md5", "--secret", "owl", "--rounds", "4", "--style", "asap", "--out", str(tmp_path / "n"), "--pickle", "never", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["style"] == "asap"
    bad = CliRunner().invoke(app, ["zoo", "net", "md5", "--secret", "owl", "--style", "nope", "--out", str(tmp_path / "m")])
    assert bad.exit_code != 0


def test_fit_widths_stretches_and_pads_a_net_onto_a_profile():
    import scipy.sparse as sp
    from dormant.zoo.net.puzzle_layout import fit_widths

    net = build_net("toy", "owl", pickle="never").network
    w = net.widths
    # every compiled layer twice as wide, a copy layer after each: feasible, so matched exactly
    target = [w[0]] + [x for v in w[1:-1] for x in (2 * v, 2 * v + 3)] + [w[-1]]
    fitted, rep = fit_widths(net, target)
    assert fitted.widths == target and rep.over_layers == 0 and rep.copy_layers == len(w) - 2
    empty = sum(int(np.sum((np.diff(sp.csr_matrix(layer.weight).indptr) == 0) & (layer.bias == 0))) for layer in fitted.layers)
    assert rep.filler > 0 and empty >= rep.filler  # filler neurons read nothing and hold 0
    texts = ["owl", "owk", "", "lantern"]
    assert np.array_equal(run_text(fitted, texts)[0], run_text(net, texts)[0])
    # a profile narrower than some compiled layer: that layer is reported, the function kept
    narrow = [w[0]] + [min(w[1:-1])] * (len(target) - 2) + [w[-1]]
    fitted, rep = fit_widths(net, narrow)
    assert rep.over_layers >= 1 and all(width > want for _, width, want in rep.mismatches)
    assert np.array_equal(run_text(fitted, texts)[0], run_text(net, texts)[0])


def test_puzzle_layout_has_the_puzzles_widths_but_where_reported():
    from pathlib import Path

    from dormant.zoo.net.bias_pattern import compare_bias_pattern

    data = Path(__file__).parents[1] / "data"
    want = [int(x) for x in (data / "puzzle_widths.txt").read_text().strip().split(",")]
    built = build_net("md5", "owl", layout="puzzle", length_bug=True, pickle="never")
    got = built.network.widths
    lay = built.manifest["layout"]
    assert len(got) == len(want) == 2722 and got[0] == 55 and got[-1] == 1 and len(built.network.layers) == 2721
    over = {t + 1 for t, _, _ in lay["over"]}
    assert all(got[i] == want[i] for i in range(len(want)) if i not in over)
    assert all(got[i] > want[i] for i in over) and lay["layers_matching_width"] == 2721 - len(over)
    assert lay["layers_matching_width"] >= 2400  # the compact compiler's widest step layers exceed the puzzle's
    assert built.manifest["verified"]["hits"] == 1
    assert run_text(built.network, ["owl", "owk"])[0][:, 0].tolist() == [1.0, 0.0]
    match = compare_bias_pattern(built.network, data / "puzzle_bias_bits.txt")
    assert match.layers == 2721 and set(match.agree) == {"lsb", "msb"} and 0 < match.agree[match.best_order] <= 1
    with pytest.raises(ZooNetError, match="puzzle"):
        build_net("sha1", "owl", layout="puzzle", pickle="never")
