"""Identification: reference hashes vs hashlib, zoo MD5 / SHA-1 nets named, verified, target read."""

import hashlib
import json

import numpy as np
import pytest

from dormant.net.identify.reference_hashes import TRACERS, digest_bits, trace_md5
from dormant.net.identify.signature import IdentifyConfig, identify
from dormant.net.identify.wordlevel import kogge_stone_adders, recover_words


def test_reference_hashes_match_hashlib():
    rng = np.random.default_rng(0)
    msgs = [b"", b"abc", b"bitter lesson", bytes(range(1, 56))] + [bytes(rng.integers(0, 256, int(n)).astype(np.uint8)) for n in rng.integers(0, 56, 40)]
    for fn, ref in (("md5", hashlib.md5), ("sha1", hashlib.sha1), ("sha256", hashlib.sha256)):
        tr = TRACERS[fn](msgs)
        assert tr.digests == [ref(m).digest() for m in msgs], fn
    tr = trace_md5([b"bitter lesson"])
    assert tr.words["new"].shape == (64, 1) and tr.words["T"].shape == (64, 1)
    assert tr.digests[0].hex() == "c7ef65233c40aa32c2b9ace37595fa7c"
    bits = digest_bits(tr)[:, 0]
    assert np.packbits(bits, bitorder="little").tobytes() == tr.digests[0]
    with pytest.raises(ValueError, match="one block"):
        trace_md5([b"x" * 56])


@pytest.fixture(scope="module")
def zoo(md5_net, sha1_net):
    from dormant.zoo.net.build import build_net

    return {
        "md5": md5_net,
        "sha1": sha1_net,
        "toy": build_net("toy", secret="key12345", pickle="never"),
    }


@pytest.mark.parametrize("fn,secret", [("md5", b"bitter lesson"), ("sha1", b"lantern")])
def test_zoo_nets_are_named_verified_and_their_target_read(zoo, fn, secret):
    b = zoo[fn]
    ident = identify(b.network)
    assert ident.function == fn and ident.confidence == "high"
    best = {m.function: m for m in ident.matches}
    other = "sha1" if fn == "md5" else "md5"
    assert best[fn].steps_matched == best[fn].total_steps  # every step seen
    assert best[other].matched_words == 0  # SHA-1 is not mistaken for MD5 (shared IV) or back
    assert ident.verified and ident.verified_probes >= 32
    assert ident.digest_layer == b.digest_layer and ident.digest_lanes == b.digest_lanes
    digest = getattr(hashlib, fn)(secret).hexdigest()
    assert ident.target_hex == digest == b.target.hex()


def test_non_hash_net_gets_no_verdict(zoo):
    ident = identify(zoo["toy"].network, IdentifyConfig(max_length=8))
    assert ident.function is None and ident.confidence == "none" and not ident.verified


def test_word_level_recovery_on_md5(zoo):
    from dormant.net.identify.hash_tables import MD5_SHIFTS

    wl = recover_words(zoo["md5"].network, "md5")
    labels = {(lane.label, lane.step) for lane in wl.lanes}
    assert {("new", s) for s in range(64)} <= labels and {("T", s) for s in range(64)} <= labels
    rot = {r.a[1]: r.rotl for r in wl.rotations if r.a[0] == "T" and r.b == ("new", r.a[1] - 1)}
    assert len(rot) == 63 and all(rot[s] == MD5_SHIFTS[s] for s in rot)


def test_puzzle_widths_show_128_kogge_stone_adders():
    from pathlib import Path

    widths = [int(x) for x in (Path(__file__).resolve().parents[1] / "data" / "puzzle_widths.txt").read_text().split(",")]
    adders = kogge_stone_adders(widths)
    assert len(adders) == 128  # two per MD5 step
    assert adders[0].rises == [31, 30, 28, 24, 16]


def test_cli_identify_json(zoo, tmp_path):
    from typer.testing import CliRunner

    from dormant.cli.main import app

    r = CliRunner().invoke(app, ["net", "identify", str(zoo["sha1"].folder), "--json", "--out", str(tmp_path), "--probes", "96"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["function"] == "sha1" and data["verified"] and data["target_hex"] == hashlib.sha1(b"lantern").hexdigest()
    assert (tmp_path / "matches.png").is_file()
    assert data["words"]["rotations"]  # SHA-1's rotl 30 of b is read from the wiring
    assert set().union(*[set(v.values()) for v in data["words"]["rotations"].values()]) & {2, 30}
    r = CliRunner().invoke(app, ["net", "identify", str(zoo["md5"].folder), "--out", str(tmp_path)])
    assert r.exit_code == 0 and "function: md5" in r.stdout and "s = 12, 17, 22, 7" in " ".join(r.stdout.split())
    r = CliRunner().invoke(app, ["net", "identify", str(zoo["sha1"].folder), "--functions", "md4"])
    assert r.exit_code != 0 and "md4" in str(r.exception)


def test_reduced_round_sha256_is_named_with_its_step_count():
    from dormant.zoo.net.build import build_net
    from dormant.zoo.net.reference import digest

    b = build_net("sha256", secret="hello", rounds=12, pickle="never")
    ident = identify(b.network)
    assert ident.function == "sha256" and ident.rounds == 12
    assert ident.verified and ident.target_hex == digest("sha256", b"hello", 12).hex()
