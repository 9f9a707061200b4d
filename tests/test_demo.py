"""The guided tour finds every planted answer (end to end over both sides of the package)."""

import json
import subprocess
import sys


def test_demo_finds_every_planted_answer(zoo_micro, tmp_path):
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "demo", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    steps = json.loads(out.stdout)["steps"]
    assert [s["name"].split(":")[0] for s in steps] == ["diff", "delta", "amplify", "net solve"]
    assert all(s["ok"] for s in steps), steps
    assert "bitter lesson" in steps[-1]["finding"]
