"""The run ledger: every command that computes a result records a run in an embedded SQLite store.

A run holds the command, its arguments, start/end time, status, its subject (the model or
network under investigation), the fingerprints of its input files, the assumptions it rested on
(``base=<fingerprint> <path>``, ``payload=<text>``), which of those its own result decided, its
outputs as JSON, the paths of its artifacts (plots, exports) and what it computed with (Python,
torch and its CPU kernel set, MKL's path: ``dormant.kernels.kernels_in_use``; a seeded result is the
same bytes only under the same kernels). The database runs in WAL mode
with a busy timeout so that several processes can write at once.

Status: ``running`` from its start, then ``ok``, ``failed`` or ``interrupted`` (Ctrl-C). A process
killed outright (``kill -9``) cannot write its end, so each run also records its owner (pid, host,
process start token: ``dormant.owner``); whenever the ledger is read, a ``running`` run whose owner
on this host is gone is stored as ``interrupted``, with the reason in ``error``. Only ``ok`` runs
are ever reused or decide anything.

Invalidation is derived when runs are read, never stored: a run is INVALIDATED when

- a newer successful run on the same subject *decided* a different value for an assumption the
  run rested on (a later ``diff`` picked another base: every earlier run on that fine-tune that
  assumed the old base is invalid), or
- one of its input files changed: a newer run fingerprinted the same path differently, or (with
  ``check_files``) the file on disk no longer has the fingerprint the run recorded.

Typical use from library code::

    with record_run("diff", {"ft": str(ft)}, ledger=path) as run:
        run.add_input("ft", ft, subject=True)   # fingerprints the folder or file; the run is about it
        run.add_input("base", base)
        ...
        run.decide("base", run.inputs["base"])  # this run's result sets the base for its subject
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
from typing import Any, Iterator, Sequence

from dormant.errors import DormantError
from dormant.fingerprint import fingerprint
from dormant.kernels import kernels_in_use
from dormant.owner import Owner, alive, current
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
    error       TEXT,
    subject     TEXT,
    decided     TEXT NOT NULL DEFAULT '[]',
    refines     TEXT NOT NULL DEFAULT '{}',
    owner_pid   INTEGER,
    owner_host  TEXT,
    owner_start TEXT,
    environment TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""
# Columns added after the first schema; ledgers written before them gain them on open.
_ADDED_COLUMNS = {"subject": "TEXT", "decided": "TEXT NOT NULL DEFAULT '[]'", "owner_pid": "INTEGER", "owner_host": "TEXT",
                  "owner_start": "TEXT", "refines": "TEXT NOT NULL DEFAULT '{}'",
                  "environment": "TEXT NOT NULL DEFAULT '{}'"}


def ledger_path(explicit: str | Path | None = None) -> Path:
    """The ledger file: the explicit path, else ``$DORMANT_LEDGER``, else ``./dormant-runs/ledger.sqlite``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


