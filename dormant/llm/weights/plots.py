"""Pictures of weight changes: the layer x module heatmap of ``diff`` and the spectra of ``delta``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dormant.llm.weights.names import component_sort_key
from dormant.report.plots import new_figure, save_figure


def plot_diff_heatmap(grid: dict[str, dict[str, object]], title: str, path: str | Path) -> Path:
    """Relative delta norm per (layer, module) on a log colour scale; identical cells are blank."""
    rows = list(grid)
    cols = sorted({c for r in grid.values() for c in r}, key=component_sort_key)
    data = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            cell = grid[r].get(c)
            if cell is not None and cell.modified:
                data[i, j] = max(cell.rel_norm, 1e-12)
    fig, ax = new_figure(max(5.0, 0.55 * len(cols) + 2.5), max(3.0, 0.22 * len(rows) + 1.8))
    finite = data[np.isfinite(data)]
    if finite.size:
        from matplotlib.colors import LogNorm

        lo, hi = float(finite.min()), float(finite.max())
        im = ax.imshow(data, aspect="auto", cmap="magma_r", norm=LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001)), interpolation="nearest")
        fig.colorbar(im, ax=ax, label="||delta|| / ||W_base||")
    else:
        ax.imshow(np.zeros_like(data), aspect="auto", cmap="Greys", vmin=0, vmax=1)
        ax.text(0.5, 0.5, "no tensor modified", transform=ax.transAxes, ha="center")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), ["global" if r == "-" else r for r in rows], fontsize=6 if len(rows) > 30 else 8)
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_spectra(spectra: dict[str, list[float]], path: str | Path, max_lines: int = 40) -> Path:
    """Normalised singular values (s_i / s_1) of each delta, log scale; one line per tensor."""
    fig, ax = new_figure(8, 4.5)
    items = list(spectra.items())[:max_lines]
    cmap = __import__("matplotlib").colormaps["viridis"]
    for k, (name, s) in enumerate(items):
        s = np.asarray(s, dtype=float)
        if s.size == 0 or s[0] <= 0:
            continue
        ax.semilogy(np.arange(1, s.size + 1), np.maximum(s / s[0], 1e-12), color=cmap(k / max(1, len(items) - 1)), lw=1, alpha=0.8)
    ax.set_xlabel("singular value index")
    ax.set_ylabel("s_i / s_1")
    ax.set_title(f"delta spectra ({len(items)} of {len(spectra)} tensors)", fontsize=9)
    ax.grid(True, which="both", alpha=0.2)
    return save_figure(fig, path)


def plot_rank_per_layer(ranks: dict[str, dict[int, float | None]], path: str | Path, ylabel: str = "rank") -> Path:
    """One line per component: a rank-like number (LoRA estimate, effective rank) against layer."""
    fig, ax = new_figure(8, 4)
    for comp, per_layer in sorted(ranks.items(), key=lambda kv: component_sort_key(kv[0])):
        xs = sorted(per_layer)
        ys = [per_layer[x] if per_layer[x] is not None else math.nan for x in xs]
        ax.plot(xs, ys, marker="o", ms=3, lw=1, label=comp, ls="--" if "%" in comp else "-")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.2)
    return save_figure(fig, path)
