"""Training one channel of the separator (one of 64 independent jobs; paper Section 3.2).

1. the SVM training sample: at most ``max_train`` units of the SVM training mixtures, drawn
   with the channel's IBM prior in those mixtures (``svm_prior="natural"``) or class-balanced;
2. kernel learning (``kernel="learned"``): ~``per_domain`` units from each training noise
   (domain) of the kernel-learning mixtures, cross-domain constraints, K0 = Gaussian(sigma),
   thresholds u/l at the 5th/95th percentiles, kernel ITML -> :class:`~fastifkl.kernels.LearnedKernel`;
   a channel where that is impossible (e.g. a one-class domain) falls back to the Gaussian kernel;
3. a LIBSVM C-SVC on the Gram matrix of the sample under that kernel (KL-SVM) or under the
   Gaussian kernel (G-SVM);
4. folding the learned kernel into the SVM;
5. Platt calibration (:func:`fastifkl.svm.platt_fit`) of the folded decision values on the
   channel's calibration units (``job["calib"]``: units of the SVM-training mixtures outside
   the SVM candidate pool, natural class prior), giving ``P(target | f) = 1/(1 + exp(A f + B))``.

Folding the learned kernel into the SVM (stage 4):  With support vectors s_i, dual coefficients a_i
   and landmarks x_1..x_n of the learned kernel (paper Eq. 9),

       f(z) = sum_i a_i kappa(z, s_i) + b
            = kappa0(z, S) a + kappa0(z, X) w + b,     w = P C (k(S) P)^T a

   (``P`` = identity and ``C = S`` in exact mode; ``P`` the Nystroem map and ``C = W - I`` in
   low-rank mode).  So every channel stores one point set ``Z = [S; X]`` and one coefficient
   vector ``[a; w]``, and its decision values for all frames are one Gaussian-kernel GEMM
   (:func:`fastifkl.kernels.gaussian_decision`).

Paper scale (``solver="liblinear"``, REFERENCE 15): stages 3-4 become a linear SVM
(:class:`fastifkl.svm.LinearSVM`, LIBLINEAR ``-s 2``) on an explicit kernel map of every SVM
training unit (:mod:`fastifkl.kernel_map`): ``phi(x) = A k(Z, x)`` with ``Z`` = ``n_landmarks``
landmarks drawn from the training units (Gaussian; ``landmark_method`` uniform or k-means) or the
kernel-learning points plus uniform training units up to ``n_landmarks`` (learned kernel, so that
one kernel block serves the Nystroem part and Eq. 9's correction).  The linear model folds into the
same form, ``w . phi(x) + b = (A^T w) . k(Z, x) + b``: points ``Z``, coefficients ``A^T w``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError


def fit_channel(job: dict) -> dict:
    """Learn the kernel (optional) and the SVM of one channel; returns the folded predictor.

    ``job``: ``channel``, ``params`` (the Separator's), ``mean``/``std`` (D,), ``svm``,
    ``kernel_units`` and optionally ``calib`` (:class:`~fastifkl.training.ChannelUnits`),
    ``counts`` (2,) or None, ``check``.  Returns ``{"Z", "coef", "bias", "sigma", "platt",
    "info"}``; ``platt`` is ``(A, B)``, or None without calibration units.  BLAS runs on one thread
    (thread-count-independent bits, see :mod:`fastifkl._threads`).
    """
    from ._threads import blas_single_thread

    with blas_single_thread():
        return _fit(job)


def _fit(job: dict) -> dict:
    from .kernels import gaussian, gaussian_decision, median_sigma
    from .svm import ChannelSVM

    p = job["params"]
    if p.get("solver", "libsvm") == "liblinear":
        return _fit_linear(job)
    rng = np.random.default_rng([p["seed"], 1000 + job["channel"]])
    Xs, ys = _svm_sample(job, rng)
    info: dict[str, Any] = {"n_train": int(ys.size), "n_pos": int(ys.sum())}
    lk = sigma = None
    if p["kernel"] == "learned":
        lk, sigma = _learned_kernel(job, rng, info)
    if lk is None:
        sigma = p["sigma"] or median_sigma(Xs, rng) * p["sigma_scale"]
        gram = gaussian(Xs, sigma=sigma)
    else:
        gram = lk(Xs)
    svm = ChannelSVM(C=p["C"]).fit(gram, ys)
    info["n_sv"] = svm.n_support_
    Z, coef = _fold(lk, svm, Xs)
    out = {"Z": Z, "coef": coef, "bias": float(svm.intercept_), "sigma": float(sigma), "info": info,
           "platt": _calibrate(job, Z, coef, float(svm.intercept_), float(sigma), info)}
    if job.get("check"):
        # decision values of the folded form must equal the SVM's own on its training points
        S = Xs[svm.support_]
        ref = svm.decision(lk(Xs, S) if lk is not None else gaussian(Xs, S, sigma))
        mine = gaussian_decision(Xs, Z, coef, out["bias"], sigma)
        out["info"]["fold_check_max_abs_err"] = float(np.max(np.abs(ref - mine))) if ref.size else 0.0
    return out


def _fit_linear(job: dict) -> dict:
    """Paper scale: LIBLINEAR on the kernel map of every SVM training unit, folded (module doc)."""
    from .kernel_map import gaussian_map, landmarks, learned_map
    from .kernels import gaussian_decision, median_sigma
    from .svm import LinearSVM

    p = job["params"]
    c = job["channel"]
    rng = np.random.default_rng([p["seed"], 1000 + c])
    rng_map = np.random.default_rng([p["seed"], 3000 + c])  # landmarks: their own stream
    Xs, ys = _svm_sample(job, rng)
    info: dict[str, Any] = {"n_train": int(ys.size), "n_pos": int(ys.sum())}
    m = int(p["n_landmarks"])
    lk = None
    if p["kernel"] == "learned":
        lk, _ = _learned_kernel(job, rng, info)
    if lk is None:
        sigma = p["sigma"] or median_sigma(Xs, rng) * p["sigma_scale"]
        kmap = gaussian_map(landmarks(Xs, m, p.get("landmark_method", "uniform"), rng_map), sigma)
    else:
        n_extra = max(0, m - lk.landmarks.shape[0])
        extra = landmarks(Xs, n_extra, "uniform", rng_map) if n_extra else None
        kmap = learned_map(lk, extra)
    Phi = kmap.transform(Xs)
    svm = LinearSVM(C=p["C"]).fit(Phi, ys)
    coef = kmap.fold(svm.coef_)
    bias = float(svm.intercept_)
    info.update(n_sv=int(kmap.n_landmarks), map_dim=int(kmap.dim), solver=svm.options_ or "constant")
    out = {"Z": kmap.Z, "coef": coef, "bias": bias, "sigma": float(kmap.sigma), "info": info,
           "platt": _calibrate(job, kmap.Z, coef, bias, float(kmap.sigma), info)}
    if job.get("check"):
        # the folded kernel expansion must equal the linear model on the map
        ref = svm.decision(Phi)
        mine = gaussian_decision(Xs, kmap.Z, coef, bias, kmap.sigma)
        info["fold_check_max_abs_err"] = float(np.max(np.abs(ref - mine)))
    return out


def _calibrate(job: dict, Z, coef, bias: float, sigma: float, info: dict):
    """Stage 5: Platt's (A, B) on the calibration units (None when there are none)."""
    from .kernels import gaussian_decision
    from .svm import platt_fit, platt_objective

    cu = job.get("calib")
    if cu is None or cu.y.size == 0:
        return None
    Xc = (np.asarray(cu.X, dtype=np.float64) - job["mean"]) / job["std"]
    d = gaussian_decision(Xc, Z, coef, bias, sigma)
    A, B = platt_fit(d, cu.y)
    info.update(n_calib=int(cu.y.size), n_calib_pos=int(cu.y.sum()), platt_A=A, platt_B=B,
                calib_log_loss=platt_objective(A, B, d, cu.y) / cu.y.size,
                calib_accuracy=float(np.mean((d > 0) == (cu.y > 0))))
    return A, B


def _svm_sample(job: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: the normalised SVM training sample (n, D) and its labels (n,); every unit of
    the pool when ``max_train`` is None."""
    from .svm import balanced_subsample, prior_subsample

    p = job["params"]
    units = job["svm"]
    if units.y.size == 0:
        raise InputError("no SVM training mixtures (every mixture was used for kernel learning)")
    counts = job.get("counts")
    if p["max_train"] is None:
        take = np.arange(units.y.size)
    elif p.get("svm_prior", "balanced") == "natural" and counts is not None and counts.sum() > 0:
        # the class mix of the SVM's training sample = the IBM prior of this channel in the
        # training mixtures (the class-balanced pool is subsampled to it)
        take = prior_subsample(units.y, p["max_train"], float(counts[1] / counts.sum()), rng)
    else:
        take = balanced_subsample(units.y, p["max_train"], rng)
    return (np.asarray(units.X[take], dtype=np.float64) - job["mean"]) / job["std"], units.y[take]


def _learned_kernel(job: dict, rng: np.random.Generator, info: dict):
    """Stage 2: kernel ITML on the channel's cross-domain constraints.

    Returns ``(LearnedKernel, sigma)``, or ``(None, None)`` with ``info["fallback"]`` set when the
    channel cannot learn a kernel (e.g. a domain with one class: no cross-domain constraints).
    """
    from .constraints import distance_thresholds
    from .itml import learn_kernel
    from .kernels import LearnedKernel, gaussian, median_sigma
    from .training import kernel_problem

    p = job["params"]
    c = job["channel"]
    try:
        Xl, cons = kernel_problem(job["kernel_units"], job["mean"], job["std"], p["per_domain"], rng, info)
        sigma = p["sigma"] or median_sigma(Xl, rng) * p["sigma_scale"]
        K0 = gaussian(Xl, sigma=sigma)
        u, l = distance_thresholds(K0, cons)
        res = learn_kernel(K0, cons, u, l, p["gamma"], mode=p["itml_mode"], rank=p["rank"], tol=p["tol"],
                           max_sweeps=p["max_sweeps"], order=p.get("itml_order", "given"), seed=[p["seed"], 2000 + c])
        lk = LearnedKernel.from_result(Xl, sigma, res)
        info.update(n_landmarks=int(Xl.shape[0]), n_constraints=int(cons[0].size), u=float(u), l=float(l),
                    sweeps=int(res.n_sweeps), converged=bool(res.converged), rank=res.rank,
                    truncation_error=res.truncation_error)
        return lk, sigma
    except InputError as exc:
        info["fallback"] = f"gaussian kernel ({exc})"
        return None, None


def _fold(lk, svm, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage 4: the expansion points ``Z = [S; X]`` and coefficients ``[a; w]`` (see the module
    docstring); just ``(S, a)`` for the Gaussian kernel."""
    S = Xs[svm.support_]
    a = svm.dual_coef_
    if lk is None or not a.size:
        return S, a
    v = lk.correction @ (lk.features(S).T @ a)
    w = v if lk.projection is None else lk.projection @ v
    return np.vstack([S, lk.landmarks]), np.concatenate([a, w])
