"""Per-unit features: ours (per family and the whole 195-dim extraction) vs the off-the-shelf
route of computing MFCC and RASTA-PLP per subband with `spafe`, side by side, on one core.

64 gammatone channels (ERB-spaced 80-5000 Hz) of real speech (../shared/corpus, several
utterances concatenated) or, without the corpus, of noise.  Reports seconds of compute per
second of audio (best of several runs), the ratios, the pitch tracker's cost, and the
first-call time of `extract` in a fresh process with a cold and with a warm Numba cache.
Appends a JSON line to bench/results/features.jsonl.

    python bench/features.py [--quick]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # one core

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_bench_common", _here + "/_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
best_of, record = _common.best_of, _common.record

SR = 16000
CORPUS = Path(os.environ.get("FASTIFKL_CORPUS", Path(_here).parents[1] / "shared" / "corpus"))

_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from fastifkl.features import extract
t1 = time.perf_counter()
r = np.random.default_rng(0).standard_normal((64, 3200))
extract(r, np.full(19, 120.0))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call(cache_dir: str) -> tuple[float, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True)
    imp, call = map(float, out.stdout.split())
    return imp, call


def audio(seconds: float) -> np.ndarray:
    files = sorted((CORPUS / "speech" / "ieee_real").glob("*.flac"))
    if files:
        import soundfile as sf

        parts, n = [], 0
        for f in files:
            x, sr = sf.read(f)
            parts.append(x)
            n += x.size
            if n >= seconds * SR:
                break
        return np.concatenate(parts)[: int(seconds * SR)]
    return 0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))


def main(quick: bool = False) -> dict:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    from fastifkl import gammatone, pitch
    from fastifkl.features import _common as fc
    from fastifkl.features import ams, extract, mfcc, pitch_features, rasta_plp
    from fastifkl.framing import n_frames

    # first-call times in fresh processes: cold cache (new dir), then warm (same dir)
    with tempfile.TemporaryDirectory() as cache:
        cold = first_call(cache)
        warm = first_call(cache)

    secs = 4.0 if quick else 10.0
    repeat = 3 if quick else 7
    x = audio(secs)
    secs = x.size / SR
    r = gammatone.filterbank(x, SR)
    m = n_frames(x.size)
    f0 = pitch.track(x)
    extract(r, f0)  # warm up

    res = {}
    res["gammatone_filterbank"] = best_of(lambda: gammatone.filterbank(x, SR), repeat) / secs
    res["pitch_track"] = best_of(lambda: pitch.track(x), max(2, repeat // 2)) / secs
    p = fc.power_spectrum(r)
    res["power_spectrum"] = best_of(lambda: fc.power_spectrum(r), repeat) / secs
    res["mfcc_from_power"] = best_of(lambda: mfcc.from_power(p), repeat) / secs
    res["rasta_plp_from_power"] = best_of(lambda: rasta_plp.from_power(p), repeat) / secs
    res["ams"] = best_of(lambda: ams.from_envelope(ams.envelope(r), m), repeat) / secs
    res["pitch_features"] = best_of(lambda: pitch_features.pitch_features(r, f0), repeat) / secs
    res["ours_mfcc_plus_rasta_plp"] = best_of(lambda: (lambda q: (mfcc.from_power(q), rasta_plp.from_power(q)))(fc.power_spectrum(r)), repeat) / secs
    res["ours_total_195"] = best_of(lambda: extract(r, f0), repeat) / secs

    # peer: spafe per subband, on a shorter stretch (it is slow)
    from spafe.features.mfcc import mfcc as sp_mfcc
    from spafe.features.rplp import rplp as sp_rplp
    from spafe.utils.preprocessing import SlidingWindow

    win = SlidingWindow(win_len=0.02, win_hop=0.01, win_type="hamming")
    xs = x[: int((1.0 if quick else 2.0) * SR)]
    rs = r[:, : xs.size]
    ssecs = xs.size / SR

    def spafe_mfcc():
        for c in range(rs.shape[0]):
            sp_mfcc(rs[c], fs=SR, num_ceps=31, pre_emph=False, window=win, nfilts=64, nfft=512, low_freq=0, high_freq=8000)

    def spafe_rplp():
        for c in range(rs.shape[0]):
            sp_rplp(rs[c], fs=SR, order=13, pre_emph=False, window=win, nfilts=21, nfft=512, low_freq=0, high_freq=8000)

    prep = 1 if quick else 2
    res["spafe_mfcc"] = best_of(spafe_mfcc, prep) / ssecs
    res["spafe_rplp"] = best_of(spafe_rplp, prep) / ssecs
    peer = res["spafe_mfcc"] + res["spafe_rplp"]
    ratios = {
        "spafe_mfcc_rplp / ours_mfcc_plus_rasta_plp": peer / res["ours_mfcc_plus_rasta_plp"],
        "spafe_mfcc_rplp / ours_total_195": peer / res["ours_total_195"],
        "spafe_mfcc / ours_power+mfcc": res["spafe_mfcc"] / (res["power_spectrum"] + res["mfcc_from_power"]),
    }
    print(f"64 channels, {secs:.1f} s of {'speech' if CORPUS.is_dir() else 'noise'} (spafe on {ssecs:.1f} s); "
          f"one core; seconds of compute per second of audio (best of {repeat}):")
    for k, v in res.items():
        print(f"  {k:28s} {v:8.4f} s/s")
    print(f"  {'spafe mfcc + rplp':28s} {peer:8.4f} s/s")
    for k, v in ratios.items():
        print(f"  ratio {k}: {v:.1f}x")
    print(f"  first call in a fresh process, cold Numba cache: import {cold[0]:.2f} s + extract {cold[1]:.2f} s")
    print(f"  first call in a fresh process, warm Numba cache: import {warm[0]:.2f} s + extract {warm[1]:.2f} s")
    payload = {"seconds_audio": secs, "channels": 64, "threads": 1, "s_per_s": res,
               "spafe_mfcc_plus_rplp_s_per_s": peer, "ratios": ratios,
               "first_call_cold_s": {"import": cold[0], "extract": cold[1]},
               "first_call_warm_s": {"import": warm[0], "extract": warm[1]}}
    record("features", payload)
    return payload


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
