"""Matplotlib set-up for headless plotting; each capability draws its own figures and saves them here."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(width: float = 8.0, height: float = 4.5):
    return plt.subplots(figsize=(width, height), dpi=110)


def save_figure(fig, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p)
    plt.close(fig)
    return p
