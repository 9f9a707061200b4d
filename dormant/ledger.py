"""The run ledger: every command that computes a result records a run in an embedded SQLite store.

A run holds the command, its arguments, start/end time, status, the fingerprints of its input
models, the assumptions it made (``base=<fingerprint>``), its outputs as JSON and the paths of
its artifacts (plots, exports). The database runs in WAL mode with a busy timeout so that several
processes can write at once.

Typical use from library code::

    with record_run("diff", {"ft": str(ft)}, ledger=path) as run:
        run.add_input("ft", ft)              # fingerprints the folder or file
        run.assume("base", base_fingerprint)
        ...
        run.outputs.update(result_dict)
        run.artifacts.append(str(png))
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dormant.fingerprint import fingerprint
from dormant.report.jsonable import to_jsonable

ENV_VAR = "DORMANT_LEDGER"
DEFAULT_PATH = Path("dormant-runs") / "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    args        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    status      TEXT NOT NULL,
    inputs      TEXT NOT NULL DEFAULT '{}',
    assumptions TEXT NOT NULL DEFAULT '{}',
    outputs     TEXT NOT NULL DEFAULT '{}',
    artifacts   TEXT NOT NULL DEFAULT '[]',
    error       TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""


def ledger_path(explicit: str | Path | None = None) -> Path:
    """The ledger file: the explicit path, else ``$DORMANT_LEDGER``, else ``./dormant-runs/ledger.sqlite``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    p = ledger_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(p, timeout=60.0, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 60000")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.executescript(_SCHEMA)
    return con


@dataclass
class Run:
    """A run in progress; fill ``outputs``/``artifacts`` and call ``add_input``/``assume``."""

    id: str
    command: str
    args: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)

    def add_input(self, role: str, path: str | Path) -> str:
        fp = fingerprint(path)
        self.inputs[role] = f"{fp} {Path(path)}"
        return fp

    def assume(self, key: str, value: Any) -> None:
        self.assumptions[key] = value


def _dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True)


def _write(con: sqlite3.Connection, sql: str, params: tuple) -> None:
    # BEGIN IMMEDIATE takes the write lock up front; busy_timeout makes other writers wait.
    for attempt in range(50):
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(sql, params)
            con.execute("COMMIT")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            try:
                con.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05 * (attempt + 1))
    raise sqlite3.OperationalError("ledger stayed locked for too long")


@contextmanager
def record_run(
    command: str,
    args: dict[str, Any],
    *,
    ledger: str | Path | None = None,
    inputs: dict[str, str | Path] | None = None,
    assumptions: dict[str, Any] | None = None,
) -> Iterator[Run]:
    """Record a run around a block of work; a raised exception marks the run ``failed`` and propagates."""
    run = Run(id=uuid.uuid4().hex[:12], command=command, args=dict(args))
    for role, path in (inputs or {}).items():
        run.add_input(role, path)
    run.assumptions.update(assumptions or {})
    con = connect(ledger)
    try:
        _write(
            con,
            "INSERT INTO runs (id, command, args, started_at, status, inputs, assumptions) VALUES (?,?,?,?,?,?,?)",
            (run.id, command, _dumps(run.args), time.time(), "running", _dumps(run.inputs), _dumps(run.assumptions)),
        )
        status, error = "ok", None
        try:
            yield run
        except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised
            status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"), f"{type(exc).__name__}: {exc}"
            raise
        finally:
            _write(
                con,
                "UPDATE runs SET ended_at=?, status=?, inputs=?, assumptions=?, outputs=?, artifacts=?, error=? WHERE id=?",
                (time.time(), status, _dumps(run.inputs), _dumps(run.assumptions), _dumps(run.outputs), _dumps(run.artifacts), error, run.id),
            )
    finally:
        con.close()


def _row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("args", "inputs", "assumptions", "outputs", "artifacts"):
        d[key] = json.loads(d[key]) if d[key] else None
    return d


def list_runs(ledger: str | Path | None = None, *, limit: int = 50, command: str | None = None) -> list[dict[str, Any]]:
    con = connect(ledger)
    con.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM runs"
        params: tuple = ()
        if command:
            sql += " WHERE command = ?"
            params = (command,)
        sql += " ORDER BY started_at DESC LIMIT ?"
        return [_row_to_dict(r) for r in con.execute(sql, params + (limit,))]
    finally:
        con.close()


def get_run(run_id: str, ledger: str | Path | None = None) -> dict[str, Any]:
    """Fetch one run by id or unique id prefix; raises ``KeyError`` when none or several match."""
    con = connect(ledger)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute("SELECT * FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",)).fetchall()
    finally:
        con.close()
    if not rows:
        raise KeyError(f"no run with id {run_id!r} in {ledger_path(ledger)}")
    if len(rows) > 1:
        raise KeyError(f"run id prefix {run_id!r} is ambiguous; give more characters")
    return _row_to_dict(rows[0])
