"""glibc malloc settings for a training process (`svertka train`, the benchmarks).

Every training step frees and reallocates the same activation buffers (megabytes
each). By default glibc returns the top of the heap to the OS once more than
its trim threshold is free, and maps large blocks with mmap and unmaps them on
free, so the next step faults the same pages in again. Keeping freed memory in
the process gave vgg_fm 3-4% more images/s on 2 cores (set through the
equivalent MALLOC_* environment variables; benchmarks/README.md, "Speed
probes"). It changes the whole process's allocator, so only the command line
and the benchmarks call it, never the library's ``train()``.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed memory instead of returning it
MMAP_THRESHOLD = 32 << 20  # blocks under 32 MiB come from the heap, not from mmap


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds; False (and no change) off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no libc found, or one without mallopt (macOS, musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return (bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)))
