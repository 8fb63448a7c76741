"""Freed heap memory kept for the next check: glibc's malloc thresholds fixed at their ceiling.

A check at n >= 1e5 allocates tens of MiB of NumPy arrays and frees them when it ends. glibc
returns the freed top of its heap to the OS once more than its trim threshold is free there,
and the next check takes the same pages back, one page fault (~2 us here) per 4 KiB:
~4000 faults, a third of a check of swish at n = 1e5 (bench/item_speed.py, bench/numpy_pages.py).
glibc adjusts its thresholds itself (mmap threshold = the largest freed mmapped chunk, trim
threshold = twice that) up to a ceiling of 32 MiB and 64 MiB on 64-bit systems; an array
gradcheck frees rarely reaches them. :func:`keep_heap` sets them to that ceiling once, on the
first check, through ``mallopt`` (glibc only), so up to 64 MiB of freed memory stays with the
process for the next check instead of faulting back in.

What it changes, said plainly: the settings are the process's, and stay after the check;
arrays under 32 MiB then come from the heap rather than from their own mappings, and up to 64
MiB that the process freed stays mapped. ``GRADCHECK_KEEP_HEAP=0`` in the environment leaves
malloc alone; so do glibc's own ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_``, which
are the user's choice. Verdicts do not depend on it: only where memory comes from.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["heap_kept", "keep_heap"]

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD  # the ratio glibc's own adjustment keeps

_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_set: bool | None = None  # decided on the first call


def keep_heap() -> bool:
    """Set glibc's trim and mmap thresholds to their ceiling, once per process; True when set
    (now or before). Nothing on other C libraries, with ``GRADCHECK_KEEP_HEAP=0``, or where
    the user set glibc's own ``MALLOC_*`` variables."""
    global _set
    if _set is None:
        _set = _mallopt()
    return _set


def heap_kept() -> bool:
    """Whether :func:`keep_heap` set the thresholds (False before its first call): then an
    array up to 32 MiB that a check frees is reused by the next without page faults."""
    return bool(_set)


def _mallopt() -> bool:
    if (os.environ.get("GRADCHECK_KEEP_HEAP", "1") == "0" or not sys.platform.startswith("linux")
            or any(name in os.environ for name in _USER_SETTINGS)):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the process already runs on
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: its mallopt's numbering
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
