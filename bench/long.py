"""Long recordings: peak RSS and speed of ``fastifkl separate`` for 1, 10 and 60 minutes (issue 14).

Each run is ``python -m fastifkl.cli separate FILE`` in a fresh child process; its peak RSS is
the ``ru_maxrss`` that ``os.wait4`` reports for it (the largest of the child and its reaped
descendants, i.e. of ONE process: with ``-j 2`` the largest worker, not the sum), its speed the
wall time per second of audio (seconds of compute per second of audio, end to end: start-up,
pre-pass, separation, writing).  Paths compared:

- ``block``: this tree (block-wise: memory bounded by the block);
- ``whole``: a tree of the whole-file code (``--old DIR``, e.g. a git worktree of main at
  f86a16e), only for the lengths in ``--old-minutes`` (it needs ~2 GB per minute of audio);
- ``j2``: this tree with ``-j 2``; ``dask``: this tree with ``--scheduler`` on a Dask
  LocalCluster of one worker process started by this script (peak RSS of the cluster's
  processes sampled every 0.2 s with psutil).

The audio (generated: 60 s of synthetic voiced speech in white noise at about -5 dB SNR, tiled
with a shift per minute, 16-bit WAV) goes to ``--tmp`` (default /tmp/fastifkl-long), never
into the repository.  One JSON line per run is appended to bench/results/long.jsonl, with the
1-minute load average.

    python bench/long.py [--minutes 1,10,60] [--modes block,whole,j2,dask] [--old DIR]
                         [--old-minutes 1] [--tmp DIR]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("_bench_common", os.path.join(_here, "_common.py"))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

TREE = Path(_here).parent


def _arg(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def make_audio(path: Path, minutes: float, seed: int = 0) -> Path:
    """``minutes`` of 16 kHz 16-bit audio: a 60 s mixture tiled, shifted by 0.37 s per repeat."""
    import soundfile as sf

    if path.is_file():
        return path
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(seed)
    s = synthetic_voiced_speech(60.0, rng)
    x = s + 10 ** (5 / 20) * np.std(s) * rng.standard_normal(s.size)
    x = 0.25 * x / np.max(np.abs(x))
    n = int(round(minutes * 60 * 16000))
    tmp = path.with_suffix(".part.wav")
    with sf.SoundFile(tmp, "w", 16000, 1, "PCM_16") as fh:
        k = 0
        while n > 0:
            b = np.roll(x, 5920 * k)[:n]
            fh.write(b)
            n -= b.size
            k += 1
    os.replace(tmp, path)
    return path


class _PeakSampler:
    """Peak RSS (bytes) of a process tree, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self.peak_sum = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._t.start()

    def _run(self, every):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                if rss:
                    self.peak = max(self.peak, max(rss))
                    self.peak_sum = max(self.peak_sum, sum(rss))
            except psutil.Error:
                pass
            time.sleep(every)

    def stop(self):
        self._stop.set()
        self._t.join()


def _start_cluster(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    code = ("import sys,time;from dask.distributed import LocalCluster;"
            "c=LocalCluster(n_workers=1,threads_per_worker=1,processes=True,dashboard_address=None);"
            "print(c.scheduler_address,flush=True);sys.stdin.read();c.close()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=env, cwd=str(tree))
    return p, p.stdout.readline().strip()


def run(tree: Path, wav: Path, out: Path, mode: str) -> dict:
    """One ``separate`` run in a fresh child; peak RSS (MB) and wall time."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "fastifkl.cli", "separate", str(wav), "-o", str(out), "-q"]
    cluster = sampler = None
    if mode == "j2":
        cmd += ["-j", "2"]
    if mode == "dask":
        cluster, address = _start_cluster(tree, env)
        cmd += ["--scheduler", address]
        sampler = _PeakSampler(cluster.pid)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=str(tree), stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().strip()
    p.returncode = os.waitstatus_to_exitcode(status)
    row = {"exit": p.returncode, "peak_rss_mb": ru.ru_maxrss / 1024, "wall_s": wall}
    if cluster is not None:
        sampler.stop()
        cluster.stdin.close()
        cluster.wait(timeout=120)
        row["dask_worker_peak_rss_mb"] = sampler.peak / 2**20
        row["dask_cluster_sum_peak_rss_mb"] = sampler.peak_sum / 2**20
    if err:
        row["stderr"] = err.splitlines()[-1][:300]
    outs = list(out.glob("*.sep.wav"))
    if outs:
        import soundfile as sf

        row["output_samples"] = sf.info(str(outs[0])).frames
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    minutes = [float(m) for m in _arg("--minutes", "1,10,60").split(",")]
    modes = _arg("--modes", "block,whole").split(",")
    old = _arg("--old", None)
    old_minutes = [float(m) for m in _arg("--old-minutes", "1").split(",")]
    tmp = Path(_arg("--tmp", "/tmp/fastifkl-long"))
    tmp.mkdir(parents=True, exist_ok=True)
    warm = make_audio(tmp / "warm_0.05min.wav", 0.05)  # Numba caches of each tree, before timing
    for tree in {TREE, *([Path(old)] if old and "whole" in modes else [])}:
        run(tree, warm, tmp / "out", "block")
    print(f"{'minutes':>7} {'path':>6} {'peak RSS MB':>11} {'wall s':>8} {'s/s':>6} {'load':>5}  exit")
    for m in minutes:
        wav = make_audio(tmp / f"long_{m:g}min.wav", m)
        for mode in modes:
            if mode == "whole" and (old is None or m not in old_minutes):
                continue
            tree = Path(old) if mode == "whole" else TREE
            row = run(tree, wav, tmp / f"out_{mode}", mode)
            load = os.getloadavg()[0]
            row.update({"minutes": m, "path": mode, "s_per_s_audio": row["wall_s"] / (m * 60),
                        "load_1min": round(load, 2),
                        "tree": "main f86a16e (whole-file)" if mode == "whole" else "blockwise"})
            extra = "".join(f"  {k}={row[k]:.0f}" for k in ("dask_worker_peak_rss_mb",) if k in row)
            print(f"{m:7g} {mode:>6} {row['peak_rss_mb']:11.0f} {row['wall_s']:8.1f} {row['s_per_s_audio']:6.3f} "
                  f"{load:5.2f}  {row['exit']}{extra}{'  ' + row['stderr'] if 'stderr' in row else ''}", flush=True)
            _common.record("long", row)


if __name__ == "__main__":
    main()
