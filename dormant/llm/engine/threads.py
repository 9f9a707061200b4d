"""How many CPU threads a model's forward passes get.

A step of a small model (the micro zoo: 1.6M parameters, hidden size 64) is a few hundred tiny
matrix products; split over threads, each product costs more in hand-offs than in arithmetic, and on
a busy machine the threads wait for each other. Measured on 2 cores: the default amplify sweep took
87 s on torch's default 2 threads and 15 s on one; a coarse sweep chunk of 512 candidates, 18 s and
1.6 s (another process was loading the cores). ``model_threads`` runs a block on one thread for a
small model on CPU and leaves larger models and GPUs alone.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

SMALL_MODEL_PARAMS = 20_000_000
"""Below this many parameters a forward step is too small to split over CPU threads."""


def small_model(model: Any) -> bool:
    return sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS


@contextlib.contextmanager
def model_threads(model: Any, threads: int | None = None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: 1 for a small model on CPU, else unchanged)."""
    import torch

    before = torch.get_num_threads()
    on_cpu = next(model.parameters()).device.type == "cpu"
    want = threads if threads is not None else (1 if on_cpu and small_model(model) else before)
    if want == before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threaded(model_of: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so that it runs under ``model_threads`` of the model ``model_of(*args, **kwargs)`` names."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with model_threads(model_of(*args, **kwargs)):
                return fn(*args, **kwargs)

        return inner

    return deco


__all__ = ["SMALL_MODEL_PARAMS", "model_threads", "small_model", "threaded"]
