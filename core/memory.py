"""Keep a long bulk job's resident memory flat.

Worker threads decode images and build ~600 KB pixel tensors by the thousand. glibc's malloc
raises its mmap threshold after the first such buffer is freed and keeps one arena per thread,
so freed buffers stay in the process and resident memory grows far beyond what is alive. A fixed
threshold makes buffers of that size come from mmap and go back to the system when freed, and
two arenas bound what threads can hold on to. Linux with glibc only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_THRESHOLD_BYTES = 256 * 1024
_ARENAS = 2
_applied = False


def limit_allocator_retention() -> bool:
    """Apply the malloc settings once per process; True if they are in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _applied = bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)
            and libc.mallopt(_M_ARENA_MAX, _ARENAS)
        )
    except (OSError, AttributeError):
        return False
    return _applied