class LedgerError(DormantError):
    """A ledger path that is not a SQLite database (or cannot be created)."""


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    p = ledger_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(p, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.executescript(_SCHEMA)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise LedgerError(f"the ledger {p} cannot be used ({exc}): it is not a SQLite database or cannot be created. Give another "
                          f"file with --ledger or ${ENV_VAR} (a new one is created), or move this file away") from None
    have = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
    for name, decl in _ADDED_COLUMNS.items():
        if name not in have:
            try:
                con.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise
    return con


@dataclass
class Run:
    """A run in progress; fill ``outputs``/``artifacts`` and call ``add_input``/``assume``/``decide``."""

    id: str
    command: str
    args: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    subject: str | None = None
    decided: list[str] = field(default_factory=list)
    refines: dict[str, list[Any]] = field(default_factory=dict)  # per decided key, the earlier values its value refines

    def add_input(self, role: str, path: str | Path, *, subject: bool = False) -> str:
        """Fingerprint an input file or folder and record ``"<fingerprint> <absolute path>"`` under
        ``role``; ``subject=True`` also makes it the run's subject. Returns the fingerprint."""
        fp = fingerprint(path)
        self.inputs[role] = f"{fp} {_abspath(path)}"
        if subject:
            self.subject = _abspath(path)
        return fp

    def assume(self, key: str, value: Any) -> None:
        """Record an assumption the run rests on (a later run deciding otherwise invalidates this one)."""
        self.assumptions[key] = value

    def decide(self, key: str, value: Any, *, refines: Sequence[Any] = ()) -> None:
        """Record a value this run's own result establishes for its subject (``diff`` decides the base);
        earlier runs on the same subject that assumed another value become invalid, except those that assumed
        one of ``refines``: earlier values the new one completes without contradicting them (a payload
        hypothesis 'ell rings at noon.' read in full as 'The bell rings at noon.')."""
        self.assumptions[key] = value
        if key not in self.decided:
            self.decided.append(key)
        kept = {_dumps(x): x for x in self.refines.get(key, [])}
        kept.update((_dumps(old), old) for old in refines if _dumps(old) != _dumps(value))
        if kept:
            self.refines[key] = list(kept.values())


def _abspath(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


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
    me = current()
    try:
        _write(
            con,
            "INSERT INTO runs (id, command, args, started_at, status, inputs, assumptions, subject, decided, refines, owner_pid, owner_host, "
            "owner_start) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run.id, command, _dumps(run.args), time.time(), "running", _dumps(run.inputs), _dumps(run.assumptions), run.subject, _dumps(run.decided),
             _dumps(run.refines), me.pid, me.host, me.start),
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
                "UPDATE runs SET ended_at=?, status=?, inputs=?, assumptions=?, outputs=?, artifacts=?, error=?, subject=?, decided=?, "
                "refines=?, environment=? WHERE id=?",
                (time.time(), status, _dumps(run.inputs), _dumps(run.assumptions), _dumps(run.outputs), _dumps(run.artifacts), error,
                 run.subject, _dumps(run.decided), _dumps(run.refines), _dumps(kernels_in_use()), run.id),
            )
    finally:
        con.close()


def _row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("args", "inputs", "assumptions", "outputs", "artifacts", "decided", "refines", "environment"):
        d[key] = json.loads(d[key]) if d.get(key) else None
    d["decided"] = d["decided"] or []
    d["refines"] = d["refines"] or {}
    return d


def _split_input(value: str) -> tuple[str, str]:
    """``"<fingerprint> <path>"`` -> (fingerprint, path)."""
    fp, _, path = str(value).partition(" ")
    return fp, path


def _short(value: Any, n: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), sort_keys=True)
    return text if len(text) <= n else text[: n - 1] + "…"


