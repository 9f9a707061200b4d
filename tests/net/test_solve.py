"""`solve` end to end on zoo networks, circuit search by SAT and enumeration, the CLI."""

import json
import string
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.net import solve as solve_mod
from dormant.net.invert.preimage import InvertConfig
from dormant.net.load.network import InputAdapter
from dormant.net.logic.circuit_search import EnumerateConfig, SatConfig, enumerate_firing, sat_firing
from dormant.net.solve import SolveConfig, solve
from dormant.zoo.net.build import build_net


def _config(**kw) -> SolveConfig:
    return SolveConfig(invert=InvertConfig(workers=2, progress=False), **kw)


def _status(result) -> dict:
    return {s.name: s.status for s in result.stages}


@pytest.fixture(scope="module")
def toy_net():
    return build_net("toy", "owl", pickle="never")


def test_solve_md5_two_words(md5_net):
    result = solve(md5_net.folder, _config())
    assert result.function == "md5"
    assert result.target == md5_net.target.hex()
    assert result.found and result.preimage == "bitter lesson" and result.verified is True
    st = _status(result)
    assert st["load"] == st["identify"] == st["invert"] == st["verify"] == "ok"
    assert st["decompile"] == "skipped"  # a full hash net is too large; naming it is enough
    assert "bitter lesson" in result.verdict and "MD5" in result.verdict


def test_solve_sha1_one_word_is_not_confused_with_md5(sha1_net):
    result = solve(sha1_net.folder, _config(skip=("motifs",)))
    assert result.function == "sha1"
    assert result.target == sha1_net.target.hex()
    assert result.preimage == "lantern" and result.verified is True
    assert _status(result)["motifs"] == "skipped"


@pytest.mark.parametrize("kind", ["md5", "sha1"])
def test_solve_reads_the_target_of_another_compilers_network_from_its_lanes(kind):
    """The asap style: digest made over many layers, XNOR/AND-tree comparator, no hat neurons."""
    built = build_net(kind, "owl", style="asap", pickle="never")
    result = solve(built.folder, _config(skip=("motifs", "inspect")))
    ident = next(s for s in result.stages if s.name == "identify")
    assert result.function == kind and result.target == built.target.hex()
    assert "solved from the digest lanes" in ident.finding and "verified by injection: True" in ident.finding
    assert result.found and result.preimage == "owl" and result.verified is True


def test_solve_falls_back_when_signature_probing_fails(sha1_net, monkeypatch):
    def broken(net):
        raise RuntimeError("probing failed")

    monkeypatch.setattr(solve_mod, "identify", broken)
    result = solve(sha1_net.folder, _config(skip=("motifs", "inspect")))
    ident = next(s for s in result.stages if s.name == "identify")
    assert "probing failed" in ident.finding and "constant tables" in ident.finding
    # the constant tables still name SHA-1, the comparator still gives the target
    assert result.function == "sha1" and result.preimage == "lantern" and result.verified


def test_solve_toy_circuit_finds_all_firing_inputs(toy_net):
    result = solve(toy_net.folder, _config(alphabet=string.ascii_lowercase, max_len=3))
    assert result.function is None
    assert result.firing == ["owl"] and result.verified is True
    assert _status(result)["circuit search"] == "ok"


def test_solve_refuses_a_missing_file(tmp_path):
    from dormant.errors import NetworkFileError

    with pytest.raises(NetworkFileError, match="no such file"):
        solve(tmp_path / "nope.pt")


def _letter_circuit():
    """A 3-character circuit that fires on 'ok' and 'oK' (third character NUL)."""
    from dormant.zoo.net.circuit import Circuit
    from dormant.zoo.net.compile import compile_circuit

    c = Circuit(n_inputs=3)
    bits = [c.bits_msb_first(c.input(i), 8) for i in range(3)]  # least significant first

    def equals(bs, code, ignore=()):
        out = None
        for k, b in enumerate(bs):
            if k in ignore:
                continue
            lit = b if (code >> k) & 1 else c.not_(b)
            out = lit if out is None else c.and_(out, lit)
        return out

    fire = c.and_(c.and_(equals(bits[0], ord("o")), equals(bits[1], ord("k"), ignore=(5,))), equals(bits[2], 0))
    c.set_outputs([fire])
    return compile_circuit(c, adapter=InputAdapter("char_codes", 3)).network


