"""Where built subjects are cached: ``$DORMANT_CACHE``, else ``~/.cache/dormant``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DORMANT_CACHE`` or ``~/.cache/dormant`` (each builder keeps its own subfolder)."""
    env = os.environ.get("DORMANT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dormant"
