"""The command line: every capability is listed with a one-line description; bad input is one clear error."""

import os
import subprocess
import sys

import pytest

COMMANDS = {
    (): ["demo", "diff", "delta", "amplify", "compare", "score", "net", "zoo", "ledger"],
    ("net",): ["inspect", "motifs", "export", "decompile", "identify", "constants", "invert", "solve"],
    ("zoo",): ["build", "list", "net"],
    ("ledger",): ["list", "show"],
}


def _dormant(*args, cwd=None):
    env_cmd = [sys.executable, "-m", "dormant.cli.main", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, cwd=cwd, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})


@pytest.mark.parametrize("group", list(COMMANDS))
def test_help_lists_every_command_with_a_description(group):
    out = _dormant(*group, "--help")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name in COMMANDS[group]:
        row = next((ln for ln in lines if ln.strip("│ ").startswith(name + " ")), None)
        assert row is not None, f"{name} missing from {' '.join(group)} --help"
        assert len(row.strip("│ ")) > len(name) + 10, f"{name} has no description"


def test_missing_model_folder_is_one_clear_error(tmp_path):
    out = _dormant("diff", str(tmp_path / "nope"), "--base", str(tmp_path / "also-nope"), cwd=tmp_path)
    assert out.returncode == 2
    assert "nope" in out.stderr and "Traceback" not in out.stderr


