"""Pictures of a network's structure: widths by layer, the block matrix, contents by position."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dormant.net.structure.motifs import MotifsResult, Segmentation
from dormant.report.plots import new_figure, save_figure

_SEGMENT_COLOURS = {"head": "#8c564b", "tail": "#7f7f7f"}
_GROUP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf", "#bcbd22", "#e377c2"]


def plot_widths(widths: list[int], path: str | Path, seg: Segmentation | None = None, title: str = "") -> Path:
    """Bar chart of each layer's output width (layer 1..N); coloured head / block groups / tail."""
    seq = widths[1:]
    fig, ax = new_figure(12, 4)
    x = np.arange(1, len(seq) + 1)
    colours = ["#1f77b4"] * len(seq)
    if seg is not None:
        for i in range(seg.head):
            colours[i] = _SEGMENT_COLOURS["head"]
        for g in seg.groups:
            c = _GROUP_COLOURS[g.variant % len(_GROUP_COLOURS)]
            for j in range(g.start_block, g.start_block + g.count):
                for q in range(seg.period):
                    colours[seg.block_start(j) + q] = c
        for i in range(seg.head + seg.n_blocks * seg.period, len(seq)):
            colours[i] = _SEGMENT_COLOURS["tail"]
        from matplotlib.patches import Patch

        handles = [Patch(color=_GROUP_COLOURS[g.variant % len(_GROUP_COLOURS)], label=f"blocks {g.label} x{g.count}") for g in seg.groups]
        handles += [Patch(color=_SEGMENT_COLOURS["head"], label=f"head ({seg.head})"), Patch(color=_SEGMENT_COLOURS["tail"], label=f"tail ({seg.tail})")]
        ax.legend(handles=handles, loc="upper right", fontsize=8, ncol=2)
    # one vertical line per layer (a LineCollection: fast for thousands of layers)
    ax.vlines(x, 0, seq, colors=colours, linewidth=max(0.3, min(4.0, 600 / max(1, len(seq)))))
    ax.set_xlabel("layer (Linear index, 1-based)")
    ax.set_ylabel("output width")
    ax.set_title(title or f"{len(seq)} layers, input width {widths[0]}")
    ax.set_xlim(0.5, len(seq) + 0.5)
    ax.set_ylim(0, max(seq) * 1.05)
    return save_figure(fig, path)


def plot_blocks(seq: list[int], seg: Segmentation, path: str | Path) -> Path:
    """Heat map of widths: one row per block, one column per position in the period."""
    mat = np.asarray([seq[seg.block_start(j) : seg.block_start(j) + seg.period] for j in range(seg.n_blocks)])
    fig, ax = new_figure(10, max(3.0, min(10.0, 0.08 * seg.n_blocks + 2)))
    im = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="width")
    for q in seg.differ_at:
        ax.axvline(q, color="red", linewidth=0.8, alpha=0.7)
    ax.set_xlabel(f"position in block (period {seg.period}); red: positions where block variants differ")
    ax.set_ylabel("block")
    ax.set_title(f"{seg.n_blocks} blocks of {seg.period} layers")
    return save_figure(fig, path)


def plot_positions(result: MotifsResult, path: str | Path) -> Path:
    """Distinct weight / bias contents across blocks for each position in the period (1 = ROM)."""
    rows = result.positions or []
    fig, ax = new_figure(10, 3.5)
    q = np.arange(len(rows))
    ax.bar(q - 0.2, [r.distinct_weights for r in rows], width=0.4, label="distinct weights")
    ax.bar(q + 0.2, [r.distinct_biases for r in rows], width=0.4, label="distinct biases")
    ax.set_yscale("log")
    ax.set_xlabel("position in block")
    ax.set_ylabel("distinct contents across blocks")
    ax.set_title("layers identical in every block (1) vs per-block constants")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
