"""A local process pool whose ordered ``imap`` survives a lost worker, as Dask survives one.

:class:`~fastifkl.parallel.Executor` runs its ``workers > 1`` jobs here. When a worker process
dies (killed by the out-of-memory killer, a signal, a crash in a native library), Python's
``ProcessPoolExecutor`` breaks and fails every job in flight. :class:`LocalPool` then starts a
new pool. The jobs that were running when it broke (each running job keeps a marker file while
it runs; a dead worker cannot remove its own) are run once more, one at a time, so that a second
death names its job for certain; the jobs that had not started are submitted again as usual;
then the rest go on. A job whose worker dies on that second run too is lost:
:class:`~fastifkl.errors.WorkerLostError` is raised at its position (``on_lost="raise"``) or
yielded in place of its result while the rest finish (``on_lost="yield"``).

Results do not depend on whether a job was re-run: a job is a deterministic function of its
item, and results are handed out in input order.
"""
from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .errors import WorkerLostError

__all__ = ["LocalPool"]

_MARKS = None  # in a worker process: the directory where running jobs keep a marker file
_END = object()


def _init_worker(marks: str | None, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """Worker initializer: where jobs mark that they are running, then the caller's initializer."""
    global _MARKS
    _MARKS = marks
    # A worker never forks. Saying so keeps Numba (which guards its thread-pool start with a
    # multiprocessing lock whenever the start method contains "fork") from making a named
    # semaphore that a killed worker would leak (the resource tracker would warn at exit).
    import multiprocessing

    try:
        multiprocessing.set_start_method("spawn", force=True)
    except (RuntimeError, ValueError):  # pragma: no cover
        pass
    if initializer is not None:
        initializer(*initargs)


def _run_marked(fn: Callable[[Any], Any], token: int, item: Any) -> Any:
    """In a worker: run job ``token`` with a marker file present while it runs.

    A worker that dies cannot remove its marker, so after a break the markers name exactly the
    jobs that were running (the others had finished or not started).
    """
    if _MARKS is None:
        return fn(item)
    mark = os.path.join(_MARKS, str(token))
    try:
        open(mark, "wb").close()
    except OSError:  # pragma: no cover - then the job counts as not running
        pass
    try:
        return fn(item)
    finally:
        try:
            os.unlink(mark)
        except OSError:  # pragma: no cover
            pass


class LocalPool:
    """``workers`` local processes; :meth:`imap` survives a worker that dies (module docstring).

    Parameters
    ----------
    workers : int
        Number of worker processes.
    mp_context : multiprocessing context
        How the workers are started (``forkserver`` or ``spawn``).
    initializer, initargs : callable and tuple, optional
        Run in each new worker process (e.g. thread limits).
    """

    def __init__(self, workers: int, mp_context, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> None:
        self.workers = workers
        self.mp_context = mp_context
        self.initializer, self.initargs = initializer, initargs
        self.lost_workers = 0  # worker processes lost (and replaced) so far
        self._pool = None
        self._marks = None  # directory of the marker files of running jobs
        self._tokens = 0

    def _get_pool(self):
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            if self._marks is None:
                import tempfile

                try:
                    self._marks = tempfile.mkdtemp(prefix="fastifkl-pool-")
                except OSError:  # pragma: no cover - then every job in flight counts as running
                    self._marks = None
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self.mp_context,
                                             initializer=_init_worker,
                                             initargs=(self._marks, self.initializer, self.initargs))
        return self._pool

    def imap(self, fn: Callable[[Any], Any], it: Iterator[Any], limit: int, on_lost: str = "raise") -> Iterator[Any]:
        """Yield ``fn(item)`` in input order, taking at most ``limit`` items ahead of the result.

        A job's own exception is re-raised at its position (the jobs not started are cancelled).
        A job lost twice raises :class:`WorkerLostError` there (``on_lost="raise"``) or is
        yielded as that error object (``on_lost="yield"``).
        """
        from concurrent.futures import wait

        pending: deque[_Job] = deque()
        index = 0
        try:
            while True:
                if len(pending) < limit:
                    item = next(it, _END)
                    if item is not _END:
                        pending.append(_Job(index, item, fn))
                        index += 1
                        self._submit(pending[-1], pending)
                        if len(pending) < limit:
                            continue
                if not pending:
                    return
                head = pending[0]
                if head.future is not None:
                    wait([head.future])
                    if _is_broken(head.future):
                        self._recover(pending)
                        continue
                pending.popleft()
                value = head.outcome()
                if isinstance(value, WorkerLostError) and on_lost == "raise":
                    raise value
                yield value
        finally:
            # reached on error, on a generator closed early, and (as a no-op) at the end
            for job in pending:
                if job.future is not None:
                    job.future.cancel()
            pending.clear()

    def close(self) -> None:
        """Shut the workers down (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._marks is not None:
            import shutil

            shutil.rmtree(self._marks, ignore_errors=True)
            self._marks = None

    # recovery ----------------------------------------------------------------------------------
    def _submit(self, job: _Job, pending) -> None:
        from concurrent.futures.process import BrokenProcessPool

        while job.future is None:
            try:
                self._send(job)
            except BrokenProcessPool:  # the pool broke since the last look: recover (which resubmits)
                job.future = None
                self._recover(pending)

    def _send(self, job: _Job) -> None:
        job.token = self._tokens
        self._tokens += 1
        job.future = None
        job.future = self._get_pool().submit(_run_marked, job.fn, job.token, job.item)

    def _recover(self, pending) -> None:
        """After a worker died: a new pool; each job that was running when it broke is re-run
        alone, once; the jobs that had not started yet are submitted again as usual.

        Run alone, a job whose worker dies again is certainly one that kills it: it is settled
        as lost. The others get their results (or their own exceptions).
        """
        from concurrent.futures.process import BrokenProcessPool

        running, _ = self._drop_pool()
        self.lost_workers += 1
        for job in pending:
            if job.future is None or not _is_broken(job.future) or (running is not None and job.token not in running):
                continue  # settled, finished before the break, or not running (resubmitted below)
            job.future = None
            self._send(job)  # the second and last run: alone, waited for here
            fut = job.future
            job.future = None
            try:
                job.settle(fut.result())
            except Exception as exc:  # kept and re-raised at the job's position
                if _is_broken(fut):
                    _, codes = self._drop_pool()
                    self.lost_workers += 1
                    job.settle_lost(codes)
                else:
                    job.settle_error(exc)
        for job in pending:
            if not job.settled and (job.future is None or _is_broken(job.future)):
                try:
                    self._send(job)
                except BrokenProcessPool:  # pragma: no cover - a fresh pool with nothing run yet
                    job.future = None

    def _drop_pool(self) -> tuple[set[int] | None, list[int]]:
        """Shut a broken pool down; return the tokens of the jobs that were running when it broke
        (None if unknown) and the workers' exit codes (best effort)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return set(), []
        try:  # a private attribute of the standard library: only ever read, and guarded
            procs = list((getattr(pool, "_processes", None) or {}).values())
        except Exception:  # pragma: no cover
            procs = []
        pool.shutdown(wait=True, cancel_futures=True)
        codes = []
        for p in procs:
            try:
                p.join(timeout=5)
                if p.exitcode not in (None, 0):
                    codes.append(p.exitcode)
            except Exception:  # pragma: no cover
                pass
        running = None
        if self._marks is not None:  # every worker is gone now: what is marked was running
            running = set()
            for name in os.listdir(self._marks):
                running.add(int(name))
                try:
                    os.unlink(os.path.join(self._marks, name))
                except OSError:  # pragma: no cover
                    pass
        return running, codes


def _is_broken(fut) -> bool:
    """True if ``fut`` failed because its process pool broke (a worker process died)."""
    from concurrent.futures.process import BrokenProcessPool

    return fut.done() and not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def job_name(index: int, fn) -> str:
    """How a lost job is named in messages: ``job 17 (train_channel)``."""
    return f"job {index} ({getattr(fn, '__name__', type(fn).__name__)})"


def _death(codes: list[int]) -> str:
    """'killed by signal 9 (SIGKILL)' from the exit codes of a broken pool's workers.

    The pool terminates its other workers with SIGTERM when one dies, so a code other than
    -SIGTERM is the one that died first.
    """
    own = [c for c in codes if c != -signal.SIGTERM] or codes
    if not own:
        return "killed, e.g. by the out-of-memory killer?"
    c = own[0]
    if c < 0:
        try:
            name = signal.Signals(-c).name
        except ValueError:
            name = "?"
        return f"killed by signal {-c} ({name}){'; out of memory?' if -c == signal.SIGKILL else ''}"
    return f"exited with code {c}"


class _Job:
    """One item of an ``imap``: its future, or its settled outcome."""

    __slots__ = ("index", "item", "fn", "future", "token", "settled", "value", "error")

    def __init__(self, index: int, item: Any, fn: Callable[[Any], Any]) -> None:
        self.index, self.item, self.fn = index, item, fn
        self.future = None
        self.token = -1
        self.settled = False
        self.value = self.error = None

    def settle(self, value: Any) -> None:
        self.settled, self.value = True, value

    def settle_error(self, exc: BaseException) -> None:
        self.settled, self.error = True, exc

    def settle_lost(self, codes: list[int]) -> None:
        why = _death(codes)
        self.settle(WorkerLostError(f"{job_name(self.index, self.fn)}: its worker process died twice ({why})",
                                    self.index, self.item, why))

    def outcome(self) -> Any:
        """The result (blocking), re-raising the job's own exception."""
        if self.settled:
            if self.error is not None:
                raise self.error
            return self.value
        return self.future.result()