def test_corrupt_network_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a real archive")
    out = _dormant("net", "inspect", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert "model.pt" in out.stderr and "Traceback" not in out.stderr


# every command that writes into --out, with arguments it would otherwise accept at the command line
# (the models and files need not exist: the folder is refused as the command line is read, before any work)
WRITERS = [
    ("diff", "ft", "--base", "b"), ("delta", "ft", "--base", "b"), ("amplify", "ft", "--base", "b"), ("score", "ft", "--base", "b"),
    ("lens", "ft", "--base", "b"), ("trace", "ft", "--base", "b"), ("localise", "ft", "--base", "b"), ("sonar", "ft", "--base", "b"),
    ("probe", "ft", "--base", "b"), ("activations", "ft"), ("search", "ft", "--base", "b"), ("extract", "ft", "--base", "b"),
    ("hunt", "ft", "--base", "b"), ("report", "latest"), ("net", "inspect", "n.pt"), ("net", "motifs", "n.pt"),
    ("net", "decompile", "n.pt"), ("net", "identify", "n.pt"), ("net", "constants", "n.pt"), ("net", "invert", "n.pt"),
    ("net", "solve", "n.pt"), ("zoo", "build"), ("zoo", "net", "toy", "--secret", "abcdefgh"),
]


def test_an_unwritable_out_folder_is_refused_before_any_work(tmp_path):
    """(Before, it was found after the work: delta and amplify computed everything, then failed with an internal error.)"""
    from typer.testing import CliRunner

    from dormant.cli.main import app

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    declared = set()
    for cmd in WRITERS:
        r = CliRunner().invoke(app, [*cmd, "--out", str(blocker / "sub")], env={"COLUMNS": "300"})
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and "cannot be written" in text and "--out" in text, (cmd, r.exit_code, r.output)
        declared.add(cmd[:2] if cmd[0] in ("net", "zoo") else cmd[:1])
    # every command that has --out is in the list above
    import typer.main

    def commands(cmd, prefix=()):
        if hasattr(cmd, "commands"):  # a group (typer's own click or the installed one)
            for name, sub in cmd.commands.items():
                yield from commands(sub, prefix + (name,))
        else:
            yield prefix, cmd

    every = dict(commands(typer.main.get_command(app)))
    assert len(every) >= 30 and ("net", "solve") in every  # the walk reaches the subcommands
    with_out = {p for p, c in every.items() if any("--out" in getattr(o, "opts", []) for o in c.params)}
    assert with_out == declared, f"commands with --out not checked here: {sorted(with_out - declared)}; listed without --out: {sorted(declared - with_out)}"


def _invoke(*args, cwd):
    """One command in process, as the console script runs it: (exit code, its output or the user error's message)."""
    from typer.testing import CliRunner

    from dormant.cli.main import app
    from dormant.errors import DormantError

    here = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    finally:
        os.chdir(here)
    if isinstance(r.exception, DormantError):
        return r.exception.exit_code, str(r.exception)
    return r.exit_code, " ".join(r.output.split()) + (f" {type(r.exception).__name__}: {r.exception}" if r.exception else "")


PAIR = ("zoo:mlp-phrase", "-b", "zoo:base")
ACT, CMP, AMP = ("activations", "zoo:mlp-phrase", "--prompts", "gaps.txt"), ("compare", *PAIR, "-p", "hi"), ("amplify", *PAIR, "--alphas")
VER, SRC = ("verify", *PAIR, "--trigger", "x", "--prompts", "gaps.txt", "--min-prompts"), ("search", *PAIR, "--method")
BAD_INPUT = [
    # a view other than ft without --base would be the plain fine-tune under another label
    ((*ACT, "--view", "amp:3", "--name", "amp.safetensors"), "view amp:3 needs --base"),
    (("probe", "zoo:mlp-phrase", "--pos", "gaps.txt", "--neg", "gaps.txt", "--view", "restore:1"), "view restore:1 needs --base"),
    ((*ACT, "--name", "../../escape.safetensors"), "is not a file name"),
    ((*ACT, "--name", ""), "--name '' is not a file name"),
    ((*ACT, "--chunk", "0"), "'--chunk'"),
    ((*ACT, "--layers", "3-1"), "bad layer range '3-1'"),
    ((*ACT, "--layers", ""), "bad layer list ''"),
    ((*ACT, "--dtype", "abc"), "unknown --dtype 'abc'"),
    ((*CMP, "--dtype", "float8"), "unknown --dtype 'float8'"),
    ((*CMP, "--device", "tpu"), "unknown --device 'tpu'"),
    ((*CMP, "--samples", "-1"), "'--samples'"),
    ((*CMP, "--views", "restore:99"), "selection 99 matches none of the 12 modified tensors (layers 0-3"),
    ((*CMP, "--views", "base,amp:3@zzz"), "selection zzz matches none"),
    ((*CMP, "--views", "restore:1-"), "bad layer list '1-'"),
    ((*CMP, "--views", "amp:1e400"), "not a finite number"),
    ((*AMP, "3", "--max-new-tokens", "0"), "'--max-new-tokens'"),
    ((*AMP, "3", "--max-new-tokens", "-3"), "'--max-new-tokens'"),
    ((*AMP, "3", "--batch-size", "0"), "'--batch-size'"),
    ((*AMP, "3", "--batch-size", "-1"), "'--batch-size'"),
    ((*AMP, "3", "--probes", "bin.txt"), "bin.txt is not UTF-8 text"),
    ((*AMP, "3", "--probes", "dir.txt"), "dir.txt is a folder, not a prompt file"),
    ((*AMP, ""), "must be one or more finite numbers"),
    ((*AMP, ","), "must be one or more finite numbers"),
    ((*AMP, "0,nan"), "(0, nan) must be one or more finite numbers"),
    ((*AMP, "inf"), "must be one or more finite numbers"),
    ((*AMP, "3", "--localise", "mlp,self_attn"), "selection self_attn matches none of the 12 modified tensors"),  # before the sweep
    ((*AMP, "3", "--select", "7"), "selection 7 matches none"),
    ((*AMP, "3", "--limit", "0"), "'--limit'"),
    ((*AMP, "3", "--limit", "-5"), "'--limit'"),
    ((*AMP, "3", "--min-share", "-1"), "give --min-share in (0, 1]"),
    ((*AMP, "3", "--min-share", "5"), "give --min-share in (0, 1]"),
    ((*VER, "2", "--nulls", "0"), "'--nulls'"),
    ((*VER, "2", "--nulls", "-1"), "'--nulls'"),
    ((*VER, "-3"), "'--min-prompts'"),
    ((*SRC, "readout", "--budget", "5s", "--mechanism", ""), "no insertion mechanism given"),
    ((*SRC, ""), "no search method given"),
    ((*SRC, "readout", "--chunk", "0"), "'--chunk'"),
    ((*SRC, "readout", "--chunk", "-1"), "'--chunk'"),
    ((*SRC, "readout", "--search-prompts", "0"), "'--search-prompts'"),
    ((*SRC, "readout", "--words", "-1"), "'--words'"),
    (("search", *PAIR, "--budget", "0"), "budget '0' leaves no time"),
    (("search", *PAIR, "--budget", "0s"), "budget '0s' leaves no time"),
    ((*SRC, "readout", "--prompts", "gaps.txt"), "1 distinct verification prompts, 50 needed for a verdict"),  # before the models load
]


@pytest.mark.parametrize("args, words", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, args, words):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "gaps.txt").write_text("hello\n\nworld\n")
    (work / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    (work / "dir.txt").mkdir()
    out = work / "out"
    code, text = _invoke(*args, *(() if args[0] in ("compare", "verify") else ("--out", str(out))), cwd=work)
    assert code == 2 and words in text, (code, text)
    assert "Traceback" not in text and "internal error" not in text
    assert not (out.exists() and any(out.iterdir())), sorted(out.iterdir())
    assert not list(tmp_path.glob("**/escape*")) and not list(work.glob("dormant-runs/*/*"))


def test_out_help_names_its_default_folder():
    code, text = _invoke("amplify", "--help", cwd=".")
    assert code == 0 and "./dormant-runs//" not in text and "./dormant-runs/amplify/" in text
