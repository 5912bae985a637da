"""One ``map`` over independent jobs: serially, on local processes, or on a Dask cluster.

Training runs 64 independent channel jobs and ``separate`` runs one job per file; both go
through :func:`executor`::

    with executor(workers=4) as ex:                    # local process pool
        models = ex.map(train_channel, channel_jobs)    # results in input order
    with executor(scheduler="tcp://host:8786") as ex:   # Dask distributed (extra "dask")
        for result in ex.imap(separate_file, paths):    # streamed, bounded in-flight work
            ...

Every backend calls ``fn(item)`` for each item and returns the results in input order, so the
results are identical whichever backend ran them (the jobs themselves must be deterministic,
e.g. seeded per job, never from a shared global random state).

Local processes are started with the ``forkserver`` (or ``spawn``) method, never ``fork``:
forking a process that already runs Numba or BLAS thread pools can deadlock. Each worker limits
its BLAS / Numba / OpenMP threads to ``threads_per_worker`` (default: cores // workers) so that
``workers`` processes do not oversubscribe the machine.

At most ``max_in_flight`` jobs (default ``2 * workers``) are submitted at any time: a batch of
thousands of files is never pickled and queued all at once, and results are released as soon
as the caller has consumed them.

A lost worker is survived, as Dask survives one: the local pool (:mod:`fastifkl.pool`) runs the
jobs a dead worker held once more, alone; a job whose worker dies twice is lost: ``imap``
raises :class:`~fastifkl.errors.WorkerLostError` at its position (``on_lost="raise"``, the
default: training needs every channel) or yields the error object in place of its result and
finishes the rest (``on_lost="yield"``: a batch of files). ``Executor.lost_workers`` counts the
deaths. On Dask, a task the cluster gives up on (``KilledWorker``) is treated the same way.
Results do not depend on whether a job was re-run (jobs are deterministic functions of their item).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import InputError, WorkerLostError
from .pool import LocalPool, job_name

__all__ = ["executor", "Executor", "cpu_count"]

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def cpu_count() -> int:
    """Cores this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _limit_threads(n: int) -> None:
    """Worker initializer: cap BLAS/OpenMP/Numba threads at ``n`` in this process.

    Environment variables act on libraries not loaded yet; threadpoolctl (when installed) and
    ``numba.set_num_threads`` act on the ones already loaded.
    """
    import sys

    for key in _THREAD_ENV:
        os.environ[key] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:  # pragma: no cover - threadpoolctl missing or unsupported library
        pass
    if "numba" in sys.modules:
        try:
            import numba

            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except Exception:  # pragma: no cover
            pass


def _mp_context():
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _is_dask_client(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("submit", "gather", "scheduler_info", "close"))


