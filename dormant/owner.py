"""Which process owns a ledger run, and whether that process is still there.

A run is recorded as ``running`` when it starts and rewritten when it ends; a process killed in
between (``kill -9``, out-of-memory killer, a lost machine) never rewrites it. So every run also
records its owner: pid, host name and the process's start token. A reader on the same host can then
tell a run still in progress from an orphan:

- no process with that pid (or a zombie): gone;
- a process with that pid but another start token: the pid was reused, the owner is gone;
- otherwise: alive.

The start token is ``<boot id>:<start time in clock ticks since boot>`` from ``/proc`` (Linux), so
neither a reboot nor pid reuse passes for the owner; elsewhere it is empty and only the pid is
checked. A run owned by another host cannot be judged from here (``None``).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    start: str  # "" where the platform gives no start token


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_token(pid: int) -> str:
    """``<boot id>:<start ticks>`` of process ``pid`` ("" where ``/proc`` is unavailable or it is gone)."""
    fields = _stat_fields(pid)
    return f"{_boot_id()}:{fields[19]}" if fields and len(fields) > 19 else ""


def current() -> Owner:
    """This process."""
    pid = os.getpid()
    return Owner(pid, socket.gethostname(), start_token(pid))


def alive(owner: Owner) -> bool | None:
    """True while the owning process runs, False once it is gone, None when it cannot be judged here
    (another host, or no owner recorded)."""
    if not owner.pid or owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    fields = _stat_fields(owner.pid)
    if fields is not None and fields[0] == "Z":  # killed, not yet reaped by its parent
        return False
    if owner.start and fields is not None and start_token(owner.pid) != owner.start:
        return False  # the pid now belongs to another process
    return True
