"""CPU memory: let glibc's ``malloc`` keep freed memory for reuse instead of handing it back.

Why: PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves large blocks
(activations of a 224 px batch are tens of MB) with fresh ``mmap`` pages and returns them to the
operating system on ``free``; the next allocation page-faults them in again, zero-filled, at every
training step — twice as much of it in ATAC-Net's step, which holds the autograd graphs of two
backbone passes (the image and its zoomed crop, Algorithm 2). Measured with
``benchmarks/zoom_overhead.py --threads 2`` (MobileNetV2, 224 px, batch 16; three runs on the
development machine, ``benchmarks/results/zoom-overhead-cpu-2cores-2026-11-30-run{1,2,3}.json``):
with glibc's defaults one training pass took 0.59–0.66 s with 100 000–170 000 minor page faults per
step, and two passes in one graph 1.08–1.45 s; with this setting 0.39–0.50 s (under 2 000 faults)
and 0.91–1.02 s. PyTorch's CPU tuning guide recommends another allocator (tcmalloc, jemalloc) for
the same reason; this gets the effect from the C library already loaded.

What: two documented ``mallopt(3)`` settings, process-wide: ``M_MMAP_MAX = 0`` (serve every block
from the heap) and ``M_TRIM_THRESHOLD = -1`` (never trim the heap). The cost: the process keeps its
peak memory until it exits (as a GPU caching allocator does). Numbers computed are unchanged.

Where: :func:`atac.train.fit` and :func:`atac.evaluate.predict` call :func:`keep_freed_memory` for CPU
devices (the benchmark too, for the method and the plain backbone alike); a sweep's worker calls
:func:`release_freed_memory` after each run, so it does not hold one run's peak through the next.
No effect on other C libraries (musl, macOS, Windows). Opt out with the environment variable
``ATAC_CPU_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1   # <malloc.h>
M_MMAP_MAX = -4         # <malloc.h>
ENV = "ATAC_CPU_MALLOC"

_state: str | None = None


def keep_freed_memory() -> str:
    """Apply the setting once per process (idempotent); return what the process now uses.

    Returns:
        ``"glibc keep-freed (M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1)"`` when applied; ``"system"`` when
        ``ATAC_CPU_MALLOC=system`` asks for the C library's defaults, the C library is not glibc, or
        ``mallopt`` refused (a failure leaves the defaults; it never raises).
    """
    global _state
    if _state is not None:
        return _state
    _state = "system"
    if os.environ.get(ENV, "").strip().lower() == "system":
        return _state
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _state
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
        mmap_ok = libc.mallopt(M_MMAP_MAX, 0) == 1
        trim_ok = mmap_ok and libc.mallopt(M_TRIM_THRESHOLD, -1) == 1
    except (OSError, AttributeError):
        return _state
    if trim_ok:
        _state = "glibc keep-freed (M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1)"
    elif mmap_ok:  # half applied: say exactly what the process runs with
        _state = "glibc M_MMAP_MAX=0 (M_TRIM_THRESHOLD refused)"
    return _state


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the operating system now (glibc ``malloc_trim(0)``).

    For a long-lived process between runs (a sweep's pool worker): the setting of
    :func:`keep_freed_memory` keeps a run's peak for reuse while it trains; this gives it back when
    the run is over. A no-op where the setting was not applied. Never raises.
    """
    if _state is None or not _state.startswith("glibc"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_allocator() -> str:
    """What :func:`keep_freed_memory` set in this process (``"system"`` if it has not run)."""
    return _state or "system"
