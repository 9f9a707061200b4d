"""Long work talks when stderr is not a terminal: a line per stage, a status line every ~10 s with
step counts and an estimate, a line when a stage completes."""

from __future__ import annotations

import io

from rich.console import Console

from dormant.report.console import LineProgress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _progress():
    out = io.StringIO()
    clock = Clock()
    return LineProgress(Console(file=out, width=200), every=10.0, clock=clock), clock, out


def test_lines_at_start_every_ten_seconds_and_at_the_end():
    bar, clock, out = _progress()
    with bar:
        a = bar.add_task("training base", total=400)
        b = bar.add_task("training sibling", total=100)
        for step in range(1, 401):
            clock.t = step * 0.1  # 40 s in all
            bar.update(a, completed=step)
            if step <= 100:
                bar.update(b, completed=step)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training base ..." and lines[1] == "training sibling ..."
    assert "training sibling: done, 100/100 in 10s" in lines
    assert lines[-1] == "training base: done, 400/400 in 40s"
    status = [l for l in lines if "%" in l]
    assert 2 <= len(status) <= 4  # about one every 10 s, not one per update
    assert "training base: 100/400 (25%), 10s, ~30s left" in status[0]
    assert all("sibling" not in l for l in status[1:])  # finished tasks leave the status line


def test_an_early_stop_completes_the_stage_and_messages_are_not_running_tasks():
    bar, clock, out = _progress()
    a = bar.add_task("variant", total=800)
    clock.t = 5
    bar.update(a, completed=350, total=350)  # stopped early at 350 steps
    bar.add_task("variant: attempt 1 missed its dev check; retrying", total=0)
    clock.t = 30
    c = bar.add_task("other", total=10)
    clock.t = 40
    bar.update(c, completed=5)
    lines = out.getvalue().splitlines()
    assert "variant: done, 350/350 in 5s" in lines
    assert lines[-1] == "other: 5/10 (50%), 10s, ~10s left"  # the status line lists only what still runs


def test_a_budget_in_seconds_is_shown_without_its_measurement_noise():
    bar, clock, out = _progress()
    a = bar.add_task("search", total=231.011)
    clock.t = 20
    bar.update(a, completed=20.0145)
    clock.t = 31
    bar.update(a, completed=0.5 + 30.0158)
    assert out.getvalue().splitlines()[-1] == "search: 31/231 (13%), 31s, ~204s left"


def test_a_stage_past_its_share_says_so_and_estimates_nothing():
    """A hunt stage's bar counts seconds of its share of the budget; a stage that runs past its share
    (a real-size model's delta: 88 s against 18 s) said '18/18 (99%), ~1s left' for a minute."""
    from dormant.llm.hunt import _Heartbeat

    bar, clock, out = _progress()
    task = bar.add_task("delta", total=18)
    beat = _Heartbeat(bar, task, 18, "delta")
    beat.t0 = 0.0
    for t in range(2, 90, 2):
        clock.t = float(t)
        beat.tick(now=clock.t)
        if t == 40:
            beat.on_note("read-outs")
    clock.t = 90.0
    bar.update(task, total=18, completed=18, description="delta: ok (90s)")
    lines = out.getvalue().splitlines()
    early = [l for l in lines if l.startswith("delta: 10/18")]
    assert early and "left" in early[0]  # within its share: seconds of the share and an estimate
    late = [l for l in lines if "past its 18s share" in l]
    assert late and all("left" not in l and "/18" not in l for l in late)
    assert "delta: read-outs (past its 18s share): 80s" in lines
    assert lines[-1] == "delta: ok (90s): done in 90s"
