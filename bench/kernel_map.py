"""The Nystroem map's cost and benefit against its number of landmarks m (REFERENCE 15).

For each m: the leave-one-noise-out HIT-FA of the paper-scale G-SVM (LIBLINEAR on the map of
every unit; fastifkl.selection.lono_score, every 4th channel, the protocol's training set), the
decision stage in seconds per second of audio (64 channels, m float32 points each, one core:
Separator.decision_from_features, the path `fastifkl separate` takes, best of 5 after a
warm-up), and the model file size in MB (a 64-channel model whose points are m real normalised
training units per channel, float16 as saved).  The peer of the decision stage is today's LIBSVM
model shape: the shipped default model's own stored points (its decision measured the same way).

    python bench/kernel_map.py [--pitch true] [--m 100,200,300,400,600] [--C 10] [--sigma-scale 1]
                               [--max-units 8000] [--data /tmp/data_true.pkl] [--quick]

``--data`` caches the prepared training data (a pickle in /tmp; it is rebuilt when missing).
One JSON line per m goes to bench/results/kernel_map.jsonl.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pickle  # noqa: E402
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


def training_data(pitch: str, cache: str | None, workers: int):
    """The protocol's training set (kernel + svm splits x 5 training noises), every unit."""
    if cache and Path(cache).is_file():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    from fastifkl.corpus import MixtureSet
    from fastifkl.experiment.config import load_config, select_corpus
    from fastifkl.parallel import executor
    from fastifkl.separator import Separator
    from fastifkl.training import cfs_for, prepare

    cfg = load_config()
    sel = select_corpus(cfg)
    work = Path(tempfile.mkdtemp(prefix="fastifkl-bench-kmap-"))
    train = MixtureSet.create(sel["kernel"] + sel["svm"], sel["train_noises"], work / "train", snr_db=cfg.snr_db,
                              seed=cfg.seed)
    proto = Separator(pitch=pitch, lc_db=cfg.lc_db)
    with executor(workers=workers) as ex:
        data = prepare(train, None, pitch=pitch, lc_db=cfg.lc_db, cfs=cfs_for(), units_per_mixture=None, seed=0,
                       level_rms=proto.level_rms, calib_per_mixture=proto.calib_per_mixture, executor=ex)
    if cache:
        with open(cache, "wb") as fh:
            pickle.dump(data, fh, protocol=5)
    return data


def model_like(data, m: int, seed: int = 0):
    """A 64-channel Separator whose points are m normalised training units per channel (random
    coefficients): the shape, cost and file size of a paper-scale model with m landmarks."""
    from fastifkl.separator import Separator

    rng = np.random.default_rng(seed)
    sep = Separator(kernel="gaussian", solver="liblinear", n_landmarks=m, max_train=None, units_per_mixture=None)
    sep.cfs_ = np.asarray(data.cfs)
    sep.mean_, sep.std_ = data.mean, data.std
    pts = []
    for c, u in enumerate(data.svm_units):
        take = np.sort(rng.choice(u.y.size, m, replace=False))
        pts.append((u.X[take].astype(np.float64) - data.mean[c]) / data.std[c])
    sep.points_ = pts
    sep.coef_ = [rng.normal(size=m) for _ in pts]
    sep.bias_ = np.zeros(len(pts))
    sep.sigma_ = np.full(len(pts), 15.0)
    sep.platt_ = None
    sep.channel_info_, sep.training_ = [], {}
    return sep


def decision_seconds_per_second(sep, seconds: float = 10.0, repeat: int = 5) -> tuple[float, float]:
    """Decision stage (normalisation + kernel block + product, 64 channels), one core: (wall, CPU)
    seconds per second of audio, each the best of ``repeat`` after a warm-up.  On a loaded machine
    the process CPU time is the steadier of the two (it does not count the time others run)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((int(seconds * 100), len(sep.points_), sep.mean_.shape[1])) * sep.std_ + sep.mean_
    sep.decision_from_features(X)  # warm-up
    cpu = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        sep.decision_from_features(X)
        cpu = min(cpu, time.process_time() - t)
    return _common.best_of(lambda: sep.decision_from_features(X), repeat) / seconds, cpu / seconds


def main() -> None:
    from fastifkl.parallel import executor
    from fastifkl.selection import lono_score
    from fastifkl.separator import Separator, load_default

    quick = "--quick" in sys.argv
    pitch = _arg("--pitch", "true")
    ms = [int(v) for v in _arg("--m", "50,100" if quick else "100,200,300,400,600").split(",")]
    C = float(_arg("--C", "10"))
    scale = float(_arg("--sigma-scale", "1"))
    max_units = int(_arg("--max-units", "2000" if quick else "8000"))
    step = int(_arg("--channel-step", "16" if quick else "4"))
    workers = int(_arg("-j", "2"))
    t = time.perf_counter()
    data = training_data(pitch, _arg("--data", None), workers)
    print(f"training data ({pitch} pitch): {data.svm_units[0].y.size} units per channel, "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    ref = load_default()
    ref_sps, ref_cpu = decision_seconds_per_second(ref)  # the peer: today's LIBSVM model, measured the same way
    ref_points = int(np.mean([z.shape[0] for z in ref.points_]))
    print(f"shipped model ({ref_points} points per channel): decision {ref_sps:.4f} s/s wall, {ref_cpu:.4f} CPU",
          flush=True)
    chans = list(range(0, len(data.cfs), step))
    for m in ms:
        sep = model_like(data, m)
        sps, cpu = decision_seconds_per_second(sep)
        with tempfile.TemporaryDirectory() as tmp:
            mb = sep.save(Path(tmp) / "m.fkl").stat().st_size / 1e6
        g = Separator(kernel="gaussian", pitch=pitch, solver="liblinear", n_landmarks=m, C=C, sigma_scale=scale,
                      max_train=None, units_per_mixture=None)
        with executor(workers=workers) as ex:
            r = lono_score(g, data, chans, executor=ex, max_units=max_units)
        row = {"m": m, "pitch": pitch, "C": C, "sigma_scale": scale, "lono_hit_fa": r["hit_fa"],
               "lono_worst_fold": r["worst"], "lono_per_fold": r["per_fold"], "lono_channels": chans,
               "lono_max_units": max_units, "lono_seconds": r["seconds"], "decision_s_per_s": sps,
               "decision_cpu_s_per_s": cpu, "decision_s_per_s_shipped": ref_sps,
               "decision_cpu_s_per_s_shipped": ref_cpu,
               "shipped_points_per_channel": ref_points, "cpu_ratio_vs_shipped": cpu / ref_cpu, "model_mb": mb,
               "load_average": os.getloadavg()[0], "quick": quick}
        print(f"m={m}: LONO HIT-FA {r['hit_fa']:.3f} (worst fold {r['worst']:.3f}, {r['seconds']:.0f} s); decision "
              f"{sps:.4f} s/s wall, {cpu:.4f} CPU ({cpu / ref_cpu:.2f}x the shipped model's); model {mb:.1f} MB",
              flush=True)
        _common.record("kernel_map", row)


if __name__ == "__main__":
    main()
