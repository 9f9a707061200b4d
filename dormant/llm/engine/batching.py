"""Batching for every forward pass: length buckets, shared prefixes, out-of-memory back-off.

Items are sorted by length and cut into batches of at most ``batch_size`` rows and ``max_tokens``
padded tokens, so little compute goes to padding. A batch that does not fit in memory is split
in half (recursively) and later batches use the smaller size. Scoring and generation both run
through ``map_batches``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from dormant.errors import DormantError
from dormant.report.console import track


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every sequence."""
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Index groups of similar length: at most ``batch_size`` rows and ``max_tokens`` padded tokens each."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or longest * (len(cur) + 1) > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_with_backoff(batch: list[int], fn: Callable[[list[int]], list[Any]], state: dict[str, int]) -> list[Any]:
    """Call ``fn(batch)``; on out-of-memory split the batch in halves (recursively) and shrink ``state['batch_size']``."""
    try:
        return fn(batch)
    except Exception as exc:  # noqa: BLE001 - only OOM is handled, everything else re-raised
        if not is_oom(exc) or len(batch) == 1:
            raise
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        state["batch_size"] = max(1, min(state.get("batch_size", len(batch)), half))
        return run_with_backoff(batch[:half], fn, state) + run_with_backoff(batch[half:], fn, state)


def map_batches(lengths: Sequence[int], fn: Callable[[list[int]], list[Any]], batch_size: int, max_tokens: int, *,
                desc: str = "", show_progress: bool = True) -> list[Any]:
    """``fn(indices)`` over length-bucketed batches of the items, with back-off; results in input order."""
    if batch_size < 1:
        raise DormantError(f"batch size {batch_size} is too small: give --batch-size 1 or more")
    state = {"batch_size": batch_size}
    out: list[Any] = [None] * len(lengths)
    batches = length_batches(lengths, batch_size, max_tokens)
    it: Iterable[list[int]] = track(batches, desc) if show_progress else batches
    for batch in it:
        for start in range(0, len(batch), state["batch_size"]):
            part = batch[start : start + state["batch_size"]]
            for i, r in zip(part, run_with_backoff(part, fn, state)):
                out[i] = r
    return out
