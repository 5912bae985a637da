"""Single-threaded BLAS for results that must not depend on the machine's thread count.

Multi-threaded OpenBLAS splits a GEMM (and LAPACK's eigensolvers) differently for different
thread counts, which changes the last bits of a Gram matrix; a model trained in the main
process (2 BLAS threads here) would then differ from one trained in a worker process (1 thread)
or on a Dask worker.  Training and decision values therefore run their BLAS calls on one
thread: runs are byte-for-byte reproducible serial, on a process pool or on a cluster, and the
parallelism comes from running channels / files side by side instead.
"""
from __future__ import annotations

import contextlib

_controller = None


def blas_single_thread():
    """Context manager limiting BLAS to one thread (no-op when threadpoolctl is missing)."""
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        return _controller.limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
