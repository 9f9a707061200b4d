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