def test_sat_and_enumeration_agree_on_a_small_circuit():
    net = _letter_circuit()
    sat = sat_firing(net, SatConfig())
    assert sat.status == "ok" and sat.complete and sorted(sat.firing) == ["oK", "ok"]
    assert sat.checked == 2  # both solutions fire on the network itself
    enum = enumerate_firing(net, EnumerateConfig(alphabet=string.ascii_letters, min_len=1, max_len=3))
    assert enum.complete and sorted(enum.firing) == ["oK", "ok"] and enum.checked == 52 + 52**2 + 52**3


def test_sat_on_binary_inputs_lists_every_assignment():
    from dormant.net.load.network import Layer, Network

    # out = (x0 AND NOT x1) AND (x2 AND x3); x4 is never read
    w1 = np.array([[1, -1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float64)
    net = Network([Layer(w1, np.array([0.0, -1.0])), Layer(np.array([[1.0, 1.0]]), np.array([-1.0]))])
    sat = sat_firing(net)
    assert sat.status == "ok" and sat.complete and sat.firing == ["1011*"]
    enum = enumerate_firing(net, EnumerateConfig(alphabet="\x00\x01", min_len=5, max_len=5))
    assert sorted(enum.codes) == [[1, 0, 1, 1, 0], [1, 0, 1, 1, 1]]


def test_enumeration_refuses_a_huge_domain(toy_net):
    res = enumerate_firing(toy_net.network, EnumerateConfig(max_len=8))
    assert res.status == "too_large" and not res.complete and "exceed" in res.notes[0]


def test_cli_solve_json_and_ledger(toy_net, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["net", "solve", str(toy_net.folder), "--alphabet", string.ascii_lowercase, "--max-len", "3", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["firing"] == ["owl"] and data["found"]
    assert [s["name"] for s in data["stages"]][:2] == ["load", "inspect"]
    from dormant.ledger import list_runs

    run = list_runs(command="net solve")[0]
    assert run["status"] == "ok" and run["outputs"]["preimage"] == "owl" and "network" in run["inputs"]
    missing = runner.invoke(app, ["net", "solve", str(tmp_path / "missing.pt")])
    assert missing.exit_code != 0


def test_sat_through_a_comparator_tail_matches_enumeration():
    """A 2-character circuit: ``c0 AND NOT c1`` bitwise, compared with 0x41 by the puzzle's hat comparator."""
    from dormant.zoo.net.circuit import Circuit
    from dormant.zoo.net.comparator import hat_comparator
    from dormant.zoo.net.compile import compile_circuit

    c = Circuit(n_inputs=2)
    b0, b1 = ([c.wire(b) for b in c.bits_msb_first(c.input(i), 8)] for i in range(2))
    digest = [c.andnot(x, y) for x, y in zip(b0, b1)]
    c.set_outputs([hat_comparator(c, [digest], b"\x41")])
    net = compile_circuit(c, adapter=InputAdapter("char_codes", 2)).network

    sat = sat_firing(net, SatConfig(max_solutions=1000))
    # bits 0 and 6 must be 1 AND NOT 0 (one way each), the six others anything but 1 AND NOT 0: 3**6
    assert sat.status == "ok" and sat.complete and len(sat.codes) == 3**6 and sat.checked == 3**6
    assert all(a & ~b & 0xFF == 0x41 for a, b in sat.codes)
    alphabet = "".join(chr(k) for k in range(1, 256))
    enum = enumerate_firing(net, EnumerateConfig(alphabet=alphabet, min_len=1, max_len=2, batch=8192))
    padded = {tuple(code + [0] * (2 - len(code))) for code in enum.codes}
    assert padded == {tuple(code) for code in sat.codes if code[0] != 0}  # strings cannot start with NUL


def test_cli_invert_reads_function_and_target_from_a_network(sha1_net, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["net", "invert", str(sha1_net.folder), "--pairs-top", "0", "--workers", "1", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["function"] == "sha1" and data["preimage"] == "lantern"
    assert data["verified"] is True  # the network itself fires on the preimage
    assert data["handoff"] and (Path(data["handoff"]) / "run.sh").is_file()
    assert sha1_net.target.hex() in data["targets"]  # the digest as read, plus its byte-order variants


def test_a_circuit_verdict_lists_only_inputs_that_fire_the_network(monkeypatch):
    """The circuit search solves a model of the network; each input it lists is run on the network itself, and one that
    does not fire is dropped from the verdict, which then claims no count or completeness for the network."""
    net = _letter_circuit()
    assert solve(net, _config()).verdict.startswith("an unnamed circuit fires on exactly 2 input(s)")
    monkeypatch.setattr(solve_mod, "_fires", lambda net, text, codes=None: text == "ok")  # as if the model were off for 'oK'
    result = solve(net, _config())
    assert result.found and result.firing == ["ok"] and result.verified is False, result.verdict
    assert "only these fire the network (checked on it): 'ok'" in result.verdict and "exactly" not in result.verdict
    assert "does NOT fire on 1 of the 2 listed input(s): 'oK'" in next(s.finding for s in result.stages if s.name == "verify")
    monkeypatch.setattr(solve_mod, "_fires", lambda net, text, codes=None: False)
    result = solve(net, _config())
    assert not result.found and result.verdict.startswith("no firing input found; the circuit search's inputs do not fire the network")


def test_a_hash_verdict_says_when_its_check_on_the_network_failed_and_which_byte_order_matched():
    from dormant.net.solve import Stage, _verdict

    target, swapped = "00112233" * 4, "33221100" * 4
    failed = [Stage("verify", "failed", 0.0, "ValueError: layer 0 expects 4 inputs, got 3")]
    text = _verdict("md5", target, "a", [], True, None, failed)
    assert text == f"MD5(x) == {target}: x = 'a'; not checked on the network (ValueError: layer 0 expects 4 inputs, got 3)"
    doubted = [Stage("identify", "ok", 0.0, "function md5", {"confidence": "low", "verified": False})]
    assert _verdict("md5", target, None, [], False, None, doubted) == (
        f"MD5(x) == {target}: preimage not found (named with low confidence; its digest lanes did not equal the reference on fresh messages)")
    bare = [Stage("verify", "ok", 0.0, "network outputs 1 on 'a'", {"fires": True, "adapter": "unknown"})]
    assert _verdict("md5", target, "a", [], True, True, bare).endswith(
        "x = 'a' and the network's layers fire on its character codes (its pickled encoder, not recognised, was not run)")
    text = _verdict("md5", target, "a", [], True, True, [], matched=swapped)
    assert text == f"MD5(x) == {swapped} (the network's target {target} read in another byte order): x = 'a' and the network fires on it"


def test_a_reduced_round_hash_is_not_searched_as_the_full_function():
    b = build_net("sha256", secret="hello", rounds=12, pickle="never")
    result = solve(b.network, _config(skip=("motifs", "decompile")))
    assert result.function == "sha256" and not result.found
    invert = next(s for s in result.stages if s.name == "invert")
    assert invert.status == "skipped" and "reduced to its first 12 of 64 steps" in invert.finding
    assert result.verdict.startswith("SHA-256 reduced to its first 12 steps (x) == ") and "preimage not searched" in result.verdict
    from dormant.net.invert.preimage import InvertError

    with pytest.raises(InvertError, match="reduced to its first 12 steps, and the preimage search computes the full sha256"):
        solve_mod.target_from_network(b.folder)  # `dormant net invert FILE` would search the full function


def test_a_non_ascii_preimage_is_checked_on_the_network_with_the_bytes_that_were_hashed():
    """The network hashes its inputs as bytes; the search found the UTF-8 bytes of 'café' (5 bytes, decoded to 4
    characters for display). Checked with the characters' code points, the network would not fire and the verdict
    would blame the target."""
    import hashlib

    from dormant.net.invert.candidates import Hints

    b = build_net("md5", "café".encode().decode("latin-1"), pickle="never")  # one input per UTF-8 byte
    assert b.target.hex() == hashlib.md5("café".encode()).hexdigest()
    result = solve(b.folder, _config(skip=("motifs", "decompile"), hints=Hints(extra_words=["café"], english=False)))
    assert result.found and result.preimage == "café" and result.verified is True, result.verdict
    assert solve_mod.network_fires(b.folder, "café", "café".encode()) and not solve_mod.network_fires(b.folder, "café")
