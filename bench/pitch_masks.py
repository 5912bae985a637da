"""Cheap proxy of the pitch tracker's effect on masks: G-SVM trained with estimated pitch vs
with true pitch, on every 4th channel, scored (pooled HIT-FA) on the tune split.

    python bench/pitch_masks.py [--workers 1]

The experiment's protocol scaled down the way fastifkl/tuning.py does it: the training set is
the ``kernel`` + ``svm`` TTS utterances x the 5 training noises at -5 dB (LC -10 dB), the
Gaussian-kernel SVM (G-SVM) with the experiment's other defaults is fitted on channels
0, 4, ..., 60 only (:func:`fastifkl.tuning.tune_on_data`'s channel subset), and it is scored on
the real ``tune`` utterances x the training noises (never a test noise).  Each pitch setting
("true": tracked on the premixed speech, "estimated": on the mixture) is run with the learned
tracker (the default) and with the earlier correlogram tracker (``pitch.track`` is swapped in
this process; ``--workers 1`` keeps every job in it).  Appends a JSON line to
bench/results/pitch_masks.jsonl.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_bench_common", _here / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
CORPUS = Path(os.environ.get("FASTIFKL_CORPUS", _here.parents[1] / "shared" / "corpus"))


def main() -> dict:
    import fastifkl.pitch as pitch_mod
    from fastifkl.corpus import MixtureSet
    from fastifkl.experiment import Config, select_corpus
    from fastifkl.masks import confusion, pooled_scores
    from fastifkl.parallel import executor
    from fastifkl.separator import Separator, _decision, cfs_for, ideal_mask, prepare, track_pitch, unit_features
    from fastifkl.tuning import _subset

    cfg = Config(corpus=str(CORPUS), tune=True)
    sel = select_corpus(cfg)
    work = Path(tempfile.mkdtemp(prefix="pitch-masks-"))
    train_set = MixtureSet.create(sel["kernel"] + sel["svm"], sel["train_noises"], work / "train", snr_db=cfg.snr_db,
                                  seed=cfg.seed)
    tune_set = MixtureSet.create(sel["tune"], sel["train_noises"], work / "tune", snr_db=cfg.snr_db, seed=cfg.seed + 1)
    cfs = cfs_for()
    chans = list(range(0, len(cfs), 4))
    original = pitch_mod.track
    out = {}
    try:
        for method in ("learned", "correlogram"):
            pitch_mod.track = functools.partial(original, method=method)
            for p in ("true", "estimated"):
                t0 = time.perf_counter()
                with executor(workers=1) as ex:
                    data = prepare(train_set, None, pitch=p, lc_db=cfg.lc_db, cfs=cfs, seed=0, executor=ex)
                    sep = Separator(kernel="gaussian", pitch=p, lc_db=cfg.lc_db, **cfg.separator)
                    sep.fit_data(_subset(data, chans), executor=ex)
                counts = []
                for e in tune_set.entries:
                    mx = tune_set.mixture(e)
                    f0 = track_pitch(mx.speech if p == "true" else mx.mixture)
                    X = unit_features(mx.mixture, cfs, f0)[:, chans, :]
                    ibm = ideal_mask(mx.speech, mx.noise, cfs, cfg.lc_db)[chans]
                    d = np.empty(ibm.shape)
                    for i in range(len(chans)):
                        d[i] = _decision((X[:, i, :] - sep.mean_[i]) / sep.std_[i], sep.points_[i], sep.coef_[i],
                                         sep.bias_[i], sep.sigma_[i])
                    counts.append(confusion(d > 0, ibm))
                s = pooled_scores(counts)
                out[f"{method}|{p}"] = {k: float(v) for k, v in s.items()}
                print(f"{method:12s} {p:9s} pitch: HIT-FA {s['hit_fa']:.3f} (HIT {s['hit']:.3f}, FA {s['fa']:.3f}) "
                      f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    finally:
        pitch_mod.track = original
    payload = {"channels": chans, "train_mixtures": len(train_set), "tune_mixtures": len(tune_set), "snr_db": cfg.snr_db,
               "system": "G-SVM", "scores": out, "load_avg": list(os.getloadavg())}
    _common.record("pitch_masks", payload)
    return payload


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
