"""Choosing sigma, C and gamma on held-out tuning mixtures (training noises only).

The paper tunes the Gaussian width and the ITML slack by cross-validation.  Here the
separator is trained on the training set and scored (pooled HIT-FA) on the set's ``tune``
split, one parameter at a time (coordinate search over a small grid, in the order sigma scale,
C, gamma), on every ``channel_step``-th channel to keep it affordable.  The tuning mixtures use
the same noises as training, never the test noises.
"""
from __future__ import annotations

import numpy as np

from .masks import confusion, pooled_scores

GRID = {"sigma_scale": (0.5, 1.0, 2.0), "C": (0.1, 1.0, 10.0), "gamma": (0.1, 1.0, 10.0)}


def _tune_job(job: dict) -> tuple:
    from .corpus import Entry, MixtureSet
    from .separator import ideal_mask, track_pitch, unit_features

    entry = Entry(**job["entry"])
    mx = MixtureSet(job["set_dir"], [entry]).mixture(entry)
    cfs = np.asarray(job["cfs"])
    f0 = track_pitch(mx.speech if job["pitch"] == "true" else mx.mixture)
    chans = job["channels"]
    X = unit_features(mx.mixture, cfs, f0)[:, chans, :]
    ibm = ideal_mask(mx.speech, mx.noise, cfs, job["lc_db"])[chans]
    return X, ibm


def _subset(data, chans):
    from dataclasses import replace

    return replace(data, cfs=data.cfs[chans], kernel_units=[data.kernel_units[c] for c in chans],
                   svm_units=[data.svm_units[c] for c in chans], mean=data.mean[chans], std=data.std[chans],
                   class_counts=None if data.class_counts is None else data.class_counts[chans])


def tune_on_data(sep, data, tune_set, *, executor, channel_step: int = 4, progress=None, log=None) -> dict:
    """Best ``{sigma_scale, C[, gamma]}`` for ``sep`` by pooled HIT-FA on ``tune_set``."""
    from .separator import Separator

    chans = list(range(0, len(data.cfs), channel_step))
    jobs = [{"set_dir": str(tune_set.directory), "entry": e.__dict__, "cfs": data.cfs.tolist(), "pitch": sep.pitch,
             "lc_db": sep.lc_db, "channels": chans} for e in tune_set.entries]
    tune = list(executor.imap(_tune_job, jobs))
    sub = _subset(data, chans)
    keys = ["sigma_scale", "C"] + (["gamma"] if sep.kernel == "learned" else [])
    best = {k: getattr(sep, k) for k in keys}
    cache: dict[tuple, float] = {}
    n_eval = [0]

    def score(params: dict) -> float:
        key = tuple(params[k] for k in keys)
        if key in cache:
            return cache[key]
        trial = Separator(**{**sep.get_params(), **params}).fit_data(sub, executor=executor)
        counts = []
        for X, ibm in tune:
            d = np.empty(ibm.shape)
            for i in range(len(chans)):
                Xn = (X[:, i, :] - trial.mean_[i]) / trial.std_[i]
                from .separator import _decision

                d[i] = _decision(Xn, trial.points_[i], trial.coef_[i], trial.bias_[i], trial.sigma_[i])
            counts.append(confusion(d > 0, ibm))
        s = pooled_scores(counts)["hit_fa"]
        cache[key] = s
        n_eval[0] += 1
        if progress:
            progress("tune", n_eval[0], 1 + sum(len(GRID[k]) - 1 for k in keys))
        if log:
            log("tune " + ", ".join(f"{k}={v}" for k, v in params.items()) + f": HIT-FA {s:.3f}")
        return s

    current = score(best)
    for k in keys:
        for v in GRID[k]:
            trial = {**best, k: v}
            s = score(trial)
            if s > current:
                best, current = trial, s
    if log:
        log("tuned: " + ", ".join(f"{k}={v}" for k, v in best.items()) + f" (tune HIT-FA {current:.3f})")
    return best
