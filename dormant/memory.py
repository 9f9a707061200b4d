"""Process memory: hand freed tensor buffers back to the operating system, and read peak resident memory.

On Linux with glibc, ``free`` returns a block to the operating system only if it was allocated
with ``mmap``, and glibc raises its mmap threshold each time such a block is freed (up to 32 MiB).
After the first few tensors are freed, later buffers of a few MiB therefore come from the heap and
stay resident after they are freed: ``dormant delta`` streams one float32 difference per modified
matrix (17 MB each at Qwen2.5-0.5B shapes, two threads), and those freed buffers kept ~1.2x one
model resident, onto which the adapter check then loaded the model. ``bound_heap()`` fixes the
threshold (``mallopt(M_MMAP_THRESHOLD)``, which also stops the adjustment), so every buffer of at
least that size goes back as soon as it is freed; ``trim_heap()`` returns the free parts of the heap
now (``malloc_trim``). Both do nothing where glibc is not the allocator.

``peak_rss()`` reads the high-water mark of the resident set (``VmHWM``) and ``reset_peak_rss()``
starts it again from the current size, so a stage's own peak can be measured (Linux only)::

    reset_peak_rss()
    export_lora(ft, base, delta, "adapter/")
    print(peak_rss() / 2**30, "GiB at most during the export")
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from functools import lru_cache
from pathlib import Path

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
HEAP_MMAP_THRESHOLD = 1 << 20  # buffers of 1 MiB and more are mapped, and unmapped when freed
_STATUS = Path("/proc/self/status")


@lru_cache(maxsize=1)
def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def bound_heap(threshold: int = HEAP_MMAP_THRESHOLD) -> bool:
    """Allocate buffers of ``threshold`` bytes or more with ``mmap`` from now on (see the module docstring).

    Process-wide and idempotent; True when the allocator took the setting."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1)


def trim_heap() -> None:
    """Give the heap's free memory back to the operating system now (glibc only)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _status_bytes(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def rss() -> int | None:
    """Resident bytes of this process now (None where ``/proc`` is not available)."""
    return _status_bytes("VmRSS")


def peak_rss() -> int | None:
    """Most resident bytes of this process since it started or since ``reset_peak_rss()``."""
    return _status_bytes("VmHWM")


def reset_peak_rss() -> bool:
    """Restart the peak from the current resident size (Linux ``clear_refs``); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
