"""A batch command keeps freed memory for reuse instead of handing it back to the OS (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
import numpy as np
from mutapub.mutations.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for mib in (8, 16, 24):  # temporaries of the size validation makes, touched and freed
    block = np.ones(mib << 17, dtype=np.int64)
    del block
print(libc.mallinfo2().fordblks >> 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_stay_in_the_heap_for_the_next_temporary() -> None:
    def kept_mib(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert kept_mib("default") < 8  # glibc unmaps each large block when it is freed
    assert kept_mib("keep") >= 24  # kept, so the next one reuses pages already faulted in
