"""Quick check of the pitch tracker's effect on masks: G-SVM HIT-FA with estimated pitch from
the learned tracker, from the correlogram tracker, and with "true" pitch, on a reduced protocol.

    python bench/pitch_masks.py [--n-train 16] [--step 4]

The experiment's protocol (fastifkl/experiment) scaled down, all on training material (never a
test noise, never a test utterance):

- training: the first ``--n-train`` utterances of the ``kernel`` + ``svm`` TTS splits x the 5
  training noises at -5 dB (LC -10 dB), :func:`fastifkl.training.prepare` with the experiment's
  defaults;
- model: the Gaussian-kernel SVM (G-SVM, the experiment's separator settings) fitted on every
  ``--step``-th channel only (0, 4, ..., 60 by default), as fastifkl/tuning.py's trials do;
- score: pooled HIT-FA of the binary mask on those channels over the real ``tune`` utterances
  x the 5 training noises at -5 dB.

Pitch settings: "estimated" (tracked on the mixture, in training and at test) with each tracker
(``pitch_method``; with ``--net`` the learned tracker's network is swapped in this process, one
worker), and "true" (tracked on the premixed speech with the correlogram tracker, the protocol's
reference before issue 19).  Appends a JSON line to
bench/results/pitch_masks.jsonl.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_bench_common", _here / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
CORPUS = Path(os.environ.get("FASTIFKL_CORPUS", _here.parents[1] / "shared" / "corpus"))


def channel_subset(data, chans):
    """The training data of the channels ``chans`` only (no calibration units: binary masks)."""
    return dataclasses.replace(
        data, cfs=data.cfs[chans], kernel_units=[data.kernel_units[c] for c in chans],
        svm_units=[data.svm_units[c] for c in chans], mean=data.mean[chans], std=data.std[chans],
        class_counts=None if data.class_counts is None else data.class_counts[chans], calib_units=None)


def main(argv=None) -> dict:
    import fastifkl.pitch as pitch_mod
    from fastifkl.corpus import MixtureSet
    from fastifkl.experiment import Config, select_corpus
    from fastifkl.masks import confusion, pooled_scores
    from fastifkl.parallel import executor
    from fastifkl.separator import Separator
    from fastifkl.training import analyse, cfs_for, prepare

    ap = argparse.ArgumentParser(prog="python bench/pitch_masks.py")
    ap.add_argument("--n-train", type=int, default=16, help="kernel+svm utterances used for training")
    ap.add_argument("--step", type=int, default=4, help="every step-th channel")
    ap.add_argument("--net", default=None, help="pitch-network file for the learned tracker (default: shipped)")
    a = ap.parse_args(argv)
    cfg = Config(corpus=str(CORPUS), tune=True)
    sel = select_corpus(cfg)
    work = Path(tempfile.mkdtemp(prefix="pitch-masks-"))
    speech = (sel["kernel"] + sel["svm"])[: a.n_train]
    train_set = MixtureSet.create(speech, sel["train_noises"], work / "train", snr_db=cfg.snr_db, seed=cfg.seed)
    tune_set = MixtureSet.create(sel["tune"], sel["train_noises"], work / "tune", snr_db=cfg.snr_db, seed=cfg.seed + 1)
    cfs = cfs_for()
    chans = list(range(0, len(cfs), a.step))
    original = pitch_mod.track
    net = None
    if a.net:
        from fastifkl import pitch_net

        net = pitch_net.load(a.net)
    variants = [("learned", "estimated"), ("correlogram", "estimated"), ("correlogram", "true")]
    out = {}
    try:
        for method, p in variants:
            pitch_mod.track = functools.partial(original, net=net) if (method == "learned" and net) else original
            t0 = time.perf_counter()
            sep = Separator(kernel="gaussian", pitch=p, lc_db=cfg.lc_db, pitch_method=method, **cfg.separator)
            with executor(workers=1) as ex:
                data = prepare(train_set, None, pitch=p, lc_db=cfg.lc_db, cfs=cfs, seed=0, level_rms=sep.level_rms,
                               pitch_method=method, executor=ex)
                sep.fit_data(channel_subset(data, chans), executor=ex)
            counts = []
            for e in tune_set.entries:
                mx = tune_set.mixture(e)
                X, ibm = analyse(mx, cfs, p, cfg.lc_db, sep.level_rms, method)
                d = sep.decision_from_features(X[:, chans, :])
                counts.append(confusion(d > 0, ibm[chans]))
            s = pooled_scores(counts)
            out[f"{method}|{p}"] = {k: float(v) for k, v in s.items()}
            print(f"{method:12s} {p:9s} pitch: HIT-FA {s['hit_fa']:.3f} (HIT {s['hit']:.3f}, FA {s['fa']:.3f}) "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    finally:
        pitch_mod.track = original
    payload = {"channels": chans, "train_utterances": [it.path.name for it in speech],
               "train_mixtures": len(train_set), "tune_mixtures": len(tune_set), "snr_db": cfg.snr_db,
               "system": "G-SVM", "true_pitch_tracker": "correlogram", "scores": out,
               "pitch_net": a.net or "shipped", "load_avg": list(os.getloadavg())}
    _common.record("pitch_masks", payload)
    return payload


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
