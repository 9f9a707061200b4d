"""Preimage search end to end: masks, word lists, functions, workers, resume, CLI."""

import hashlib
import json

import pytest
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.net.invert.candidates import Hints, build_space
from dormant.net.invert.preimage import InvertConfig, InvertError, byte_order_variants, invert


def _hex(function: str, text: str) -> str:
    return hashlib.new(function, text.encode()).hexdigest()


@pytest.mark.parametrize(
    "function, secret, hints",
    [
        ("md5", "zq7", Hints(masks=["?l?l?d"])),
        ("sha1", "Kx9!", Hints(masks=["?u?l?d?s"])),
        ("sha256", "cab", Hints(charset="abc", min_len=1, max_len=4)),
        ("md5", "housewater", Hints(english_top=2000, pairs_top=400, variants_top=0)),
        ("sha256", "Music", Hints(english_top=3000, pairs=False)),
    ],
)
def test_invert_finds_known_secrets(function, secret, hints):
    result = invert(_hex(function, secret), function, hints, InvertConfig(workers=1, chunk_size=1 << 16, progress=False))
    assert result.found and result.preimage == secret and result.status == "found"
    assert hashlib.new(function, result.preimage.encode()).hexdigest() == result.hits[0].target


def test_invert_reports_exhaustion_and_user_words(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("alpha\nbravo\ncharlie\n")
    hints = Hints(word_files=[words], english=False, pairs_top=3, variants_top=3)
    space = build_space(hints)
    result = invert(_hex("md5", "not in the list"), "md5", hints, InvertConfig(workers=1, progress=False))
    assert not result.found and result.status == "exhausted" and result.candidates == space.size
    found = invert(_hex("md5", "Charlie_alpha"), "md5", hints, InvertConfig(workers=1, progress=False))
    assert found.preimage == "Charlie_alpha"


def test_parallel_workers_agree_with_one_worker():
    hints = Hints(masks=["?l?l?l"])
    config = dict(chunk_size=1000, progress=False, stop_on_hit=False)
    # every 3-letter string whose md5 starts like "sun"'s is only "sun": both runs see all chunks
    one = invert(_hex("md5", "sun"), "md5", hints, InvertConfig(workers=1, **config))
    two = invert(_hex("md5", "sun"), "md5", hints, InvertConfig(workers=2, **config))
    assert [h.preimage for h in one.hits] == [h.preimage for h in two.hits] == ["sun"]
    assert one.chunks_run == two.chunks_run == list(range(18))


def test_resume_skips_finished_chunks_and_finds_the_secret(tmp_path):
    ckpt = tmp_path / "state.jsonl"
    hints = Hints(masks=["?l?l?l"])
    target = _hex("sha1", "zzy")  # near the end of the space: found in the last chunk
    first = invert(target, "sha1", hints, InvertConfig(workers=2, chunk_size=1000, checkpoint=ckpt, max_chunks=5, progress=False))
    assert not first.found and first.status == "budget" and len(first.chunks_run) == 5
    second = invert(target, "sha1", hints, InvertConfig(workers=1, chunk_size=1000, checkpoint=ckpt, resume=True, progress=False))
    assert second.found and second.preimage == "zzy"
    assert second.chunks_resumed == 5 and not set(first.chunks_run) & set(second.chunks_run)
    assert sorted(first.chunks_run + second.chunks_run) == list(range(18))
    # a run cut mid-write leaves a partial last line: it is ignored, that chunk redone
    with ckpt.open("a") as f:
        f.write('{"chunk": 1')
    third = invert(target, "sha1", hints, InvertConfig(workers=1, chunk_size=1000, checkpoint=ckpt, resume=True, progress=False))
    assert third.found and third.chunks_run == []  # the recorded hit is returned without hashing
    # another search cannot reuse this state file
    with pytest.raises(InvertError, match="different search"):
        invert(_hex("sha1", "abc"), "sha1", hints, InvertConfig(workers=1, chunk_size=1000, checkpoint=ckpt, resume=True, progress=False))


def test_byte_order_variants_find_a_reversed_target():
    digest = hashlib.md5(b"dog").digest()
    swapped = byte_order_variants(digest)[1]
    result = invert([swapped] + byte_order_variants(swapped)[1:], "md5", Hints(masks=["?l?l?l"]), InvertConfig(workers=1, progress=False))
    assert result.preimage == "dog" and result.hits[0].target == digest.hex()


def test_bad_targets_are_named():
    with pytest.raises(InvertError, match="32 hex digits"):
        invert("abcd", "md5", Hints(masks=["?d"]))
    with pytest.raises(InvertError, match="not a hexadecimal"):
        invert("zz" * 16, "md5", Hints(masks=["?d"]))


def test_cli_invert_json_and_ledger(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["net", "invert", "--sha256", _hex("sha256", "ok42"), "--mask", "?l?l?d?d", "--workers", "1", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["found"] and data["preimage"] == "ok42"
    from dormant.ledger import list_runs

    runs = list_runs(command="net invert")
    assert runs and runs[0]["outputs"]["preimage"] == "ok42" and runs[0]["status"] == "ok"
    bad = runner.invoke(app, ["net", "invert", "--sha1", "abcd", "--mask", "?d"])
    assert bad.exit_code != 0


def test_cli_resume_continues_from_the_state_file(tmp_path):
    runner = CliRunner()
    state = tmp_path / "s.state"
    base = ["net", "invert", "--md5", _hex("md5", "zzx"), "--mask", "?l?l?l", "--workers", "1", "--chunk-size", "2000", "--checkpoint", str(state), "--json"]
    first = runner.invoke(app, base + ["--max-chunks", "3"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["status"] == "budget"
    second = runner.invoke(app, base + ["--resume"])
    data = json.loads(second.stdout)
    assert data["preimage"] == "zzx" and data["chunks_resumed"] == 3 and min(data["chunks_run"]) == 3
    lines = state.read_text().splitlines()
    done = [json.loads(line)["chunk"] for line in lines[1:]]
    assert len(done) == len(set(done)) == 9  # 17576 candidates in chunks of 2000: each chunk once


def test_numpy_backend_finds_the_same_secret():
    config = InvertConfig(workers=2, chunk_size=100_000, backend="numpy", progress=False)
    result = invert(_hex("sha256", "ab12"), "sha256", Hints(masks=["?l?l?d?d"]), config)
    assert result.backend == "numpy" and result.preimage == "ab12"
