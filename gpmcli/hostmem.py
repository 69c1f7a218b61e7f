"""Host allocator settings for a ``gpm`` process (Linux with glibc only; the library never changes them on import).

A network evaluated on CPU allocates and frees the same few-MB activation buffers at every call. glibc's default
malloc gives large blocks back to the kernel (``mmap``/``munmap``, heap trimming) and takes them again at the next
call, so every call pays page faults: on 2 cores, 256 `edm` samples of `mnist-edm` spent 11.5 of 87 CPU-seconds in
the kernel. :func:`tune_malloc` raises the mmap threshold to glibc's maximum (32 MiB) and the trim threshold to
512 MiB, so the buffers are reused: the same run then takes 0.5 s of kernel time and 1.3x less wall time
(``python benchmarks/mnist_default.py --compare-malloc -n 256 --kinds edm``; at 64 samples the difference is within
noise), for 14 MB more peak resident memory there (benchmarks/README.md). ``GPM_MALLOC_TUNE=0``, or setting
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` yourself, leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
TRIM_THRESHOLD = 512 << 20


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True if they were set."""
    if os.environ.get("GPM_MALLOC_TUNE", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user's own malloc settings win
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has no mallopt thresholds)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
