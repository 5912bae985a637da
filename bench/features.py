"""Per-unit features: ours (per family and the whole 195-dim extraction) vs the off-the-shelf
route of computing MFCC and RASTA-PLP per subband with `spafe`, side by side, on one core.

64 gammatone channels (ERB-spaced 80-5000 Hz) of real speech (../shared/corpus, several
utterances concatenated) or, without the corpus, of noise.  Reports seconds of compute per
second of audio (best of several runs), the ratios, the pitch tracker's cost, and the
first-call time of `extract` in a fresh process with a cold and with a warm Numba cache.
Appends a JSON line to bench/results/features.jsonl.

    python bench/features.py [--quick]
    python bench/features.py --pitch     # pitch tracker vs Praat: GPE / VDE, clean and -5 dB

The ``--pitch`` mode scores ``fastifkl.pitch.track`` against Praat's AC pitch
(praat-parselmouth, 70-400 Hz, 10 ms step, sampled at our frame centres) of the clean
utterance, on the 20 real IEEE utterances: clean, and mixed at -5 dB (``fastifkl.audio.mix_at_snr``,
noise offset from ``default_rng(utterance index)``, re-drawn if the segment is silent) with every noise of the corpus.
GPE = share of frames both call voiced with |f0 - ref| > 20 % ref; VDE = share of all frames
with a different voicing decision.  Appends a JSON line to bench/results/features.jsonl.
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


def best_cpu(fn, repeat: int = 5) -> float:
    """Smallest process CPU time of ``repeat`` calls (robust to other jobs on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


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

    # first-call times in fresh processes: cold cache (new dir), then warm (same dir)
    with tempfile.TemporaryDirectory() as cache:
        cold = first_call(cache)
        warm = first_call(cache)

    secs = 4.0 if quick else 10.0
    repeat = 3 if quick else 7
    x = audio(secs)
    secs = x.size / SR
    r = gammatone.filterbank(x, SR)
    f0 = pitch.track(x)
    extract(r, f0)  # warm up (compiles every kernel)
    pitch_features.pitch_features(r, f0)

    def both_cepstra():
        e_mel, e_bark = fc.band_energies(r, [mfcc.mel_filterbank(), rasta_plp.bark_filterbank()])
        return mfcc.from_energies(e_mel), rasta_plp.from_energies(e_bark)

    jobs = {
        "gammatone_filterbank": lambda: gammatone.filterbank(x, SR),
        "pitch_track": lambda: pitch.track(x),
        "mfcc": lambda: mfcc.mfcc(r),
        "rasta_plp": lambda: rasta_plp.rasta_plp(r),
        "ours_mfcc_plus_rasta_plp": both_cepstra,
        "ams": lambda: ams.ams(r),
        "pitch_features": lambda: pitch_features.pitch_features(r, f0),
        "ours_total_195": lambda: extract(r, f0),
    }
    res, cpu = {}, {}
    for k, fn in jobs.items():
        rep = max(2, repeat // 2) if k == "pitch_track" else repeat
        res[k] = best_of(fn, rep) / secs
        cpu[k] = best_cpu(fn, rep) / secs

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
            sp_mfcc(rs[c], fs=SR, num_ceps=31, pre_emph=False, window=win, nfilts=64, nfft=512, low_freq=0,
                    high_freq=8000)

    def spafe_rplp():
        for c in range(rs.shape[0]):
            sp_rplp(rs[c], fs=SR, order=13, pre_emph=False, window=win, nfilts=21, nfft=512, low_freq=0, high_freq=8000)

    prep = 1 if quick else 2
    res["spafe_mfcc"] = best_of(spafe_mfcc, prep) / ssecs
    res["spafe_rplp"] = best_of(spafe_rplp, prep) / ssecs
    cpu["spafe_mfcc"] = best_cpu(spafe_mfcc, prep) / ssecs
    cpu["spafe_rplp"] = best_cpu(spafe_rplp, prep) / ssecs
    peer = res["spafe_mfcc"] + res["spafe_rplp"]
    peer_cpu = cpu["spafe_mfcc"] + cpu["spafe_rplp"]
    ratios = {
        "spafe_mfcc_rplp / ours_mfcc_plus_rasta_plp": peer / res["ours_mfcc_plus_rasta_plp"],
        "spafe_mfcc_rplp / ours_total_195": peer / res["ours_total_195"],
        "spafe_mfcc / ours_mfcc": res["spafe_mfcc"] / res["mfcc"],
        "spafe_rplp / ours_rasta_plp": res["spafe_rplp"] / res["rasta_plp"],
    }
    ratios_cpu = {
        "spafe_mfcc_rplp / ours_mfcc_plus_rasta_plp": peer_cpu / cpu["ours_mfcc_plus_rasta_plp"],
        "spafe_mfcc_rplp / ours_total_195": peer_cpu / cpu["ours_total_195"],
    }
    print(f"64 channels, {secs:.1f} s of {'speech' if CORPUS.is_dir() else 'noise'} (spafe on {ssecs:.1f} s); "
          f"one core; seconds of compute per second of audio (best of {repeat}; wall and process CPU time):")
    for k, v in res.items():
        print(f"  {k:28s} wall {v:8.4f} s/s   cpu {cpu[k]:8.4f} s/s")
    print(f"  {'spafe mfcc + rplp':28s} wall {peer:8.4f} s/s   cpu {peer_cpu:8.4f} s/s")
    for k, v in ratios.items():
        print(f"  ratio (wall) {k}: {v:.1f}x")
    for k, v in ratios_cpu.items():
        print(f"  ratio (cpu)  {k}: {v:.1f}x")
    print(f"  first call in a fresh process, cold Numba cache: import {cold[0]:.2f} s + extract {cold[1]:.2f} s")
    print(f"  first call in a fresh process, warm Numba cache: import {warm[0]:.2f} s + extract {warm[1]:.2f} s")
    payload = {"seconds_audio": secs, "spafe_seconds_audio": ssecs, "channels": 64, "threads": 1,
               "s_per_s": res, "cpu_s_per_s": cpu,
               "spafe_mfcc_plus_rplp_s_per_s": peer, "spafe_mfcc_plus_rplp_cpu_s_per_s": peer_cpu,
               "ratios": ratios, "ratios_cpu": ratios_cpu,
               "first_call_cold_s": {"import": cold[0], "extract": cold[1]},
               "first_call_warm_s": {"import": warm[0], "extract": warm[1]}}
    record("features", payload)
    return payload


def praat_f0(x: np.ndarray) -> np.ndarray:
    """Praat's AC pitch at our frame centres (the learned tracker's training labels)."""
    from fastifkl.pitch_train import praat_pitch

    return praat_pitch(x)


def _mix(x, noise, i):
    """-5 dB mixture; noise offset from default_rng(i), or from i + 1000 k if that segment is silent."""
    from fastifkl.audio import mix_at_snr
    from fastifkl.errors import InputError

    for k in range(20):
        try:
            return mix_at_snr(x, noise, -5.0, np.random.default_rng(i + 1000 * k)).mixture
        except InputError:
            continue
    raise RuntimeError("no non-silent noise segment found")


def pitch_eval() -> dict:
    import soundfile as sf

    from fastifkl import pitch
    files = sorted((CORPUS / "speech" / "ieee_real").glob("*.flac"))
    if not files:
        raise SystemExit(f"corpus not found at {CORPUS}")
    utts = [sf.read(f)[0] for f in files]
    refs = [praat_f0(x) for x in utts]
    noises = sorted((CORPUS / "noise").glob("*.flac"))
    results = {}
    secs = sum(x.size for x in utts) / SR
    for label, noise in [("clean", None)] + [(f.stem, sf.read(f)[0]) for f in noises]:
        both = gross = vd = total = miss = fa = 0
        t0 = time.process_time()
        for i, (x, ref) in enumerate(zip(utts, refs)):
            y = x if noise is None else _mix(x, noise, i)
            est = pitch.track(y)
            b = (est > 0) & (ref > 0)
            both += int(b.sum())
            gross += int(np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b]))
            vd += int(np.sum((est > 0) != (ref > 0)))
            miss += int(np.sum((est == 0) & (ref > 0)))
            fa += int(np.sum((est > 0) & (ref == 0)))
            total += ref.size
        cpu = (time.process_time() - t0) / secs
        results[label] = {"gpe": gross / max(both, 1), "vde": vd / total, "missed_voiced_frames": miss,
                          "false_voiced_frames": fa, "frames": total, "cpu_s_per_s": cpu}
        print(f"  {label:14s} GPE {100 * gross / max(both, 1):6.2f} %   VDE {100 * vd / total:6.2f} %"
              f"   (missed voiced {miss}, false voiced {fa}, of {total} frames)", flush=True)
    payload = {"mode": "pitch_eval", "utterances": len(utts), "snr_db": -5.0,
               "reference": "praat to_pitch_ac 70-400 Hz on clean speech", "results": results}
    record("features", payload)
    return payload


if __name__ == "__main__":
    if "--pitch" in sys.argv:
        pitch_eval()
    else:
        main(quick="--quick" in sys.argv)
