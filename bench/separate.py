"""Separation speed, end to end, with a trained model (default: the shipped model).

Per stage (load, pitch, filterbank + features, kernel + SVM decision, resynthesis, save),
seconds of compute per second of audio on ONE core (Numba and BLAS limited to 1 thread),
after a warm-up call; first-call (import + Numba cache load / compile) time in a fresh
process; the peer is LIBSVM's own ``svm_predict`` on the same precomputed kernel for the
decision stage; and the peak RSS of ``fastifkl separate`` on a batch of files (1,000 by
default, 100 with --quick), to show that memory stays bounded.

    python bench/separate.py [--quick] [--model M.fkl] [--files N]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("_bench_common", os.path.join(_here, "_common.py"))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)


def _arg(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(seed)
    s = synthetic_voiced_speech(seconds, rng)
    return s + 10 ** (5 / 20) * np.std(s) * rng.standard_normal(s.size)  # about -5 dB


def first_call_seconds(model: str) -> float:
    code = ("import time,numpy as np;t=time.perf_counter();from fastifkl.separator import Separator;"
            f"s=Separator.load({model!r});s.separate(np.random.default_rng(0).standard_normal(16000)*0.1);"
            "print(time.perf_counter()-t)")
    return float(subprocess.check_output([sys.executable, "-c", code]).decode().strip().splitlines()[-1])


def batch_peak_rss(model: str, n_files: int, seconds: float) -> dict:
    """Run `fastifkl separate` on n_files wavs in a child; its peak RSS (MB) and wall time."""
    from fastifkl.audio import save

    with tempfile.TemporaryDirectory() as d:
        ind = Path(d) / "in"
        x = test_signal(seconds, 1)
        for i in range(n_files):
            save(ind / f"f{i:04d}.wav", np.roll(x, 37 * i))
        t = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        r = subprocess.run([sys.executable, "-m", "fastifkl.cli", "separate", str(ind), "-m", model, "-o",
                            str(Path(d) / "out"), "-q"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        n_out = len(list((Path(d) / "out").glob("*.sep.wav")))
    return {"files": n_files, "seconds_each": seconds, "exit": r.returncode, "outputs": n_out,
            "peak_rss_mb": max(peak, before) / 1024, "wall_s": wall, "s_per_s_audio": wall / (n_files * seconds)}


def main(quick: bool = False) -> dict:
    import numba

    numba.set_num_threads(1)
    from libsvm.svmutil import svm_predict  # noqa: F401  (peer import cost not timed)

    from fastifkl import features
    from fastifkl.audio import load, save
    from fastifkl.gammatone import filterbank, resynthesize
    from fastifkl.separator import DEFAULT_MODEL, Separator
    from fastifkl.training import track_pitch

    model = _arg("--model", str(DEFAULT_MODEL))
    if not Path(model).is_file():
        print(f"no model at {model}: train one (fastifkl train) or pass --model")
        sys.exit(2)
    sep = Separator.load(model)
    secs = 4.0 if quick else 10.0
    x = test_signal(secs)
    tmp = Path(tempfile.mkdtemp())
    save(tmp / "in.wav", x)
    sep.separate(x[:16000])  # warm-up: Numba cache load / compile

    stages = {}

    def timed(name, fn, repeat=3):
        best, out = float("inf"), None
        for _ in range(repeat):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        stages[name] = best / secs
        return out

    xx = timed("load", lambda: load(tmp / "in.wav"))
    f0 = timed("pitch", lambda: track_pitch(xx, sep.pitch_method))  # the model's tracker
    R = timed("filterbank", lambda: filterbank(xx, 16000, sep.cfs_))
    X = timed("features", lambda: features.extract(R, f0))
    d = timed("kernel+decision", lambda: sep.decision_from_features(X))
    mask = (d > 0).astype(np.uint8)
    y = timed("resynthesis", lambda: resynthesize(xx, mask, 16000, sep.cfs_))
    timed("save", lambda: save(tmp / "out.wav", y))
    total = sum(stages.values())
    e2e = _common.best_of(lambda: save(tmp / "out.wav", sep.separate(load(tmp / "in.wav"))), 3) / secs

    # Peer for the decision stage: LIBSVM's own svm_predict on a precomputed kernel.  Both sides
    # get an SVM trained on the same 600 units of one channel (Gaussian kernel); ours times the
    # kernel GEMM + GEMV, LIBSVM times only svm_predict on the kernel rows we hand it.
    from fastifkl.kernels import gaussian
    from fastifkl.svm import ChannelSVM, _libsvm_decision, _train_libsvm

    c = min(20, len(sep.points_) - 1)
    Xn = (X[:, c, :] - sep.mean_[c]) / sep.std_[c]
    n = min(600, Xn.shape[0])
    G = gaussian(Xn[:n], sigma=sep.sigma_[c])
    d_c = sep.decision_from_features(X)[c]
    ytr = (d_c[:n] > np.median(d_c[:n])).astype(np.int8)
    libm, _ = _train_libsvm(G, ytr, 1.0, 1e-3, 100.0)
    ours_svm = ChannelSVM(C=1.0).fit(G, ytr)
    sv = Xn[ours_svm.support_]
    Kfull = gaussian(Xn, Xn[:n], sep.sigma_[c])
    _libsvm_decision(libm, Kfull[:10])  # warm-up (libsvm-official compiles its converter)
    t_lib = _common.best_of(lambda: _libsvm_decision(libm, Kfull), 3)
    t_ours = _common.best_of(lambda: ours_svm.decision(gaussian(Xn, sv, sep.sigma_[c])), 3)
    first = first_call_seconds(model)
    batch = batch_peak_rss(model, int(_arg("--files", 100 if quick else 1000)), 1.0 if not quick else 0.5)

    print(f"model {model}: {sep.kernel}, {sep.size_summary()['points_total']} stored points")
    print(f"seconds of compute per second of audio, one core ({secs:.0f} s test signal, best of 3):")
    for k, v in stages.items():
        print(f"  {k:16s} {v:.4f}")
    print(f"  {'sum of stages':16s} {total:.4f}")
    print(f"  end to end, save(separate(load(file))) (forward pass shared with resynthesis): {e2e:.4f} s/s")
    print(f"decision of one channel, {Xn.shape[0]} frames, {ours_svm.n_support_} SVs: ours (kernel GEMM + GEMV) "
          f"{t_ours * 1e3:.2f} ms vs LIBSVM svm_predict on the precomputed kernel {t_lib * 1e3:.2f} ms: "
          f"ratio {t_lib / max(t_ours, 1e-9):.0f}x")
    print(f"first call in a fresh process (import, model load, Numba cache load): {first:.2f} s")
    print(f"batch: {batch['files']} files x {batch['seconds_each']} s -> exit {batch['exit']}, "
          f"{batch['outputs']} outputs, peak RSS {batch['peak_rss_mb']:.0f} MB, {batch['wall_s']:.1f} s wall "
          f"({batch['s_per_s_audio']:.3f} s/s incl. startup)")
    payload = {"model": Path(model).name, "kernel": sep.kernel, "stages_s_per_s": stages, "sum_s_per_s": total,
               "end_to_end_s_per_s": e2e, "decision_ms": {"ours": t_ours * 1e3, "libsvm": t_lib * 1e3},
               "first_call_s": first, "batch": batch, "seconds_audio": secs}
    _common.record("separate", payload)
    return payload


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