class Executor:
    """Ordered ``map``/``imap`` over a serial loop, a process pool or a Dask cluster.

    Use :func:`executor` to build one. As a context manager it shuts down what it started
    (the pool, or the Dask client it opened from an address; a client passed in is left open).

    Parameters
    ----------
    workers : int
        1 = run in this process; n > 1 = a local pool of n processes; -1 = one per core.
        Ignored when ``scheduler`` is given.
    scheduler : str or dask.distributed.Client or None
        Address of a Dask scheduler (``"tcp://host:8786"``) or a connected client.
    max_in_flight : int or None
        Most jobs submitted and not yet consumed; default ``2 * workers`` (Dask: ``2 *`` the
        cluster's total threads).
    threads_per_worker : int or None
        BLAS/Numba threads in each local worker process; default ``max(1, cores // workers)``.
    """

    def __init__(self, workers: int = 1, scheduler: Any = None, max_in_flight: int | None = None,
                 threads_per_worker: int | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or (workers < 1 and workers != -1):
            raise InputError(f"workers must be a positive integer (or -1 for one per core), got {workers!r}")
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise InputError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        if threads_per_worker is not None and (not isinstance(threads_per_worker, int) or threads_per_worker < 1):
            raise InputError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
        self.workers = cpu_count() if workers == -1 else workers
        self.scheduler = scheduler
        self.threads_per_worker = threads_per_worker
        self._max_in_flight = max_in_flight
        self._pool: LocalPool | None = None
        self._lost_before = 0  # workers lost by pools already closed
        self._client = None
        self._own_client = False
        if scheduler is not None:
            self.kind = "dask"
            self._client, self._own_client = self._connect(scheduler)
        elif self.workers == 1:
            self.kind = "serial"
        else:
            self.kind = "processes"

    # backends ------------------------------------------------------------------------------
    @staticmethod
    def _connect(scheduler: Any):
        if not isinstance(scheduler, str) and _is_dask_client(scheduler):
            return scheduler, False
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise InputError("scheduler must be an address like tcp://host:8786 or a dask.distributed.Client, "
                             f"got {scheduler!r}")
        try:
            from distributed import Client
        except ImportError:
            raise InputError('running on a Dask cluster needs Dask: pip install "fastifkl[dask]"') from None
        try:
            return Client(scheduler.strip(), timeout="10s"), True
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None

    def _get_pool(self) -> LocalPool:
        if self._pool is None:
            tpw = self.threads_per_worker or max(1, cpu_count() // self.workers)
            self._pool = LocalPool(self.workers, _mp_context(), initializer=_limit_threads, initargs=(tpw,))
        return self._pool

    @property
    def lost_workers(self) -> int:
        """Local worker processes lost (and replaced) so far."""
        return self._lost_before + (self._pool.lost_workers if self._pool is not None else 0)

    @property
    def max_in_flight(self) -> int:
        """The bound on submitted-but-unconsumed jobs."""
        if self._max_in_flight is not None:
            return self._max_in_flight
        if self.kind == "dask":
            try:
                total = sum(self._client.nthreads().values())
            except Exception:  # pragma: no cover
                total = 1
            return max(2, 2 * total)
        return max(1, 2 * self.workers)

    # public ----------------------------------------------------------------------------------
    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], max_in_flight: int | None = None,
             *, on_lost: str = "raise") -> Iterator[Any]:
        """Yield ``fn(item)`` for each item, in input order, with bounded in-flight work.

        ``items`` is consumed lazily: at most ``max_in_flight`` items are taken from it (and
        submitted) ahead of the result being yielded. An exception raised by a job is re-raised
        here, at that job's position, and the jobs not yet started are cancelled.

        A job whose worker process died is re-run once (see the module docstring); if it is
        lost again, ``on_lost="raise"`` raises :class:`~fastifkl.errors.WorkerLostError` at its
        position, ``on_lost="yield"`` yields that error object in its place and goes on.
        """
        if max_in_flight is None:
            max_in_flight = self.max_in_flight
        elif not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InputError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        if on_lost not in ("raise", "yield"):
            raise InputError(f"on_lost must be 'raise' or 'yield', got {on_lost!r}")
        if self.kind == "serial":
            return (fn(item) for item in items)
        if self.kind == "processes":
            return self._get_pool().imap(fn, iter(items), max_in_flight, on_lost)
        return self._ordered_dask(fn, iter(items), max_in_flight, on_lost)

    # Dask ------------------------------------------------------------------------------------
    def _ordered_dask(self, fn, it, limit, on_lost) -> Iterator[Any]:
        client = self._client
        pending: deque = deque()
        index = 0

        def outcome(i, item, fut):
            try:
                return fut.result()
            except Exception as exc:
                if type(exc).__name__ != "KilledWorker":
                    raise
                why = f"the Dask cluster lost a worker on it each time it ran ({type(exc).__name__})"
                lost = WorkerLostError(f"{job_name(i, fn)}: {why}", i, item, why)
                if on_lost == "raise":
                    raise lost from None
                return lost

        try:
            for item in it:
                pending.append((index, item, client.submit(fn, item, pure=False)))
                index += 1
                if len(pending) >= limit:
                    yield outcome(*pending.popleft())
            while pending:
                yield outcome(*pending.popleft())
        finally:
            for _, _, fut in pending:
                fut.cancel()
            pending.clear()

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``[fn(item) for item in items]`` on this backend (input order, bounded in-flight)."""
        return list(self.imap(fn, items))

    def starmap(self, fn: Callable[..., Any], arg_tuples: Iterable[tuple]) -> list[Any]:
        """``[fn(*args) for args in arg_tuples]`` on this backend."""
        return self.map(_Star(fn), arg_tuples)

    def close(self) -> None:
        """Shut down the pool / the Dask client this executor opened (idempotent)."""
        if self._pool is not None:
            self._pool.close()
            self._lost_before += self._pool.lost_workers
            self._pool = None
        if self._client is not None and self._own_client:
            self._client.close()
        self._client = None if self._own_client else self._client

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.scheduler if self.kind == "dask" else self.workers
        return f"Executor(kind={self.kind!r}, {where!r})"


class _Star:
    """Picklable ``lambda args: fn(*args)``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: tuple) -> Any:
        return self.fn(*args)


def executor(workers: int = 1, scheduler: Any = None, *, max_in_flight: int | None = None,
             threads_per_worker: int | None = None) -> Executor:
    """Build the :class:`Executor` for ``--workers N`` / ``--scheduler ADDRESS``.

    Parameters
    ----------
    workers : int
        1 (default) runs serially in this process; n > 1 uses a local process pool of n
        workers (forkserver/spawn start method); -1 uses one worker per core.
    scheduler : str or dask.distributed.Client, optional
        A Dask scheduler address (``"tcp://host:8786"``) or a connected client; overrides
        ``workers``. Needs the ``dask`` extra (``pip install "fastifkl[dask]"``).
    max_in_flight, threads_per_worker : int, optional
        See :class:`Executor`.

    Returns
    -------
    Executor
        Use as a context manager: ``with executor(4) as ex: results = ex.map(fn, items)``.
        ``fn`` and the items must be picklable (module-level functions) for processes and Dask.
    """
    return Executor(workers=workers, scheduler=scheduler, max_in_flight=max_in_flight,
                    threads_per_worker=threads_per_worker)
