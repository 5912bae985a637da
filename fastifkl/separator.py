"""The estimator users hold: ``Separator`` (paper Section 3.2).

Training, per channel c (64 independent jobs):

1. kernel learning (``kernel="learned"``): ~``per_domain`` units from each training noise
   (domain) of the kernel-learning mixtures, cross-domain constraints, K0 = Gaussian(sigma),
   thresholds u/l at the 5th/95th percentiles, kernel ITML -> :class:`~fastifkl.kernels.LearnedKernel`;
2. a LIBSVM C-SVC on the Gram matrix of at most ``max_train`` units of the SVM training
   mixtures, drawn with the channel's IBM prior in those mixtures (``svm_prior="natural"``; or
   class-balanced), under that kernel (KL-SVM) or under the Gaussian kernel (G-SVM).

Prediction folds the learned kernel into the SVM.  With support vectors s_i, dual
coefficients a_i and landmarks x_1..x_n of the learned kernel (paper Eq. 9),

    f(z) = sum_i a_i kappa(z, s_i) + b
         = kappa0(z, S) a + kappa0(z, X) w + b,     w = P C (k(S) P)^T a

(``P`` = identity and ``C = S`` in exact mode; ``P`` the Nystroem map and ``C = W - I`` in
low-rank mode).  So every channel stores one point set ``Z = [S; X]`` and one coefficient
vector ``[a; w]``, and its decision values for all frames are one Gaussian-kernel GEMM.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import FMAX, FMIN, N_CHANNELS, SAMPLE_RATE, __version__
from .errors import InputError, ModelError

_PARAMS = (
    "kernel", "C", "sigma", "sigma_scale", "gamma", "per_domain", "itml_mode", "rank", "max_sweeps",
    "tol", "max_train", "units_per_mixture", "lc_db", "pitch", "n_channels", "fmin", "fmax", "seed", "svm_prior",
    "itml_order",
)


# ---------------------------------------------------------------------------------------------
# Front end of one signal


def cfs_for(n_channels: int = N_CHANNELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    from .gammatone import erb_space

    return erb_space(fmin, fmax, n_channels)


def unit_features(x: np.ndarray, cfs: np.ndarray, f0: np.ndarray, spec=None) -> np.ndarray:
    """Features of every T-F unit of ``x``: (M, C, D)."""
    from . import features
    from .gammatone import filterbank

    return features.extract(filterbank(x, SAMPLE_RATE, cfs), f0, SAMPLE_RATE, spec)


def ideal_mask(speech: np.ndarray, noise: np.ndarray, cfs: np.ndarray, lc_db: float) -> np.ndarray:
    """IBM (C, M) from the premixed signals."""
    from .gammatone import cochleagram, filterbank
    from .masks import ibm

    return ibm(cochleagram(filterbank(speech, SAMPLE_RATE, cfs)), cochleagram(filterbank(noise, SAMPLE_RATE, cfs)), lc_db)


def track_pitch(x: np.ndarray) -> np.ndarray:
    from .pitch import track

    return track(x, SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------
# Training data: one job per mixture


@dataclass
class ChannelUnits:
    """Raw (unnormalised) feature vectors of sampled units of one channel."""

    X: np.ndarray  # (n, D)
    y: np.ndarray  # (n,) IBM labels
    domain: np.ndarray  # (n,) int index into TrainingData.domains


@dataclass
class TrainingData:
    """Sampled units per channel plus the per-channel normalisation statistics."""

    cfs: np.ndarray
    domains: list[str]
    kernel_units: list[ChannelUnits]
    svm_units: list[ChannelUnits]
    mean: np.ndarray  # (C, D)
    std: np.ndarray  # (C, D)
    n_frames: int
    digest: str
    pitch: str
    info: dict = field(default_factory=dict)
    # (C, 2) IBM counts (label 0, label 1) per channel over all frames of the SVM-training
    # mixtures: the class prior the SVM training sample can be drawn with (``svm_prior``)
    class_counts: np.ndarray | None = None


def _stats_merge(a, b):
    """Chan et al. merge of (n, mean, M2) triples."""
    if a is None:
        return b
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), sa + sb + d * d * (na * nb / n)


def _mixture_job(job: dict) -> dict:
    """Analyse one mixture of a set: features, IBM, and a class-balanced sample per channel."""
    from .corpus import Entry, MixtureSet

    entry = Entry(**job["entry"])
    ms = MixtureSet(job["set_dir"], [entry])
    mx = ms.mixture(entry)
    cfs = np.asarray(job["cfs"])
    f0 = track_pitch(mx.speech if job["pitch"] == "true" else mx.mixture)
    X = unit_features(mx.mixture, cfs, f0)  # (M, C, D)
    ibm = ideal_mask(mx.speech, mx.noise, cfs, job["lc_db"])  # (C, M)
    mean = X.mean(axis=0)
    m2 = ((X - mean) ** 2).sum(axis=0)
    rng = np.random.default_rng(job["seed"])
    cap = job["cap"]
    picks = []
    for c in range(X.shape[1]):
        y = ibm[c]
        sel = []
        for lab in (0, 1):
            idx = np.flatnonzero(y == lab)
            if idx.size > cap:
                idx = np.sort(rng.choice(idx, cap, replace=False))
            sel.append(idx)
        sel = np.concatenate(sel)
        picks.append((X[sel, c, :].copy(), y[sel].astype(np.int8)))
    n1 = ibm.astype(np.int64).sum(axis=1)
    counts = np.stack([ibm.shape[1] - n1, n1], axis=1)  # (C, 2)
    return {"stats": (X.shape[0], mean, m2), "picks": picks, "role": job["role"], "domain": job["domain"],
            "counts": counts}


def prepare(
    mixset,
    kernel_ids: set[str] | None,
    *,
    pitch: str = "estimated",
    lc_db: float = -10.0,
    cfs: np.ndarray | None = None,
    units_per_mixture: int = 40,
    seed: int = 0,
    executor=None,
    progress=None,
) -> TrainingData:
    """Analyse every mixture of ``mixset`` once and keep what training needs.

    Parameters
    ----------
    mixset : corpus.MixtureSet
    kernel_ids : set of mixture ids used for kernel learning (the rest train the SVMs); None
        means the set's ``kernel`` split if present, else a seeded fifth of the utterances.
    units_per_mixture : int
        Units per class and channel kept from each mixture (a class-balanced pool from which
        the per-channel caps are drawn later).
    """
    from .parallel import executor as make_executor

    if pitch not in ("true", "estimated"):
        raise InputError(f"pitch must be 'true' or 'estimated', got {pitch!r}")
    cfs = cfs_for() if cfs is None else np.asarray(cfs, dtype=np.float64)
    entries = list(mixset.entries)
    if kernel_ids is None:
        kernel_ids = default_kernel_ids(entries, seed)
    domains = sorted({e.domain for e in entries})
    jobs = []
    for k, e in enumerate(entries):
        jobs.append(
            {
                "set_dir": str(mixset.directory),
                "entry": e.__dict__,
                "cfs": cfs.tolist(),
                "pitch": pitch,
                "lc_db": lc_db,
                "cap": units_per_mixture,
                "seed": [seed, k],
                "role": "kernel" if e.id in kernel_ids else "svm",
                "domain": domains.index(e.domain),
            }
        )
    n_ch = len(cfs)
    pools = {"kernel": [[] for _ in range(n_ch)], "svm": [[] for _ in range(n_ch)]}
    stats = None
    counts = np.zeros((len(cfs), 2), dtype=np.int64)
    ex = make_executor() if executor is None else executor
    try:
        for res in ex.imap(_mixture_job, jobs):
            stats = _stats_merge(stats, res["stats"])
            if res["role"] == "svm":
                counts += res["counts"]
            for c, (Xc, yc) in enumerate(res["picks"]):
                pools[res["role"]][c].append((Xc, yc, np.full(yc.size, res["domain"], dtype=np.int16)))
            if progress is not None:
                progress()
    finally:
        if executor is None:
            ex.close()

    def stack(lst):
        if not lst:
            return ChannelUnits(np.zeros((0, 0)), np.zeros(0, np.int8), np.zeros(0, np.int16))
        return ChannelUnits(np.concatenate([a for a, _, _ in lst]), np.concatenate([b for _, b, _ in lst]),
                            np.concatenate([d for _, _, d in lst]))

    n, mean, m2 = stats
    std = np.sqrt(m2 / n)
    std = np.where(std > 1e-10 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    n_kernel = sum(1 for j in jobs if j["role"] == "kernel")
    return TrainingData(
        cfs=cfs,
        domains=domains,
        kernel_units=[stack(p) for p in pools["kernel"]],
        svm_units=[stack(p) for p in pools["svm"]],
        mean=mean,
        std=std,
        n_frames=int(n),
        digest=mixset.digest(),
        pitch=pitch,
        info={"mixtures": len(jobs), "kernel_mixtures": n_kernel, "svm_mixtures": len(jobs) - n_kernel},
        class_counts=counts,
    )


def default_kernel_ids(entries, seed: int) -> set[str]:
    """The ``kernel`` split when the set has one, else a seeded fifth of the utterances."""
    ids = {e.id for e in entries if e.split == "kernel"}
    if ids:
        return ids
    utts = sorted({e.speech for e in entries})
    if len(utts) < 2:
        raise InputError("the mixture set needs at least 2 utterances (kernel learning and SVM training use different ones)")
    rng = np.random.default_rng(seed)
    k = max(1, len(utts) // 5)
    chosen = set(rng.choice(utts, k, replace=False).tolist())
    return {e.id for e in entries if e.speech in chosen}


# ---------------------------------------------------------------------------------------------
# One channel


def _fit_channel(job: dict) -> dict:
    """Learn the kernel (optional) and the SVM of one channel; returns the folded predictor."""
    from ._threads import blas_single_thread

    with blas_single_thread():  # thread-count-independent bits (see fastifkl._threads)
        return _fit_channel_body(job)


def kernel_problem(ku: ChannelUnits, mean: np.ndarray, std: np.ndarray, per_domain: int,
                   rng: np.random.Generator, info: dict | None = None) -> tuple[np.ndarray, tuple]:
    """The kernel-learning problem of one channel: normalised points and their cross-domain
    constraints.

    A noise that never lets speech dominate in the channel (e.g. a low hum in the lowest
    channels) gives a one-class domain: it cannot pair similar/dissimilar, so it is left out.

    ``info["domains_used"]`` (if ``info`` is given) is set to the number of domains with both
    classes before the constraints are drawn, so it is kept when that raises InputError.

    Returns
    -------
    X : ndarray, shape (n, D), the constrained units normalised by ``mean``/``std``
    constraints : (i, j, similar) into ``X`` (see :func:`fastifkl.itml.cross_domain_constraints`)
    """
    from .itml import cross_domain_constraints

    both = [d for d in np.unique(ku.domain) if np.unique(ku.y[ku.domain == d]).size == 2]
    keep = np.isin(ku.domain, both)
    if info is not None:
        info["domains_used"] = int(len(both))
    pts, cons = cross_domain_constraints(ku.y[keep], ku.domain[keep], per_domain, rng)
    pts = np.flatnonzero(keep)[pts]
    return (ku.X[pts] - mean) / std, cons


def _fit_channel_body(job: dict) -> dict:
    from .itml import distance_thresholds, learn_kernel
    from .kernels import LearnedKernel, gaussian, median_sigma
    from .svm import ChannelSVM, balanced_subsample, prior_subsample

    p = job["params"]
    c = job["channel"]
    rng = np.random.default_rng([p["seed"], 1000 + c])
    mean, std = job["mean"], job["std"]
    sv_units: ChannelUnits = job["svm"]
    if sv_units.y.size == 0:
        raise InputError("no SVM training mixtures (every mixture was used for kernel learning)")
    counts = job.get("counts")
    if p.get("svm_prior", "balanced") == "natural" and counts is not None and counts.sum() > 0:
        # the class mix of the SVM's training sample = the IBM prior of this channel in the
        # training mixtures (the class-balanced pool is subsampled to it)
        take = prior_subsample(sv_units.y, p["max_train"], float(counts[1] / counts.sum()), rng)
    else:
        take = balanced_subsample(sv_units.y, p["max_train"], rng)
    Xs = (sv_units.X[take] - mean) / std
    ys = sv_units.y[take]
    info: dict[str, Any] = {"n_train": int(ys.size), "n_pos": int(ys.sum())}
    lk = None
    kernel = p["kernel"]
    if kernel == "learned":
        ku: ChannelUnits = job["kernel_units"]
        try:
            Xl, cons = kernel_problem(ku, mean, std, p["per_domain"], rng, info)
            sigma = p["sigma"] or median_sigma(Xl, rng) * p["sigma_scale"]
            K0 = gaussian(Xl, sigma=sigma)
            u, l = distance_thresholds(K0, cons)
            res = learn_kernel(K0, cons, u, l, p["gamma"], mode=p["itml_mode"], rank=p["rank"],
                               tol=p["tol"], max_sweeps=p["max_sweeps"], order=p.get("itml_order", "given"),
                               seed=[p["seed"], 2000 + c])
            lk = LearnedKernel.from_result(Xl, sigma, res)
            info.update(n_landmarks=int(Xl.shape[0]), n_constraints=int(cons[0].size), u=float(u), l=float(l),
                        sweeps=int(res.n_sweeps), converged=bool(res.converged), rank=res.rank,
                        truncation_error=res.truncation_error)
            gram = lk(Xs)
        except InputError as exc:
            # e.g. a domain with one class in this channel: no cross-domain constraints exist
            info["fallback"] = f"gaussian kernel ({exc})"
            lk = None
    if lk is None:
        sigma = p["sigma"] or median_sigma(Xs, rng) * p["sigma_scale"]
        gram = gaussian(Xs, sigma=sigma)
    svm = ChannelSVM(C=p["C"]).fit(gram, ys)
    info["n_sv"] = svm.n_support_
    S = Xs[svm.support_]
    a = svm.dual_coef_
    if lk is not None and a.size:
        v = lk.correction @ (lk.features(S).T @ a)
        w = v if lk.projection is None else lk.projection @ v
        Z = np.vstack([S, lk.landmarks])
        coef = np.concatenate([a, w])
    else:
        Z, coef = S, a
    out = {"Z": Z, "coef": coef, "bias": float(svm.intercept_), "sigma": float(sigma), "info": info}
    if job.get("check"):
        # decision values of the folded form must equal the SVM's own on its training points
        k_sv = lk(Xs, S) if lk is not None else gaussian(Xs, S, sigma)
        ref = svm.decision(k_sv)
        mine = _decision(Xs, Z, coef, out["bias"], sigma)
        out["info"]["fold_check_max_abs_err"] = float(np.max(np.abs(ref - mine))) if ref.size else 0.0
    return out


def _decision(Xn: np.ndarray, Z: np.ndarray, coef: np.ndarray, bias: float, sigma: float) -> np.ndarray:
    """``gaussian(Xn, Z, sigma) @ coef + bias`` -- in float64 for a freshly fitted model, and in
    float32 when ``Z`` is float32 (a loaded model, whose points were stored as float16 and are
    exact in float32): one SGEMM instead of a DGEMM, half the time; the kernel values move by
    ~1e-7 relative, far below anything that flips a decision (the tests bound it)."""
    from .kernels import gaussian

    if Z.shape[0] == 0:
        return np.full(Xn.shape[0], bias)
    if Z.dtype == np.float32:
        X32 = Xn.astype(np.float32)
        d2 = X32 @ Z.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", X32, X32)[:, None]
        d2 += np.einsum("ij,ij->i", Z, Z)[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2 *= np.float32(-0.5 / (sigma * sigma))
        np.exp(d2, out=d2)
        return (d2 @ coef.astype(np.float32)).astype(np.float64) + bias
    return gaussian(Xn, Z.astype(np.float64, copy=False), sigma) @ coef.astype(np.float64, copy=False) + bias


# ---------------------------------------------------------------------------------------------
# The estimator


class Separator:
    """Speech separation by per-channel SVMs on a learned (or Gaussian) kernel.

    Parameters
    ----------
    kernel : {"learned", "gaussian"}
        KL-SVM (kernel ITML from cross-domain constraints) or G-SVM.
    C : float
        SVM soft-margin penalty.
    sigma : float or None
        Gaussian width; None = median heuristic per channel times ``sigma_scale``.
    sigma_scale : float
    gamma : float
        ITML slack trade-off.
    per_domain : int
        Units per training noise (domain) and channel for the cross-domain constraints.
    itml_mode : {"lowrank", "exact"}
    itml_order : {"given", "similar_first", "random"}
        Order of the ITML projections (see :func:`fastifkl.itml.learn_kernel`); "random" is a
        permutation seeded by ``seed`` and the channel.
    rank : int or None
        Low-rank ITML rank (None: smallest rank with <= 1 % relative Frobenius truncation error of K0).
    max_sweeps, tol : ITML stopping rule.
    max_train : int
        SVM training units per channel (subsample with the class mix of ``svm_prior``).
    units_per_mixture : int
        Per class and channel, units kept from each training mixture before subsampling.
    lc_db : float
        Local criterion of the IBM (dB).
    pitch : {"estimated", "true"}
        Pitch for the training features: tracked on the mixture, or on the premixed speech.
    n_channels, fmin, fmax : the gammatone filterbank.
    seed : int
    svm_prior : {"balanced", "natural"}
        Class mix of each channel's SVM training sample: equal numbers of both IBM labels, or
        the channel's IBM prior in the training mixtures (what the test mixtures look like).
    """

    def __init__(self, kernel: str = "learned", C: float = 1.0, sigma: float | None = None, sigma_scale: float = 1.0,
                 gamma: float = 1.0, per_domain: int = 100, itml_mode: str = "lowrank", rank: int | None = None,
                 max_sweeps: int = 20, tol: float = 1e-3, max_train: int = 3000, units_per_mixture: int = 40,
                 lc_db: float = -10.0, pitch: str = "estimated", n_channels: int = N_CHANNELS, fmin: float = FMIN,
                 fmax: float = FMAX, seed: int = 0, svm_prior: str = "natural", itml_order: str = "given"):
        self.kernel = kernel
        self.C = C
        self.sigma = sigma
        self.sigma_scale = sigma_scale
        self.gamma = gamma
        self.per_domain = per_domain
        self.itml_mode = itml_mode
        self.rank = rank
        self.max_sweeps = max_sweeps
        self.tol = tol
        self.max_train = max_train
        self.units_per_mixture = units_per_mixture
        self.lc_db = lc_db
        self.pitch = pitch
        self.n_channels = n_channels
        self.fmin = fmin
        self.fmax = fmax
        self.seed = seed
        self.svm_prior = svm_prior
        self.itml_order = itml_order

    # -- scikit-learn conventions -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in _PARAMS}

    def set_params(self, **params) -> "Separator":
        for k, v in params.items():
            if k not in _PARAMS:
                raise InputError(f"Separator has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"Separator(kernel={self.kernel!r}, C={self.C!r}, gamma={self.gamma!r}, pitch={self.pitch!r})"

    def _check_params(self):
        if self.kernel not in ("learned", "gaussian"):
            raise InputError(f"kernel must be 'learned' or 'gaussian', got {self.kernel!r}")
        if self.itml_mode not in ("lowrank", "exact"):
            raise InputError(f"itml_mode must be 'lowrank' or 'exact', got {self.itml_mode!r}")
        if self.itml_order not in ("given", "similar_first", "random"):
            raise InputError(f"itml_order must be 'given', 'similar_first' or 'random', got {self.itml_order!r}")
        if self.pitch not in ("true", "estimated"):
            raise InputError(f"pitch must be 'true' or 'estimated', got {self.pitch!r}")
        if self.svm_prior not in ("balanced", "natural"):
            raise InputError(f"svm_prior must be 'balanced' or 'natural', got {self.svm_prior!r}")
        for k in ("C", "gamma", "sigma_scale"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"{k} must be a positive number, got {v!r}")
        if self.sigma is not None and not (np.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be positive (or None for the median heuristic), got {self.sigma!r}")
        for k in ("per_domain", "max_train", "units_per_mixture", "max_sweeps"):
            if int(getattr(self, k)) < 1:
                raise InputError(f"{k} must be >= 1")

    # -- training -----------------------------------------------------------------------------
    def fit(self, mixset, *, kernel_ids: set[str] | None = None, workers: int = 1, scheduler=None,
            progress=None) -> "Separator":
        """Analyse the mixture set and train (kernel learning + SVM per channel).

        Parameters
        ----------
        mixset : corpus.MixtureSet or path of a mixture-set directory
        kernel_ids : ids of the mixtures for kernel learning (default: ``kernel`` split).
        workers, scheduler : local processes or a Dask scheduler (see :mod:`fastifkl.parallel`).
        progress : callable(stage, done, total), optional
        """
        from .corpus import MixtureSet
        from .parallel import executor

        self._check_params()
        if not isinstance(mixset, MixtureSet):
            mixset = MixtureSet.load(mixset)
        with executor(workers=workers, scheduler=scheduler) as ex:
            total = len(mixset)
            done = [0]

            def tick():
                done[0] += 1
                if progress:
                    progress("features", done[0], total)

            data = prepare(mixset, kernel_ids, pitch=self.pitch, lc_db=self.lc_db,
                           cfs=cfs_for(self.n_channels, self.fmin, self.fmax),
                           units_per_mixture=self.units_per_mixture, seed=self.seed, executor=ex, progress=tick)
            return self.fit_data(data, executor=ex, progress=progress)

    def fit_data(self, data: TrainingData, *, executor=None, progress=None, check: bool = False) -> "Separator":
        """Train from prepared :class:`TrainingData` (lets G-SVM and KL-SVM share one analysis)."""
        from .parallel import executor as make_executor

        self._check_params()
        if self.kernel == "learned" and len(data.domains) < 2:
            raise InputError(f"kernel learning needs at least 2 noise conditions (domains); the set has {data.domains}")
        params = {k: getattr(self, k) for k in _PARAMS}
        n_ch = len(data.cfs)
        jobs = ({"channel": c, "params": params, "mean": data.mean[c], "std": data.std[c], "svm": data.svm_units[c],
                 "kernel_units": data.kernel_units[c], "check": check,
                 "counts": None if data.class_counts is None else data.class_counts[c]} for c in range(n_ch))
        ex = make_executor() if executor is None else executor
        chans = []
        try:
            for res in ex.imap(_fit_channel, jobs):
                chans.append(res)
                if progress:
                    progress("channels", len(chans), n_ch)
        finally:
            if executor is None:
                ex.close()
        self.cfs_ = np.asarray(data.cfs, dtype=np.float64)
        self.mean_ = data.mean
        self.std_ = data.std
        self.points_ = [ch["Z"] for ch in chans]
        self.coef_ = [ch["coef"] for ch in chans]
        self.bias_ = np.array([ch["bias"] for ch in chans])
        self.sigma_ = np.array([ch["sigma"] for ch in chans])
        self.channel_info_ = [ch["info"] for ch in chans]
        self.training_ = {"digest": data.digest, "domains": data.domains, "pitch": data.pitch, **data.info}
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "points_"):
            raise InputError("this Separator is not fitted; call fit() or Separator.load()")

    def decision_function(self, x: np.ndarray, f0: np.ndarray | None = None) -> np.ndarray:
        """SVM decision values of every unit of ``x``: (C, M).  ``f0`` defaults to the pitch
        tracked on ``x`` itself (estimated pitch)."""
        return self._decision_and_responses(x, f0)[0]

    def _decision_and_responses(self, x, f0=None):
        from . import features
        from .gammatone import filterbank

        self._check_fitted()
        f0 = track_pitch(x) if f0 is None else f0
        R = filterbank(x, SAMPLE_RATE, self.cfs_)
        return self.decision_from_features(features.extract(R, f0, SAMPLE_RATE)), R

    def decision_from_features(self, X: np.ndarray) -> np.ndarray:
        """Decision values (C, M) from raw unit features (M, C, D)."""
        self._check_fitted()
        n_ch = len(self.points_)
        if X.ndim != 3 or X.shape[1] != n_ch or X.shape[2] != self.mean_.shape[1]:
            raise InputError(f"features must be (frames, {n_ch}, {self.mean_.shape[1]}), got {X.shape}")
        from ._threads import blas_single_thread

        out = np.empty((n_ch, X.shape[0]))
        with blas_single_thread():  # same bits whatever the thread count (see fastifkl._threads)
            for c in range(n_ch):
                Xn = (X[:, c, :] - self.mean_[c]) / self.std_[c]
                out[c] = _decision(Xn, self.points_[c], self.coef_[c], self.bias_[c], self.sigma_[c])
        return out

    def predict_mask(self, x: np.ndarray, f0: np.ndarray | None = None) -> np.ndarray:
        """Estimated binary mask (C, M), uint8."""
        return (self.decision_function(x, f0) > 0).astype(np.uint8)

    def separate(self, x: np.ndarray, *, return_mask: bool = False):
        """Separated speech (N,) of a mixture (and the mask when asked)."""
        from .gammatone import resynthesize

        d, R = self._decision_and_responses(x)
        mask = (d > 0).astype(np.uint8)
        y = resynthesize(x, mask, SAMPLE_RATE, self.cfs_, responses=R)
        return (y, mask) if return_mask else y

    # -- model file -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, dtype=np.float16) -> Path:
        """Write the model file (DESIGN section 3), atomically and deterministically.

        Points (normalised feature vectors, about N(0, 1) per dimension) are stored as ``dtype``:
        float16 by default, a quarter of float64.  Its relative rounding (4.9e-4) moves squared
        distances of 195-dim points by ~1e-4 of sigma^2, far below what changes a decision (the
        tests bound the mask disagreement); the file, not the in-memory model, is what ``load``
        and ``separate`` use, so results are reproducible bit-for-bit.
        """
        from . import model_file

        self._check_fitted()
        meta = {
            "package_version": __version__,
            "sample_rate": SAMPLE_RATE,
            "cfs": self.cfs_.tolist(),
            "params": self.get_params(),
            "feature_spec": "default-195",
            "n_dims": int(self.mean_.shape[1]),
            "training": self.training_,
            "channels": self.channel_info_,
        }
        arrays = {"mean": self.mean_, "std": self.std_, "bias": self.bias_, "sigma": self.sigma_}
        for c, (Z, a) in enumerate(zip(self.points_, self.coef_)):
            arrays[f"ch{c:03d}_points"] = np.asarray(Z, dtype=dtype)
            arrays[f"ch{c:03d}_coef"] = np.asarray(a, dtype=np.float64)
        return model_file.write(path, json.loads(json.dumps(meta, default=_json_default)), arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Separator":
        """Read and validate a model file; :class:`ModelError` (one line) on any problem."""
        from . import model_file

        meta, arrays = model_file.read(path)
        try:
            params = {k: v for k, v in meta["params"].items() if k in _PARAMS}
            cfs = np.asarray(meta["cfs"], dtype=np.float64)
            n_dims = int(meta["n_dims"])
            if meta.get("sample_rate") != SAMPLE_RATE:
                raise ModelError(f"{path}: model sample rate {meta.get('sample_rate')} is not {SAMPLE_RATE}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model metadata incomplete ({exc})") from None
        n_ch = cfs.size
        sep = cls(**params)
        sep.cfs_ = cfs
        sep.mean_ = model_file.expect(path, arrays, "mean", np.float64, (n_ch, n_dims))
        sep.std_ = model_file.expect(path, arrays, "std", np.float64, (n_ch, n_dims))
        if np.any(sep.std_ <= 0):
            raise ModelError(f"{path}: array 'std' has non-positive entries")
        sep.bias_ = model_file.expect(path, arrays, "bias", np.float64, (n_ch,))
        sep.sigma_ = model_file.expect(path, arrays, "sigma", np.float64, (n_ch,))
        if np.any(sep.sigma_ <= 0):
            raise ModelError(f"{path}: array 'sigma' has non-positive entries")
        sep.points_, sep.coef_ = [], []
        for c in range(n_ch):
            Z = model_file.expect(path, arrays, f"ch{c:03d}_points", np.float32, (None, n_dims))
            a = model_file.expect(path, arrays, f"ch{c:03d}_coef", np.float64, (Z.shape[0],))
            sep.points_.append(Z.astype(np.float32))  # float16 on disk -> exact in float32
            sep.coef_.append(a)
        sep.channel_info_ = meta.get("channels", [])
        sep.training_ = meta.get("training", {})
        sep.meta_ = meta
        return sep

    def size_summary(self) -> dict:
        self._check_fitted()
        n = [int(z.shape[0]) for z in self.points_]
        return {"channels": len(n), "points_total": int(sum(n)), "points_per_channel_mean": float(np.mean(n))}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "default.fkl"


def load_default() -> Separator:
    """The default model shipped in the package (trained on real speech and real noises)."""
    if not DEFAULT_MODEL.is_file():
        raise ModelError(f"{DEFAULT_MODEL}: the default model is missing from this installation; pass -m MODEL")
    return Separator.load(DEFAULT_MODEL)
