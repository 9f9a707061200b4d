"""The guided tour finds every planted answer (end to end over both sides of the package)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dormant
from dormant.demo import LLM_VARIANT
from dormant.llm.engine.payload import distinctive_words, fires


def test_demo_finds_every_planted_answer(zoo_micro, tmp_path):
    """Each step is ok only when it found the planted answer itself (see ``dormant.demo``): the base;
    the LoRA rank and a payload word among the read-out's tokens; the payload text; the preimage."""
    env = {**os.environ, "PYTHONPATH": str(Path(dormant.__file__).parents[1])}  # this checkout's package
    out = subprocess.run([sys.executable, "-m", "dormant.cli.main", "demo", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    steps = json.loads(out.stdout)["steps"]
    assert [s["name"].split(":")[0] for s in steps] == ["diff", "delta", "amplify", "net solve"]
    assert all(s["ok"] for s in steps), steps
    assert "bitter lesson" in steps[-1]["finding"]
    key = zoo_micro.manifests[LLM_VARIANT]["payload"]
    assert fires(steps[2]["finding"], key)
    assert any(w in steps[1]["finding"].rpartition("payload words among them:")[2] for w in distinctive_words(key))
