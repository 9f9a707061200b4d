"""The command line: every capability is listed with a one-line description; bad input is one clear error."""

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
    ("net", "solve", "n.pt"),
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
        declared.add(cmd[:2] if cmd[0] == "net" else cmd[:1])
    # every command that has --out is in the list above
    import typer.main
    from click import Group

    def commands(cmd, prefix=()):
        if isinstance(cmd, Group):
            for name, sub in cmd.commands.items():
                yield from commands(sub, prefix + (name,))
        else:
            yield prefix, cmd

    with_out = {p for p, c in commands(typer.main.get_command(app)) if any("--out" in getattr(o, "opts", []) for o in c.params)}
    assert with_out <= declared, f"commands with --out not checked here: {sorted(with_out - declared)}"
