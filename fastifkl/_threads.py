"""Single-threaded BLAS for results that must not depend on the machine's thread count.

Multi-threaded OpenBLAS splits a GEMM (and LAPACK's eigensolvers) differently for different
thread counts, which changes the last bits of a Gram matrix; a model trained in the main
process (2 BLAS threads here) would then differ from one trained in a worker process (1 thread)
or on a Dask worker.  Training and decision values therefore run their BLAS calls on one
thread: runs are byte-for-byte reproducible serial, on a process pool or on a cluster, and the
parallelism comes from running channels / files side by side instead.  (Kernel ITML's exact
mode also runs its small SYRK folds on one thread, for speed: see :func:`fastifkl.itml.learn_kernel`.)

This is the package's one BLAS thread limiter; it is private to the package.
"""
from __future__ import annotations

import contextlib
import sys

_controller = None
_modules_seen = -1  # len(sys.modules) when _controller scanned the loaded libraries


def blas_single_thread():
    """Context manager limiting every loaded BLAS to one thread (no-op without threadpoolctl).

    NumPy and SciPy may each bring their own OpenBLAS; the libraries are scanned again whenever
    modules were imported since the last scan (an import is what loads a new BLAS), so a BLAS
    loaded after the first call (e.g. SciPy's, by importing :mod:`fastifkl.itml`) is limited too.
    """
    global _controller, _modules_seen
    try:
        if _controller is None or len(sys.modules) != _modules_seen:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
            _modules_seen = len(sys.modules)
        return _controller.limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
