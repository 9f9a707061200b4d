"""Where built subjects are cached: ``$DORMANT_CACHE``, else ``~/.cache/dormant``."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    """``$DORMANT_CACHE`` or ``~/.cache/dormant`` (each builder keeps its own subfolder)."""
    env = os.environ.get("DORMANT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dormant"


def source_digest(folder: Path, names: tuple[str, ...]) -> str:
    """Hash of the named source files in ``folder``: part of a builder's cache key, so that any
    change to the code that decides what gets built builds anew (no version number to forget)."""
    import hashlib

    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for the duration of the block: two processes
    asking for the same subject at once (parallel test workers, two commands) build it once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