def invalidations(runs: list[dict[str, Any]], *, check_files: bool = False, only: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Why each run is invalid, computed over ``runs`` (the whole ledger): ``{run id: [reason, ...]}``.

    ``check_files`` re-fingerprints the input files (still on disk) of the runs in ``only`` (default: all).

    Each reason is a dict with ``kind`` (``assumption`` or ``input``), ``key`` (the assumption or
    the input path), ``old``/``new`` values, ``by`` (the newer run's id, or ``"disk"``) and ``reason``
    (one sentence). Runs that are valid map to an empty list.
    """
    ordered = sorted(runs, key=lambda r: r["started_at"])
    out: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in ordered}

    # Assumptions: the newest successful run that decided (subject, key) sets its value.
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in ordered:
        if r["status"] == "ok" and r.get("subject"):
            for key in r.get("decided") or []:
                latest[(r["subject"], key)] = r
    for r in ordered:
        for key, old in (r.get("assumptions") or {}).items():
            d = latest.get((r.get("subject"), key)) if r.get("subject") else None
            if d is None or d["id"] == r["id"] or d["started_at"] <= r["started_at"]:
                continue
            new = d["assumptions"].get(key)
            refined = [to_jsonable(x) for x in (d.get("refines") or {}).get(key, [])]
            if to_jsonable(new) != to_jsonable(old) and to_jsonable(old) not in refined:
                out[r["id"]].append({
                    "kind": "assumption", "key": key, "old": old, "new": new, "by": d["id"],
                    "reason": f"{key} changed: newer run {d['id']} ({d['command']}) decided {key}={_short(new)}; this run rested on {key}={_short(old)}",
                })

    # Inputs: the newest fingerprint seen for each path (by a newer run, or on disk now).
    seen: dict[str, dict[str, Any]] = {}
    for r in ordered:
        for value in (r.get("inputs") or {}).values():
            fp, path = _split_input(value)
            if path:
                seen[path] = {"fp": fp, "run": r}
    on_disk: dict[str, str | None] = {}
    for r in ordered:
        for role, value in (r.get("inputs") or {}).items():
            fp, path = _split_input(value)
            if not path:
                continue
            disk = check_files and (only is None or r["id"] in only)
            if disk and path not in on_disk:
                try:
                    on_disk[path] = fingerprint(path) if Path(path).exists() else None
                except (OSError, ValueError):
                    on_disk[path] = None
            now = on_disk.get(path) if disk else None
            if now is not None:
                if now != fp:
                    out[r["id"]].append({"kind": "input", "key": path, "old": fp, "new": now, "by": "disk",
                                         "reason": f"input {role} {path} changed on disk: this run fingerprinted {fp}, it is {now} now"})
                continue
            last = seen[path]
            if last["fp"] != fp and last["run"]["started_at"] > r["started_at"]:
                n = last["run"]
                out[r["id"]].append({"kind": "input", "key": path, "old": fp, "new": last["fp"], "by": n["id"],
                                     "reason": f"input {role} {path} changed: this run fingerprinted {fp}, newer run {n['id']} ({n['command']}) {last['fp']}"})
    return out


def mark_orphans(con: sqlite3.Connection) -> list[str]:
    """Store as ``interrupted`` every ``running`` run whose owning process (on this host) is gone; their ids.

    A ledger that cannot be written (read-only file) is left as it is; the runs are still returned.
    """
    rows = con.execute("SELECT id, owner_pid, owner_host, owner_start FROM runs WHERE status = 'running' AND owner_pid IS NOT NULL").fetchall()
    gone = []
    for rid, pid, host, start in rows:
        if alive(Owner(int(pid), host or "", start or "")) is False:
            gone.append(rid)
            why = f"process {pid} on {host} ended before the run finished (killed?); found by a later read of the ledger"
            try:
                _write(con, "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ? AND status = 'running'", (why, rid))
            except sqlite3.OperationalError:
                pass
    return gone


def _all_runs(con: sqlite3.Connection) -> list[dict[str, Any]]:
    gone = set(mark_orphans(con))
    runs = [_row_to_dict(r) for r in con.execute("SELECT * FROM runs ORDER BY started_at DESC")]
    for r in runs:  # shown as interrupted even where the ledger could not be written
        if r["id"] in gone and r["status"] == "running":
            r["status"] = "interrupted"
    return runs


def list_runs(ledger: str | Path | None = None, *, limit: int = 50, command: str | None = None, check_files: bool = False,
              subject: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` runs (of ``command``, on ``subject`` when given), newest first; each carries
    ``invalidated``: the reasons it is invalid (empty when valid), judged against the whole ledger."""
    con = connect(ledger)
    con.row_factory = sqlite3.Row
    try:
        runs = _all_runs(con)
    finally:
        con.close()
    chosen = [r for r in runs if (command is None or r["command"] == command) and (subject is None or r.get("subject") == subject)][:limit]
    reasons = invalidations(runs, check_files=check_files, only={r["id"] for r in chosen})
    for r in chosen:
        r["invalidated"] = reasons[r["id"]]
    return chosen


def get_run(run_id: str, ledger: str | Path | None = None, *, check_files: bool = False) -> dict[str, Any]:
    """Fetch one run by id or unique id prefix (with ``invalidated`` as in ``list_runs``);
    raises ``KeyError`` when none or several match."""
    con = connect(ledger)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute("SELECT id FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",)).fetchall()
        runs = _all_runs(con) if len(rows) == 1 else []
    finally:
        con.close()
    if not rows:
        raise KeyError(f"no run with id {run_id!r} in {ledger_path(ledger)}")
    if len(rows) > 1:
        raise KeyError(f"run id prefix {run_id!r} is ambiguous; give more characters")
    run = next(r for r in runs if r["id"] == rows[0]["id"])
    run["invalidated"] = invalidations(runs, check_files=check_files, only={run["id"]})[run["id"]]
    return run
