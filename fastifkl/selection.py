"""Leave-one-noise-out (LONO) selection of the separator's settings (REFERENCE 14).

For each training noise d (a *fold*): the kernel is learned on the kernel-learning units of the
other noises, the SVM is trained on the SVM units of the other noises, and the channel's
decisions are scored on the SVM units of noise d, which it never saw.  A setting's score is the
HIT-FA pooled over the selection channels, averaged over the folds (``worst`` over the folds is
recorded too).  Held-out noises are training noises, never test noises.

Search: coordinate search, one parameter at a time in the order of the grid (each value of the
parameter tried with the others at their best so far; a value is kept only if it beats the best
score).  Its *budget* is the number of distinct settings scored, each costing one fit per fold and
channel: :func:`budget` gives it in advance, and G-SVM and KL-SVM get grids of the same budget
(:data:`GRIDS`), on the same data, folds and channels.  The chosen setting is then confirmed on
every channel (its LONO score on all of them).

Cost control: every ``channel_step``-th channel, and per fold and channel at most ``max_units``
training units (a seeded uniform sample, the same for every setting and both kernels); the
held-out units are all of the fold's units of those channels.  Feature normalisation (mean and
std per channel) is the one of the whole training set (no labels involved).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import InputError

GRIDS: dict[str, dict[str, tuple]] = {
    # the same budget (7 settings: 1 start + 2 + 3 + 1 and 1 + 2 + 2 + 2), starting from the first value
    "gaussian": {"C": (10.0, 1.0, 100.0), "sigma_scale": (1.0, 0.5, 0.7, 1.4),
                 "landmark_method": ("uniform", "kmeans")},
    "learned": {"C": (10.0, 1.0, 100.0), "sigma_scale": (1.0, 0.7, 1.4), "gamma": (1.0, 0.1, 10.0)},
}
"""Default grids per kernel (first value = the start of the coordinate search)."""


def budget(grid: dict[str, tuple]) -> int:
    """Number of distinct settings a coordinate search over ``grid`` scores (start + the others)."""
    return 1 + sum(len(set(v)) - 1 for v in grid.values())


def _lono_job(job: dict) -> tuple[int, int, tuple]:
    """Fit one channel on the other folds' units; confusion counts on the held-out fold's units."""
    from ._threads import blas_single_thread
    from .channel import fit_channel
    from .kernels import gaussian_decision
    from .masks import confusion

    res = fit_channel({k: v for k, v in job.items() if k not in ("test_X", "test_y", "fold")})
    with blas_single_thread():
        Xt = (np.asarray(job["test_X"], dtype=np.float64) - job["mean"]) / job["std"]
        d = gaussian_decision(Xt, res["Z"], res["coef"], res["bias"], res["sigma"])
    return job["fold"], job["channel"], confusion(d > 0, job["test_y"])


def _take(units, keep: np.ndarray):
    from .training import ChannelUnits

    return ChannelUnits(units.X[keep], units.y[keep], units.domain[keep])


def lono_jobs(data, params: dict, channels: list[int], max_units: int | None, seed: int):
    """The (fold, channel) jobs of one setting (a generator; the subsamples depend only on
    ``seed``, the fold and the channel, so every setting and kernel sees the same units)."""
    for d in range(len(data.domains)):
        for c in channels:
            su, ku = data.svm_units[c], data.kernel_units[c]
            train = np.flatnonzero(su.domain != d)
            if max_units is not None and train.size > max_units:
                rng = np.random.default_rng([seed, 5000 + c, d])
                train = np.sort(rng.choice(train, max_units, replace=False))
            test = np.flatnonzero(su.domain == d)
            yield {"channel": c, "fold": d, "params": params, "mean": data.mean[c], "std": data.std[c],
                   "svm": _take(su, train), "kernel_units": _take(ku, np.flatnonzero(ku.domain != d)),
                   "calib": None, "counts": None, "test_X": su.X[test], "test_y": su.y[test]}


def lono_score(sep, data, channels: list[int], *, executor, max_units: int | None = 8000) -> dict:
    """LONO score of the separator ``sep``'s settings on ``data`` (:class:`~fastifkl.training.TrainingData`).

    Returns ``{"hit_fa": mean over folds, "worst": min over folds, "per_fold": {noise: HIT-FA},
    "fits": number of channel fits, "seconds": wall time}``.
    """
    from .masks import pooled_scores

    if len(data.domains) < 2:
        raise InputError("leave-one-noise-out selection needs at least 2 training noises")
    t = time.perf_counter()
    params = sep.check_params().get_params()
    counts: dict[int, list] = {d: [] for d in range(len(data.domains))}
    n = 0
    for fold, _c, cnt in executor.imap(_lono_job, lono_jobs(data, params, channels, max_units, sep.seed)):
        counts[fold].append(cnt)
        n += 1
    per = {data.domains[d]: pooled_scores(v)["hit_fa"] for d, v in counts.items()}
    vals = list(per.values())
    return {"hit_fa": float(np.mean(vals)), "worst": float(np.min(vals)), "per_fold": per, "fits": n,
            "seconds": time.perf_counter() - t}


def select(sep, data, *, executor, grid: dict[str, tuple] | None = None, channel_step: int = 4,
           max_units: int | None = 8000, confirm: bool = True, log=None) -> dict:
    """Coordinate search of ``grid`` (default :data:`GRIDS` for ``sep.kernel``) by LONO score.

    Sets the chosen values on ``sep`` and returns the record that goes into the model's metadata:
    ``{"method", "grid", "budget", "channels", "max_units", "trials": [{params, hit_fa, worst,
    per_fold}], "chosen": {...}, "score": ..., "confirmed": LONO score on every channel or None,
    "seconds"}``.
    """
    t0 = time.perf_counter()
    grid = {k: tuple(v) for k, v in (GRIDS[sep.kernel] if grid is None else grid).items()}
    names = sep.param_names()
    bad = [k for k in grid if k not in names]
    if bad:
        raise InputError(f"selection grid names unknown separator parameters: {', '.join(bad)}")
    chans = list(range(0, len(data.cfs), channel_step))
    best = {k: v[0] for k, v in grid.items()}
    trials: list[dict] = []
    cache: dict[tuple, float] = {}

    def score(setting: dict) -> float:
        key = tuple(setting[k] for k in grid)
        if key not in cache:
            trial = type(sep)(**{**sep.get_params(), **setting})
            r = lono_score(trial, data, chans, executor=executor, max_units=max_units)
            cache[key] = r["hit_fa"]
            trials.append({"params": dict(setting), **{k: r[k] for k in ("hit_fa", "worst", "per_fold", "seconds")}})
            if log:
                log("LONO " + ", ".join(f"{k}={v}" for k, v in setting.items())
                    + f": HIT-FA {r['hit_fa']:.3f} (worst fold {r['worst']:.3f}, {r['seconds']:.0f} s)")
        return cache[key]

    current = score(best)
    for k, values in grid.items():
        for v in values:
            s = score({**best, k: v})
            if s > current:
                best, current = {**best, k: v}, s
    sep.set_params(**best)
    record: dict[str, Any] = {
        "method": "leave-one-noise-out coordinate search (REFERENCE 14)", "grid": {k: list(v) for k, v in grid.items()},
        "budget": budget(grid), "settings_scored": len(trials), "folds": list(data.domains), "channels": chans,
        "max_units": max_units, "trials": trials, "chosen": best, "score": current, "confirmed": None}
    if confirm:
        r = lono_score(sep, data, list(range(len(data.cfs))), executor=executor, max_units=max_units)
        record["confirmed"] = {k: r[k] for k in ("hit_fa", "worst", "per_fold", "seconds")}
        if log:
            log(f"LONO chosen {best} on all {len(data.cfs)} channels: HIT-FA {r['hit_fa']:.3f}")
    record["seconds"] = time.perf_counter() - t0
    return record


def channel_subset(data, chans: list[int]):
    """``data`` restricted to the channels ``chans`` (for studies on a subset)."""
    pick = lambda xs: None if xs is None else [xs[c] for c in chans]  # noqa: E731
    return replace(data, cfs=data.cfs[chans], kernel_units=pick(data.kernel_units), svm_units=pick(data.svm_units),
                   mean=data.mean[chans], std=data.std[chans], calib_units=pick(data.calib_units),
                   class_counts=None if data.class_counts is None else data.class_counts[chans])
