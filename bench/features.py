"""Per-unit features: ours (per family and the whole 195-dim extraction) vs the off-the-shelf
route of computing MFCC and RASTA-PLP per subband with `spafe`, side by side, on one core.

64 gammatone channels (ERB-spaced 80-5000 Hz) of real speech (../shared/corpus, several
utterances concatenated) or, without the corpus, of noise.  Reports seconds of compute per
second of audio (best of several runs), the ratios, the pitch tracker's cost, and the
first-call time of `extract` in a fresh process with a cold and with a warm Numba cache.
Appends a JSON line to bench/results/features.jsonl.

    python bench/features.py [--quick]
    python bench/features.py --pitch [--thresholds 0.3,0.4,0.5]   # correlogram voicing threshold

The ``--pitch`` mode chooses the correlogram tracker's voicing threshold
(``fastifkl.pitch.track_correlogram(voicing_threshold=)``) on training material only: the
utterances of the ``kernel``, ``svm`` (TTS) and ``tune`` (real IEEE list 1) splits, clean and
mixed DC-free (both means removed) at -5 dB with each of the 5 training noises (noise offset
from ``default_rng(utterance index)``, re-drawn from ``+ 1000 k`` if the segment is silent).
No ``test``/``test_real`` utterance and no test noise is read.  Scored against Praat's AC pitch
(praat-parselmouth, 70-400 Hz, 10 ms step, sampled at our frame centres) of the clean
utterance: GPE = share of frames both call voiced with |f0 - ref| > 20 % ref (None when no frame
is voiced by both); VDE = share of all frames with a different voicing decision; pooled over the
utterances of a condition.  The chosen threshold minimises the mean over the 6 conditions of
GPE + VDE.  Appends a JSON line to bench/results/features.jsonl.
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
    # the real ``tune`` utterances (IEEE list 1, S_01_*) only: no test material
    files = sorted((CORPUS / "speech" / "ieee_real").glob("S_01_*.flac"))
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


PITCH_SPLITS = ("kernel", "svm", "tune")  # training material only
PITCH_NOISES = ("ssn", "pink", "street", "fridge", "dishes")  # the training noises


def _mix(x, noise, i):
    """DC-free -5 dB mixture; noise offset from default_rng(i), or from i + 1000 k if that segment
    is silent."""
    from fastifkl.audio import mix_at_snr, noise_segment

    s = x - np.mean(x)
    for k in range(20):
        rng = np.random.default_rng(i + 1000 * k)
        hi = max(1, noise.size - x.size + 1) if noise.size >= x.size else noise.size
        seg = noise_segment(noise, x.size, int(rng.integers(0, hi)))
        seg = seg - np.mean(seg)
        if float(np.dot(seg, seg)) > 0:
            return mix_at_snr(s, seg, -5.0, offset=0).mixture
    raise RuntimeError("no non-silent noise segment found")


def pitch_material():
    """(files, utterances, noises {name: signal}) of the voicing-threshold choice: training
    splits and training noises only."""
    import csv

    import soundfile as sf

    man = CORPUS / "MANIFEST.tsv"
    if not man.is_file():
        raise SystemExit(f"corpus not found at {CORPUS}")
    rows = list(csv.DictReader(open(man), delimiter="\t"))
    files = sorted(r["file"] for r in rows if r["kind"] == "speech" and r["split"] in PITCH_SPLITS)
    assert not any(r["split"].startswith("test") for r in rows if r["file"] in files)
    noises = {r["label"]: sf.read(CORPUS / r["file"])[0] for r in rows
              if r["kind"] == "noise" and r["label"] in PITCH_NOISES}
    return files, [sf.read(CORPUS / f)[0] for f in files], noises


def pitch_eval(thresholds=(0.3, 0.35, 0.4, 0.45, 0.5, 0.55)) -> dict:
    from fastifkl import pitch

    files, utts, noises = pitch_material()
    refs = [praat_f0(x) for x in utts]
    conds = [("clean", [x for x in utts])] + [(name, [_mix(x, v, i) for i, x in enumerate(utts)])
                                               for name, v in sorted(noises.items())]
    results = {}
    for thr in thresholds:
        per = {}
        for label, ys in conds:
            both = gross = vd = total = miss = fa = 0
            for y, ref in zip(ys, refs):
                est = pitch.track(y, method="correlogram", voicing_threshold=thr)
                b = (est > 0) & (ref > 0)
                both += int(b.sum())
                gross += int(np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b]))
                vd += int(np.sum((est > 0) != (ref > 0)))
                miss += int(np.sum((est == 0) & (ref > 0)))
                fa += int(np.sum((est > 0) & (ref == 0)))
                total += ref.size
            per[label] = {"gpe": gross / both if both else None, "vde": vd / total, "missed_voiced_frames": miss,
                          "false_voiced_frames": fa, "frames": total}
        gpes = [r["gpe"] for r in per.values() if r["gpe"] is not None]
        mean_gpe = float(np.mean(gpes)) if gpes else 1.0
        mean_vde = float(np.mean([r["vde"] for r in per.values()]))
        results[f"{thr:g}"] = {"conditions": per, "mean_gpe": mean_gpe, "mean_vde": mean_vde,
                               "objective": mean_gpe + mean_vde}
        print(f"  threshold {thr:4.2f}: mean GPE {100 * mean_gpe:5.2f} %  mean VDE {100 * mean_vde:5.2f} %  "
              f"(clean {100 * (per['clean']['gpe'] or 0):.2f} / {100 * per['clean']['vde']:.2f})", flush=True)
    best = min(results, key=lambda k: results[k]["objective"])
    print(f"chosen voicing threshold: {best} (min mean GPE + VDE over clean + 5 training noises at -5 dB)")
    payload = {"mode": "pitch_eval", "material": {"splits": list(PITCH_SPLITS), "noises": list(PITCH_NOISES),
                                                  "utterances": len(utts), "mixing": "dc-free"},
               "snr_db": -5.0, "reference": "praat to_pitch_ac 70-400 Hz on clean speech", "results": results,
               "chosen_voicing_threshold": float(best)}
    record("features", payload)
    return payload


if __name__ == "__main__":
    if "--pitch" in sys.argv:
        if "--thresholds" in sys.argv:
            pitch_eval(tuple(float(v) for v in sys.argv[sys.argv.index("--thresholds") + 1].split(",")))
        else:
            pitch_eval()
    else:
        main(quick="--quick" in sys.argv)
