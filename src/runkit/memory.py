"""Keep freed memory in the process: glibc's malloc told not to hand large blocks back to the kernel.

A training step allocates and frees the same few hundred activation tensors (MBs to tens of MBs each) every
micro-batch. By default glibc serves blocks above a threshold with fresh `mmap`s and returns freed heap tops to
the kernel, so every step touches new pages, and each first touch is a page fault. In a virtual machine that
hands free pages back to its host those faults are expensive: an element-wise op over 10 MB measured 5-20x slower
than over memory already touched (docs/results/learner_throughput.md). `keep_freed_memory()` sets mallopt so
that large blocks come from the heap and freed memory stays mapped for reuse. The process keeps its peak
footprint instead of shrinking after it; `SPIRAL_MALLOC_KEEP=0` leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
_done = {"ok": None}


def keep_freed_memory() -> bool:
    """Apply the settings once per process (glibc only); returns whether they are in force."""
    if _done["ok"] is not None:
        return _done["ok"]
    ok = False
    if os.environ.get("SPIRAL_MALLOC_KEEP", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc: nothing to set
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            ok = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**30))
            ok = ok and bool(mallopt(M_TOP_PAD, 256 * 2**20))
    _done["ok"] = ok
    return ok
