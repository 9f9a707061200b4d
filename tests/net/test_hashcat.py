"""Hand-off to hashcat: the files match our search; with hashcat installed, it cracks and is verified."""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.net.invert.candidates import Hints, build_space
from dormant.net.invert.hashcat import HASH_FILE, HashcatMissing, find_hashcat, invert_with_hashcat, write_handoff

HASHCAT = find_hashcat()
needs_hashcat = pytest.mark.skipif(HASHCAT is None, reason="hashcat is not installed (apt-get install hashcat pocl-opencl-icd)")

WORDS = ["bitter", "lesson", "Owl", "sun"]


def _hints(**kw) -> Hints:
    base = dict(extra_words=WORDS, english=False, separators=(" ", ""), variant_separators=("-", "_"))
    base.update(kw)
    return Hints(**base)


def _rule(rule: str, word: bytes) -> bytes:
    """hashcat's rules as the hand-off uses them: ``$X`` appends X."""
    assert rule == "" or (len(rule) % 2 == 0 and set(rule[::2]) == {"$"}), rule
    return word + rule[1::2].encode()


def _expand(folder, attack) -> list[bytes]:
    """The candidates of a straight or combinator attack, as hashcat would build them."""
    lines = [(folder / f).read_bytes().splitlines() for f in attack.inputs]
    if attack.mode == 0:
        return lines[0]
    assert attack.mode == 1
    return [_rule(attack.rule_left, left) + right for left in lines[0] for right in lines[1]]


def test_handoff_covers_the_same_candidates_as_our_search(tmp_path):
    hints = _hints()
    target = hashlib.md5(b"Bitter-Lesson").hexdigest()
    h = write_handoff(tmp_path, "md5", [target], hints)
    ours = build_space(hints)
    theirs = [c for a in h.attacks for c in _expand(tmp_path, a)]
    assert sorted(theirs) == sorted(ours.candidate(i) for i in range(ours.size))  # same multiset
    assert h.size == ours.size == len(theirs)
    assert (tmp_path / HASH_FILE).read_text().splitlines() == [target]
    assert {(a.rule_left) for a in h.attacks if a.mode == 1} == {"$ ", "", "$-", "$_"}


def test_run_script_holds_the_exact_commands(tmp_path):
    target = hashlib.sha1(b"sun owl").hexdigest()
    h = write_handoff(tmp_path, "sha1", [target, "00" * 20], _hints())
    assert (tmp_path / HASH_FILE).read_text().splitlines() == [target, "00" * 20]
    script = (tmp_path / "run.sh").read_text()
    commands = [shlex.split(line) for line in script.splitlines() if line.startswith('"$HASHCAT"')]
    assert len(commands) == len(h.attacks)
    for cmd, attack in zip(commands, h.attacks):
        assert cmd[cmd.index("-m") + 1] == "100" and cmd[cmd.index("-a") + 1] == str(attack.mode)
        assert "--potfile-path" in cmd and "--outfile" in cmd
        if attack.mode == 1:
            assert cmd[-3:] == [HASH_FILE, *attack.inputs]
            if attack.rule_left:
                assert cmd[cmd.index("-j") + 1] == attack.rule_left
    straight = [c for c in commands if c[c.index("-a") + 1] == "0"]
    assert straight and all(c[-1] == "user.txt" for c in straight)
    assert (tmp_path / "user.txt").read_text().splitlines()[:4] == WORDS  # lower variant first, as written


def test_masks_and_charsets_become_mask_attacks(tmp_path):
    h = write_handoff(tmp_path, "md5", ["00" * 16], Hints(masks=["?l?d"], charset="ab?", min_len=0, max_len=2))
    assert [(a.mode, a.inputs, a.size) for a in h.attacks] == [(3, ("?l?d",), 260), (3, ("?1?1",), 3 + 9)]
    assert (tmp_path / "charset.hcchr").read_text() == "ab??"
    assert h.attacks[1].increment == (1, 2)
    assert any("empty string" in n for n in h.notes)  # length 0 has no hashcat attack, and we say so


