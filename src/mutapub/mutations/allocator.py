"""Freed memory kept for reuse during a short batch command (where the C library is glibc).

NumPy's temporaries, one array per check of a column of a million values, come from glibc's malloc,
which maps each large block afresh and unmaps it when freed: validating a million-row snapshot then
costs 12,000 to 25,000 page faults, a tenth of a second on a virtual machine. A batch command asks glibc
to serve such blocks from its heap and keep what is freed, so the next temporary reuses those pages.
Long-running processes (the server, the scheduler) keep glibc's defaults, which hand memory back.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit: larger blocks are still mapped and unmapped
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Have glibc serve blocks up to 32 MiB from its heap and keep up to 256 MiB freed there for
    reuse until the process ends; False where that is not possible (not Linux, not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all(mallopt(option, value) == 1 for option, value in settings)
