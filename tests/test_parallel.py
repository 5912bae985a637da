"""parallel.executor: serial, local process pool and Dask give identical, ordered results, and
the local pool survives a worker process killed with SIGKILL."""
import os
import signal
import sys
import time

import numpy as np
import pytest

from fastifkl.errors import FastifklError, InputError, WorkerLostError
from fastifkl.parallel import executor


# ---- jobs (module level so that they pickle by reference) ---------------------------------
def channel_job(seed):
    """A small deterministic 'channel training' job: seeded data -> SVM decision values."""
    from fastifkl.svm import ChannelSVM

    rng = np.random.default_rng(seed)
    y = (rng.random(120) < 0.5).astype(np.int8)
    x = rng.normal(size=(120, 5))
    x[:, 0] += 2 * y - 1
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    gram = np.exp(-d2 / 10.0)
    svm = ChannelSVM(C=1.0).fit(gram, y)
    return seed, svm.support_, svm.decision(gram[:, svm.support_])


def slow_identity(item):
    time.sleep(0.02 * (item % 3))  # out-of-order completion
    return item, os.getpid()


def fail_on_three(item):
    if item == 3:
        raise ValueError(f"job {item} failed on purpose")
    return item


def add(a, b):
    return a + b


def killed_once(job):
    """``channel_job(seed)``, but the worker running a victim kills itself (SIGKILL) the first time."""
    seed, marks, victims = job
    if seed in victims:
        mark = os.path.join(marks, f"{seed}.mark")
        if not os.path.exists(mark):
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return channel_job(seed)


def killed_always(job):
    seed, victim = job
    if seed == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return seed * seed


def exits_always(job):
    if job == 2:
        os._exit(3)  # a native library calling exit() in a worker
    return job


def _same(results_a, results_b):
    assert len(results_a) == len(results_b)
    for ra, rb in zip(results_a, results_b):
        assert ra[0] == rb[0]
        np.testing.assert_array_equal(ra[1], rb[1])
        assert ra[2].tobytes() == rb[2].tobytes()  # bit-identical


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def serial_reference():
    with executor(1) as ex:
        return ex.map(channel_job, range(8))


def test_serial_is_plain_map(serial_reference):
    assert [r[0] for r in serial_reference] == list(range(8))
    _same(serial_reference, [channel_job(s) for s in range(8)])
    with executor(1) as ex:
        assert ex.kind == "serial"
        assert ex.starmap(add, [(1, 2), (3, 4)]) == [3, 7]


def test_process_pool_identical_and_ordered(serial_reference):
    with executor(2) as ex:
        assert ex.kind == "processes"
        _same(ex.map(channel_job, range(8)), serial_reference)
        out = ex.map(slow_identity, range(12))
        assert [o[0] for o in out] == list(range(12))
        pids = {o[1] for o in out}
        assert os.getpid() not in pids and len(pids) == 2  # really ran in 2 other processes
        assert ex.starmap(add, [(1, 2), (3, 4)]) == [3, 7]


def test_dask_identical_and_ordered(dask_client, serial_reference):
    with executor(scheduler=dask_client) as ex:
        assert ex.kind == "dask"
        _same(ex.map(channel_job, range(8)), serial_reference)
        out = ex.map(slow_identity, range(12))
        assert [o[0] for o in out] == list(range(12))
        assert os.getpid() not in {o[1] for o in out}
    # a client handed in is not closed by the executor
    assert dask_client.status == "running"
    # by address: the executor opens (and closes) its own client
    with executor(scheduler=dask_client.scheduler.address) as ex:
        _same(ex.map(channel_job, range(3)), serial_reference[:3])


@pytest.mark.parametrize("backend", ["serial", "processes", "dask"])
def test_error_propagates(backend, request):
    kwargs = {"serial": {}, "processes": {"workers": 2}}.get(backend)
    if backend == "dask":
        kwargs = {"scheduler": request.getfixturevalue("dask_client")}
    with executor(**kwargs) as ex:
        with pytest.raises(ValueError, match="job 3 failed on purpose"):
            ex.map(fail_on_three, range(6))
        # the executor still works afterwards
        assert ex.map(fail_on_three, [0, 1, 2]) == [0, 1, 2]


class _Counting:
    """An iterable that records how many items have been taken from it."""

    def __init__(self, n):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield i