def test_engine_hashcat_without_hashcat_says_how_to_install_and_writes_the_handoff(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHCAT", "hashcat-that-is-not-installed")
    target = hashlib.md5(b"sun").hexdigest()
    h = write_handoff(tmp_path / "h", "md5", [target], _hints(pairs=False))
    with pytest.raises(HashcatMissing, match="apt-get install hashcat pocl-opencl-icd"):
        invert_with_hashcat(h)
    res = CliRunner().invoke(app, ["net", "invert", "--md5", target, "--words", str(_wordfile(tmp_path)), "--no-english", "--engine", "hashcat", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, HashcatMissing)  # the command line prints it and exits 2
    assert "apt-get install hashcat pocl-opencl-icd" in str(res.exception) and "run.sh" in str(res.exception)
    assert list((tmp_path / "o").rglob("run.sh")) and list((tmp_path / "o").rglob(HASH_FILE))


def _wordfile(tmp_path):
    path = tmp_path / "words.list"
    path.write_text("\n".join(WORDS) + "\n")
    return path


@needs_hashcat
def test_hashcat_cracks_a_word_pair_and_we_recheck_it(tmp_path):
    target = hashlib.md5(b"lesson_Bitter".capitalize()).hexdigest()  # "Lesson_bitter": a Capital/lower variant
    h = write_handoff(tmp_path, "md5", [target], _hints(caps=("lower", "capital"), separators=("",), variant_separators=("_",)))
    res = invert_with_hashcat(h)
    assert res.found and res.preimage == "Lesson_bitter" and res.backend == "hashcat"
    assert hashlib.md5(res.preimage.encode()).hexdigest() == target


@needs_hashcat
def test_solve_with_hashcat_engine_on_an_md5_network(md5_net, tmp_path):
    """End to end: target read from the network, hashcat cracks it, the network fires on the plain."""
    words = tmp_path / "words.list"
    words.write_text("lesson\nbitter\nowl\n")
    res = CliRunner().invoke(
        app,
        ["net", "solve", str(md5_net.folder), "--words", str(words), "--top", "50", "--pairs-top", "50", "--variants-top", "0",
         "--engine", "hashcat", "--skip", "motifs", "--skip", "inspect", "--out", str(tmp_path / "o"), "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["preimage"] == "bitter lesson" and data["verified"] is True
    stage = next(s for s in data["stages"] if s["name"] == "invert")
    assert "hashcat" in stage["finding"]
    assert list((tmp_path / "o").rglob("run.sh"))


@needs_hashcat
def test_run_script_cracks_with_hashcat_alone(tmp_path):
    """run.sh needs nothing of dormant: hashcat writes the crack to found.txt and the script stops."""
    import os
    import subprocess

    target = hashlib.md5(b"sun lesson").hexdigest()
    hints = _hints(caps=("lower",), separators=(" ",), variant_separators=())
    h = write_handoff(tmp_path, "md5", [target], hints)
    proc = subprocess.run(["sh", str(h.script)], env={**os.environ, "HASHCAT_OPTS": "--force"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "found.txt").read_text().split() == [f"{target}:{b'sun lesson'.hex()}"]


def test_solve_with_hashcat_missing_fails_its_stage_with_the_install_hint(md5_net, tmp_path, monkeypatch):
    from dormant.net.invert.preimage import InvertConfig
    from dormant.net.solve import SolveConfig, solve

    monkeypatch.setenv("HASHCAT", "hashcat-that-is-not-installed")
    hints = Hints(extra_words=["owl"], english=False, pairs=False)
    config = SolveConfig(hints=hints, invert=InvertConfig(workers=1, progress=False), engine="hashcat", handoff_dir=tmp_path / "h", skip=("inspect", "motifs"))
    result = solve(md5_net.folder, config)
    stage = next(s for s in result.stages if s.name == "invert")
    assert stage.status == "failed" and "apt-get install hashcat pocl-opencl-icd" in stage.finding
    assert not result.found and result.preimage is None
    assert (tmp_path / "h" / HASH_FILE).read_text().splitlines()[0] == md5_net.target.hex()


def test_a_search_with_candidates_hashcat_has_no_attack_for_is_not_called_exhausted(tmp_path, monkeypatch):
    """A non-ASCII charset has no hashcat charset attack: with every attack written run to its end and nothing found,
    the space is not exhausted (its candidates were never tried), and the result says why."""
    from dormant.net.invert import hashcat

    digest = hashlib.md5(b"zz").hexdigest()

    def ran_all(handoff, binary=None, options=None, timeout=None):
        return hashcat.HashcatRun([], [a.label for a in handoff.attacks], handoff.size, 0.1, 1, "")

    monkeypatch.setattr(hashcat, "run_handoff", ran_all)
    plain = invert_with_hashcat(write_handoff(tmp_path / "a", "md5", [digest], _hints(charset="ab", min_len=1, max_len=2)))
    assert plain.status == "exhausted" and plain.why_not_found == "space exhausted" and not plain.notes
    accented = invert_with_hashcat(write_handoff(tmp_path / "b", "md5", [digest], _hints(charset="éa", min_len=1, max_len=2)))
    assert accented.status == "incomplete" and "non-ASCII" in accented.why_not_found, accented.why_not_found
    empty = invert_with_hashcat(write_handoff(tmp_path / "c", "md5", [digest], _hints(charset="ab", min_len=0, max_len=2)))
    assert empty.status == "incomplete" and "the empty string" in empty.why_not_found


def test_a_hand_off_written_for_another_digest_forgets_the_earlier_crack(tmp_path):
    """run.sh prints found.txt when it holds anything: a hand-off folder reused for another network's digest must not
    show that network the earlier one's secret; for the same digest the crack stands."""
    from dormant.net.invert.hashcat import FOUND

    first, second = hashlib.md5(b"owl").hexdigest(), hashlib.md5(b"sun").hexdigest()
    write_handoff(tmp_path, "md5", [first], _hints())
    (tmp_path / FOUND).write_text(f"{first}:{b'owl'.hex()}\n")
    write_handoff(tmp_path, "md5", [first], _hints())
    assert (tmp_path / FOUND).is_file()
    write_handoff(tmp_path, "md5", [second], _hints())
    assert not (tmp_path / FOUND).exists()
