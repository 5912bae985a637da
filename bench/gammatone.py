"""Gammatone filterbank: ours vs the `gammatone` package and vs scipy.signal.gammatone+lfilter.

64 channels (ERB-spaced 80-5000 Hz), 10 s of 16 kHz noise, one process, best of several runs.
Reports seconds of compute per second of audio, ratios, first-call (compile) time, with
Numba on 1 thread ("one core") and on all cores.  ``ours_1core`` is the default call in a
loop that drops each result, so the output memory is recycled (see ``filterbank``'s notes);
``*_fresh_memory`` empties the pool before every call, so each call pays the page faults of
new memory, like the peers do; ``float32`` is ``dtype=np.float32`` output.  Appends a JSON line to
bench/results/gammatone.jsonl.

    python bench/gammatone.py [--quick]
"""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

# this file is named like the peer package: keep bench/ off the import path, load helpers by path
_here = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
sys.path[:] = [p for p in sys.path if __import__("os").path.abspath(p or ".") != _here]
_spec = __import__("importlib.util").util.spec_from_file_location("_bench_common", _here + "/_common.py")
_common = __import__("importlib.util").util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
best_of, record = _common.best_of, _common.record


def first_call_seconds() -> float:
    """Import + first filterbank call in a fresh interpreter (Numba cache warm or cold)."""
    code = ("import time,numpy as np;t=time.perf_counter();from fastifkl import gammatone as g;"
            "g.filterbank(np.ones(16000));print(time.perf_counter()-t)")
    return float(subprocess.check_output([sys.executable, "-c", code]).decode().strip())


def main(quick: bool = False) -> dict:
    import numba
    from scipy.signal import gammatone as sp_gammatone
    from scipy.signal import lfilter

    from fastifkl.gammatone import erb_space, filterbank, free_buffers

    secs = 2.0 if quick else 10.0
    sr = 16000
    x = np.random.default_rng(0).standard_normal(int(secs * sr))
    cfs = erb_space(80, 5000, 64)
    repeat = 3 if quick else 7

    first = [first_call_seconds() for _ in range(3)]
    filterbank(x[:1000], sr, cfs)
    filterbank(x[:1000], sr, cfs, dtype=np.float32)

    def fresh(dtype):
        """Best of ``repeat`` calls that each get freshly mapped memory (pool emptied first)."""
        best = float("inf")
        for _ in range(repeat):
            free_buffers()
            t = time.perf_counter()
            r = filterbank(x, sr, cfs, dtype=dtype)
            best = min(best, time.perf_counter() - t)
            del r
        return best

    res = {}
    n_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    # default call in a loop that drops each result: the output memory is recycled
    res["ours_1core"] = best_of(lambda: filterbank(x, sr, cfs), repeat) / secs
    res["ours_1core_fresh_memory"] = fresh(np.float64) / secs
    buf = np.empty((len(cfs), x.size))
    res["ours_1core_reused_out"] = best_of(lambda: filterbank(x, sr, cfs, out=buf), repeat) / secs
    res["ours_1core_float32"] = best_of(lambda: filterbank(x, sr, cfs, dtype=np.float32), repeat) / secs
    res["ours_1core_float32_fresh_memory"] = fresh(np.float32) / secs
    numba.set_num_threads(n_threads)
    res[f"ours_{n_threads}cores"] = best_of(lambda: filterbank(x, sr, cfs), repeat) / secs
    free_buffers()

    coefs = [sp_gammatone(cf, "iir", fs=sr) for cf in cfs]

    def scipy_bank():
        out = np.empty((len(cfs), x.size))
        for c, (b, a) in enumerate(coefs):
            out[c] = lfilter(b, a, x)
        return out

    res["scipy_lfilter"] = best_of(scipy_bank, repeat) / secs
    try:
        from gammatone.filters import erb_filterbank, make_erb_filters

        fcoefs = make_erb_filters(sr, cfs)
        res["gammatone_pkg"] = best_of(lambda: erb_filterbank(x, fcoefs), max(2, repeat // 2)) / secs
    except ImportError:
        res["gammatone_pkg"] = None

    print(f"64 channels, {secs:.0f} s of audio; seconds of compute per second of audio (best of {repeat}):")
    for k, v in res.items():
        print(f"  {k:32s} {v * 1e3:8.3f} ms" if v else f"  {k:32s} (not installed)")
    ratios = {}
    for peer in ("gammatone_pkg", "scipy_lfilter"):
        if res.get(peer):
            for mine in [k for k in res if k.startswith("ours_")]:
                ratios[f"{peer}/{mine}"] = res[peer] / res[mine]
                print(f"  ratio {peer} / {mine}: {ratios[f'{peer}/{mine}']:.1f}x")
    print("  first call in a fresh process (import + compile or cache load), 3 runs: "
          + ", ".join(f"{f:.2f}" for f in first) + " s")
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"  load average at the end: {load}")
    payload = {"seconds_audio": secs, "channels": 64, "s_per_s": res, "ratios": ratios,
               "first_call_s": min(first), "first_call_runs_s": first, "load_average_1min": float(load)}
    record("gammatone", payload)
    return payload


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