@pytest.mark.parametrize("backend", ["serial", "processes", "dask"])
def test_imap_bounded_in_flight(backend, request):
    limit = 3
    kwargs = {"serial": {}, "processes": {"workers": 2}}.get(backend)
    if backend == "dask":
        kwargs = {"scheduler": request.getfixturevalue("dask_client")}
    src = _Counting(40)
    with executor(**kwargs, max_in_flight=limit) as ex:
        assert ex.max_in_flight == limit
        got = []
        max_ahead = 0
        for j, (item, _pid) in enumerate(ex.imap(slow_identity, src)):
            got.append(item)
            # items taken from the source but whose results have not been handed out yet
            max_ahead = max(max_ahead, src.taken - j)
        assert got == list(range(40))
        assert max_ahead <= limit
        if backend != "serial":
            assert max_ahead == limit  # the bound is actually used: work is overlapped
        # an early break stops taking items
        src2 = _Counting(1000)
        for j, _ in enumerate(ex.imap(slow_identity, src2)):
            if j == 2:
                break
        assert src2.taken <= 3 + limit


def test_bad_arguments_and_missing_dask(monkeypatch):
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(InputError):
            executor(bad)
    with pytest.raises(InputError):
        executor(2, max_in_flight=0)
    with pytest.raises(InputError):
        executor(scheduler=12345)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(InputError, match=r'pip install "fastifkl\[dask\]"'):
        executor(scheduler="tcp://127.0.0.1:8786")


# ---- a lost worker (kill -9) ----------------------------------------------------------------
@pytest.mark.parametrize("victims", [(3,), (0, 7)])
def test_pool_survives_a_worker_killed_once(tmp_path, serial_reference, victims):
    with executor(2, max_in_flight=3) as ex:
        out = ex.map(killed_once, [(s, str(tmp_path), victims) for s in range(8)])
        assert ex.lost_workers == len(victims)  # each death seen, a new pool each time
        _same(out, serial_reference)  # identical results, in input order, after the re-runs
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{v}.mark" for v in victims)
        # the executor goes on working on its new pool
        _same(ex.map(channel_job, range(3)), serial_reference[:3])


def test_job_killed_twice_is_reported_and_the_rest_finish():
    with executor(2) as ex:
        out = list(ex.imap(killed_always, [(s, 5) for s in range(12)], on_lost="yield"))
        lost = out.pop(5)
        assert isinstance(lost, WorkerLostError) and isinstance(lost, FastifklError) and lost.exit_code == 1
        assert lost.index == 5 and lost.item == (5, 5)
        assert "died twice" in str(lost) and "killed by signal 9 (SIGKILL)" in lost.reason
        assert out == [s * s for s in range(12) if s != 5]  # every other job done, in order
        assert ex.lost_workers == 2  # the shared run, then the run alone
        # the default: raise at the job's position (training: a clear one-line error, no traceback)
        got = []
        with pytest.raises(WorkerLostError, match=r"job 5 \(killed_always\): its worker process died twice"):
            for r in ex.imap(killed_always, [(s, 5) for s in range(12)]):
                got.append(r)
        assert got == [s * s for s in range(5)]
        assert ex.map(killed_always, [(1, 5)]) == [1]  # still usable


def test_worker_exit_code_is_reported():
    with executor(2) as ex:
        out = list(ex.imap(exits_always, range(5), on_lost="yield"))
    assert out[:2] == [0, 1] and out[3:] == [3, 4]
    assert isinstance(out[2], WorkerLostError) and out[2].reason == "exited with code 3"


def test_on_lost_is_checked():
    with executor(1) as ex, pytest.raises(InputError, match="on_lost"):
        ex.imap(add, [], on_lost="ignore")


def test_dask_killed_worker_is_a_lost_job():
    """Dask's own KilledWorker (a task whose workers died more than allowed-failures times; Dask
    also counts the tasks queued on the same worker) becomes the same WorkerLostError."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None,
                                     silence_logs=50) as cluster, distributed.Client(cluster) as client:
        with executor(scheduler=client) as ex:
            out = list(ex.imap(killed_always, [(2, 2)], on_lost="yield"))
            assert isinstance(out[0], WorkerLostError) and out[0].index == 0 and "KilledWorker" in out[0].reason
            with pytest.raises(WorkerLostError, match=r"job 0 \(killed_always\): the Dask cluster lost a worker"):
                ex.map(killed_always, [(2, 2)])
            assert ex.map(killed_always, [(3, 2)]) == [9]  # the nanny's new worker goes on
