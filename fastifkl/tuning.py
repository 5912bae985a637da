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
    from .training import analyse, mixture_from_job

    _, mx = mixture_from_job(job)
    X, ibm = analyse(mx, np.asarray(job["cfs"]), job["pitch"], job["lc_db"], job.get("level_rms"),
                     job.get("pitch_method"))
    chans = job["channels"]
    return X[:, chans, :], ibm[chans]


def _subset(data, chans):
    from dataclasses import replace

    return replace(data, cfs=data.cfs[chans], kernel_units=[data.kernel_units[c] for c in chans],
                   svm_units=[data.svm_units[c] for c in chans], mean=data.mean[chans], std=data.std[chans],
                   class_counts=None if data.class_counts is None else data.class_counts[chans],
                   calib_units=None)  # trials are scored on the binary mask: no calibration needed


def tune_on_data(sep, data, tune_set, *, executor, channel_step: int = 4, progress=None, log=None) -> dict:
    """Best ``{sigma_scale, C[, gamma]}`` for ``sep`` by pooled HIT-FA on ``tune_set``."""
    from .separator import Separator
    from .training import mixture_job

    chans = list(range(0, len(data.cfs), channel_step))
    jobs = [mixture_job(tune_set, e, cfs=data.cfs.tolist(), pitch=sep.pitch, lc_db=sep.lc_db, channels=chans,
                        level_rms=sep.level_rms, pitch_method=sep.pitch_method)
            for e in tune_set.entries]
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
        # the trial model has the channels of ``sub`` only: its decision values are (len(chans), M)
        counts = [confusion(trial.decision_from_features(X) > 0, ibm) for X, ibm in tune]
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
