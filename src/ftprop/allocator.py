"""Keeping freed memory in the process on CPU, so that each training step reuses it.

PyTorch allocates a CPU tensor with the C library's ``malloc``. glibc serves blocks above its
mmap threshold (128 KB, raised on its own up to at most 32 MB) with fresh pages from the kernel
and gives them back when they are freed. A training step frees its activations and gradients at
its end and allocates them again in the next step, so every step page-faults each large tensor
in again, a page of 4 KB at a time, zeroed by the kernel: 8193 faults for one 128x64x32x32
float32 tensor, which is 33.5 MB, above any threshold glibc would choose. On a small CPU machine
this costs about as much as a few passes over the tensor (``benchmarks/perf.py unit-time``
counts the faults), and a hard-threshold unit, which makes a fresh output where ReLU works in
place, pays it more often than ReLU does.

:func:`keep_freed_memory` tells glibc to serve every block from its heap (``M_MMAP_MAX = 0``) and
never to return the heap's free top to the kernel (``M_TRIM_THRESHOLD = -1``): after the first
step, the memory of the last one is reused. The process then holds on to its peak memory until
it exits. ``ftprop train`` does this on CPU unless ``train.keep_freed_memory = false``
(``benchmarks/perf.py allocator`` measures what it buys). It is process-wide and is not undone:
a later run in the same process with the option off still has it, and forked data-loader workers
inherit it (each keeps its own peak until it exits). Blocks above 64 MiB that a thread other than
the main one allocates still come from mmap (glibc's per-thread arenas are at most that large).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["can_keep_freed_memory", "keep_freed_memory", "kept"]

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_state = {"kept": False}


def _glibc():
    """glibc, if it is the process's C library and its malloc the one the process uses (whose
    mallopt takes these parameters); else None. An allocator put in front of it (LD_PRELOAD of
    jemalloc or tcmalloc) has a malloc of its own, which glibc's mallopt does not reach."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        process = ctypes.CDLL(None)
        process.gnu_get_libc_version  # noqa: B018 (glibc only: musl has none)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    address = lambda lib: ctypes.cast(lib.malloc, ctypes.c_void_p).value  # noqa: E731
    if address(process) != address(libc):  # malloc resolves to another library
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


def can_keep_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` can take effect here: the process allocates with glibc's
    malloc (not with macOS's, Windows', musl's or a preloaded jemalloc / tcmalloc)."""
    return _glibc() is not None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module's docstring); process-wide.

    Returns whether it is now in effect: False where the C library is not glibc (macOS,
    Windows, musl), which then allocates as before."""
    if _state["kept"]:
        return True
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; a trim threshold of -1 turns trimming off (mallopt(3)). Trimming
    # goes first: if it could not be turned off, mmap stays on and nothing has changed.
    _state["kept"] = libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1 and libc.mallopt(_M_MMAP_MAX, 0) == 1
    return _state["kept"]


def kept() -> bool:
    """Whether :func:`keep_freed_memory` has taken effect in this process."""
    return _state["kept"]
