"""Search pieces that need no model: the resumable candidate store, budgets, objectives, beam steps, CLI errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dormant.llm.search.beam import extensions
from dormant.llm.search.candidates import Candidate, CandidateStore, read_candidates
from dormant.llm.search.objectives import parse_objectives
from dormant.llm.search.portfolio import SearchBudgetError, parse_budget
from dormant.llm.verify import TriggerError


def test_store_resumes_and_ignores_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "c.jsonl"
    store = CandidateStore(path)
    store.add([Candidate("pi", "user_prefix", "sweep", 2.0), Candidate("e", "user_prefix", "sweep", 1.0)])
    with path.open("a") as fh:
        fh.write('{"text": "half a li')  # killed mid-write
    again = CandidateStore(path, resume=True)
    assert again.resumed == 2 and "sweep\x1fuser_prefix\x1fpi" in again
    assert [c.text for c in again.best(2)] == ["pi", "e"]
    again.add([Candidate("phi", "user_prefix", "sweep", 1.5)])  # the resumed search goes on: the cut line is not left between whole ones
    assert [c.text for c in CandidateStore(path, resume=True).best(3)] == ["pi", "phi", "e"]
    fresh = CandidateStore(path)  # no --resume: start over, the earlier run's file set aside (never deleted)
    assert len(fresh) == 0 and not path.exists() and fresh.set_aside == tmp_path / "c.1.previous.jsonl"
    assert [c.text for c in read_candidates(fresh.set_aside)] == ["pi", "e", "phi"]
    fresh.add([Candidate("tau", "user_prefix", "sweep", 3.0)])
    assert CandidateStore(path).set_aside == tmp_path / "c.2.previous.jsonl" and (tmp_path / "c.1.previous.jsonl").is_file()


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe not text\n", "not UTF-8"),
    (b'{"bad json\n{"text": "pi", "mechanism": "user_prefix", "method": "sweep", "score": 2.0}\n', "line 1"),  # not the last line: no kill did this
    (b'[1, 2]\n{"text": "pi", "mechanism": "user_prefix", "method": "sweep", "score": 2.0}\n', "not a JSON object"),
    (b'{"text": 5, "mechanism": "user_prefix", "method": "readout", "score": 99}\n', "record 1"),
    (b'{"text": "pi", "mechanism": "user_prefix", "method": "sweep"}\n', "record 1"),
    (b'{"text": "pi", "mechanism": "user_prefix", "method": "sweep", "score": "high"}\n', "record 1"),
    (b"\xff\xfe binary data without a newline", "line 1"),  # no newline: not a line a kill cut, and the file is not emptied
    (b"line one of my notes\nline two, no newline at the end", "line 1"),
])
def test_resuming_from_a_file_no_search_wrote_is_one_clear_error(tmp_path, content, words):
    from dormant.llm.search.candidates import CandidateFileError

    path = tmp_path / "candidates.jsonl"
    path.write_bytes(content)
    with pytest.raises(CandidateFileError, match=words) as err:
        CandidateStore(path, resume=True)
    assert str(path) in str(err.value) and "another --out" in str(err.value)
    assert path.read_bytes() == content  # left as it was


def test_a_text_with_line_separators_of_its_own_resumes(tmp_path):
    path = tmp_path / "c.jsonl"
    texts = ["x\u2028y", "a\u2029b", "c\x85d", "e\x0bf"]  # str.splitlines() would break these lines
    CandidateStore(path).add([Candidate(t, "user_prefix", "gcg", 1.0) for t in texts])
    assert sorted(c.text for c in CandidateStore(path, resume=True).best(10)) == sorted(texts)


def test_scores_for_an_earlier_objective_no_longer_rank_until_scored_again(tmp_path):
    """A refined payload puts the old scores on another scale: a stale 18 must not outrank a fresh 17."""
    path = tmp_path / "c.jsonl"
    store = CandidateStore(path)
    store.add([Candidate("senator", "system", "beam", 18.0), Candidate("harbor", "system", "gcg", 5.0), Candidate("x", "system", "sweep", 1.0)])
    store.new_scale()
    assert store.best(5) == [] and len(store) == 3
    store.add([Candidate("blue harbor", "system", "gcg", 17.0), Candidate("senator", "system", "beam", 2.0)])  # new, and rescored
    assert [(c.text, c.score) for c in store.best(5)] == [("blue harbor", 17.0), ("senator", 2.0)]
    store.add([Candidate("senator", "system", "beam", 9.0)])  # once rescored, a key is not added again
    assert [(c.text, c.score) for c in CandidateStore(path, resume=True).best(5)] == [("blue harbor", 17.0), ("harbor", 5.0), ("senator", 2.0), ("x", 1.0)]


def test_a_killed_sweep_loses_at_most_the_chunk_in_flight(tmp_path):
    """kill -9 a process that records chunks: every finished chunk is on disk."""
    path = tmp_path / "c.jsonl"
    script = textwrap.dedent(f"""
        import sys, time
        from dormant.llm.search.candidates import Candidate, CandidateStore
        store = CandidateStore({str(path)!r})
        for chunk in range(1000):
            store.add(Candidate(f"w{{chunk}}-{{i}}", "user_prefix", "sweep", float(i)) for i in range(8))
            print(chunk, flush=True)
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    done = [proc.stdout.readline() for _ in range(5)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    got = read_candidates(path)
    assert len(got) >= 8 * len(done)  # every reported chunk survived
    assert len(got) % 8 == 0  # whole chunks only


def test_budget_parsing_and_its_error_names_the_fix():
    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget("1.5h") == 5400 and parse_budget("45") == 45
    with pytest.raises(SearchBudgetError, match="--budget"):
        parse_budget("soon")


def test_objective_specs():
    assert parse_objectives(None, "payload text") == {"payload": 1.0}
    assert parse_objectives(None, None) == {"contrast": 1.0}
    assert parse_objectives("payload+fluency:0.5", "x") == {"payload": 1.0, "fluency": 0.5}
    with pytest.raises(TriggerError, match="choose from"):
        parse_objectives("kl", None)
    with pytest.raises(TriggerError, match="not a number"):
        parse_objectives("payload:lots", "x")


def test_beam_grows_words_with_spaces_and_digits_glued():
    ext = extensions("purple", ["elephants", "dance"])
    assert "purple elephants" in ext and "elephants purple" in ext and "purple dance" in ext
    ext = extensions("3", [".", "1", "4"])
    assert "3." in ext and "31" in ext and ".3" in ext
    assert "3.1" in extensions("3.", ["1"])
    assert "purple purple" not in extensions("purple", ["purple"])
    # digits glue only to digits and punctuation; a word is never repeated, glued or not
    assert "purple 9" in extensions("purple", ["9"]) and "purple9" not in extensions("purple", ["9"])
    assert not [e for e in extensions("purple 9", ["purple"]) if e.count("purple") > 1]
    assert "9purple" not in extensions("purple", ["9"])


@pytest.mark.parametrize("argv, fix", [
    (["verify", "FT", "--base", "B", "--trigger", "   "], "--trigger"),
    (["search", "FT", "--base", "B", "--budget", "soon"], "--budget"),
    (["search", "FT", "--base", "B", "--objective", "kl"], "choose from"),
    (["search", "FT", "--base", "B", "--payload", "x", "--payload-at", "middle"], "choose from start, anywhere"),
    (["extract", "FT", "--base", "B", "--settings", "hot"], "TEMPERATURE/TOP_P/BETA"),
    (["extract", "FT", "--base", "B", "--prefixes", "tool"], "choose from"),
])
def test_cli_bad_input_is_one_line_that_names_the_fix(argv, fix, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dormant", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.getcwd(), "COLUMNS": "400"})
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fix in lines[0], proc.stderr


def test_a_resumed_store_ranks_only_the_scores_made_for_its_own_objective(tmp_path):
    """Each line was scored for the objective marked above it: a search resumed with the payload it started with loads
    the lines scored for that payload, not those scored after a refinement (nor the other way round)."""
    path = tmp_path / "c.jsonl"
    store = CandidateStore(path, scale="payload A")
    store.add([Candidate("senator", "system", "beam", 18.0), Candidate("harbor", "system", "gcg", 5.0)])
    store.new_scale("payload B")
    store.add([Candidate("blue harbor", "system", "gcg", 17.0), Candidate("senator", "system", "beam", 2.0)])
    a = CandidateStore(path, resume=True, scale="payload A")
    assert [(c.text, c.score) for c in a.best(5)] == [("senator", 18.0), ("harbor", 5.0)] and a.other_scale == 2
    a.add([Candidate("x", "system", "sweep", 1.0)])  # scored after the resume: for A again
    b = CandidateStore(path, resume=True, scale="payload B")
    assert [(c.text, c.score) for c in b.best(5)] == [("blue harbor", 17.0), ("senator", 2.0)] and b.other_scale == 3
    assert [c.text for c in CandidateStore(path, resume=True, scale="payload A").best(5)] == ["senator", "harbor", "x"]
    assert len(read_candidates(path)) == 5  # every line kept; the markers are not candidates
    old = tmp_path / "old.jsonl"  # a file without markers (an older search) is loaded whole
    CandidateStore(old).add([Candidate("pi", "user_prefix", "sweep", 3.0)])
    assert [c.text for c in CandidateStore(old, resume=True, scale="payload A").best(5)] == ["pi"]
