"""The test suite's own set-up: the xdist groups the Makefile's ``--dist loadgroup`` relies on really group.

Tests that share an expensive module fixture (the phrase hunts, the amplified variants, the toy build)
carry one ``xdist_group`` mark so that a single worker computes the fixture once. With pytest 9.2 and
pytest-xdist 3.8 the mark is silently ignored (the group is appended to a node id pytest no longer
reads), the tests spread over both workers and each computes the fixture (measured: the phrase hunts
twice, about 40 s each). This runs a small suite the same way and checks where its tests ran.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SUITE = textwrap.dedent('''
    import os
    import pytest

    def _where(name):
        open(os.path.join(os.environ["WHERE_DIR"], name), "w").write(os.environ.get("PYTEST_XDIST_WORKER", "main"))

    @pytest.mark.xdist_group("shared")
    def test_a():
        _where("a")

    @pytest.mark.xdist_group("shared")
    def test_b():
        _where("b")

    @pytest.mark.xdist_group("shared")
    def test_c():
        _where("c")

    @pytest.mark.parametrize("i", range(6))
    def test_other(i):
        _where(f"o{i}")
''')


def test_tests_of_one_xdist_group_run_on_one_worker(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "test_groups.py").write_text(SUITE)
    where = tmp_path / "where"
    where.mkdir()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                        str(tmp_path / "test_groups.py")], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "WHERE_DIR": str(where)})
    assert r.returncode == 0, r.stdout + r.stderr
    ran = {p.name: p.read_text() for p in where.iterdir()}
    assert len(ran) == 9 and set(ran.values()) <= {"gw0", "gw1"}, ran
    assert ran["a"] == ran["b"] == ran["c"], f"the xdist group was split across workers: {ran}"
