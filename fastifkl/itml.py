"""Domain-invariant kernel learning: kernelized ITML with cross-domain constraints (paper Section 4).

Algorithm (Davis, Kulis, Jain, Sra & Dhillon 2007, Alg. 1 with slack; REFERENCE.md section 6):
dual variables lambda = 0, targets xi = u (similar) / l (dissimilar), delta = +1 / -1,
gamma_proj = gamma / (gamma + 1); cycling over the constraints (i, j):

    p     = (e_i - e_j)^T K (e_i - e_j)
    alpha = min(lambda, delta * gamma_proj * (1/p - 1/xi))
    beta  = delta * alpha / (1 - delta * alpha * p)
    xi    <- 1 / (1/xi + delta * alpha / gamma);   lambda <- lambda - alpha
    K     <- K + beta K (e_i - e_j)(e_i - e_j)^T K

until sum|lambda - lambda_prev| / (||lambda|| + ||lambda_prev||) < tol after a sweep (the test of
metric_learn.ITML), or ``max_sweeps``.

Two modes:

* ``exact``: the n x n kernel.  Projections are applied with *delayed rank-1 updates*: inside a
  block of b active projections the current column K(e_i - e_j) is the base column plus the
  block's b rank-1 terms (an O(n b) AXPY sweep in a Numba kernel), and the block is folded into
  the symmetric base matrix with one BLAS SYRK per sign (n^2 b / 2 multiply-adds at GEMM speed).
  The correction S = K0^-1 (K - K0) K0^-1 of the out-of-sample kernel is carried along without
  inverting K0 (w = (e_i - e_j) + S K0 (e_i - e_j), S <- S + beta w w^T), which needs M^T = K0 S.
* ``lowrank``: K0 ~= G G^T (top-r eigenpairs), K = K0 + G (W - I) G^T, and each projection
  updates the r x r matrix W in O(r^2) (Kulis, Sustik & Dhillon 2009) -- one Numba kernel whose
  rank-1 update of W is fused with the mat-vec W g of the next constraint.

A projection with alpha == 0 (a satisfied constraint whose lambda is 0) changes nothing; both
modes detect it from p alone (O(b) in exact mode, one mat-vec in low-rank mode) and skip the
update, which is exact, not an approximation.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._itml_kernels import exact_block, flush, lowrank_sweep, symmetrize_upper
from ._threads import blas_single_thread
from .constraints import check_constraints, cross_domain_constraints, distance_thresholds, pair_distances
from .errors import InputError

# cross_domain_constraints and distance_thresholds live in fastifkl.constraints; they stay importable
# from here because the README's Python API shows itml.cross_domain_constraints.
__all__ = ["learn_kernel", "ITMLResult", "cross_domain_constraints", "distance_thresholds"]


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------

@dataclass
class ITMLResult:
    """Output of :func:`learn_kernel`.

    Attributes
    ----------
    K : (n, n) learned kernel on the training points (symmetric positive definite).
    mode : "exact" or "lowrank".
    S : (n, n) correction K0^-1 (K - K0) K0^-1 (exact mode with ``track_S``), else None.
    G, W : (n, r) factor with K0 ~= G G^T and the learned (r, r) matrix (low-rank mode);
        there K = K0 + G (W - I) G^T.
    projection : (n, r) Nystroem map Q_r Lambda_r^-1/2 (low-rank mode), phi(z) = projection^T k(z).
    rank, truncation_error : r and ||K0 - G G^T||_F / ||K0||_F (low-rank mode).
    lambdas : (m,) dual variables, in the order of the given constraints.
    slack : (m,) final targets xi, same order.
    n_sweeps, converged, conv : sweeps run, whether the tolerance was met, last convergence value.
    n_updates : projections that changed K (alpha != 0), summed over sweeps.
    sweep_times, sweep_updates : seconds (with ``time_sweeps``) and active projections per sweep.
    """

    K: np.ndarray
    mode: str
    lambdas: np.ndarray
    slack: np.ndarray
    n_sweeps: int
    converged: bool
    conv: float
    n_updates: int
    S: np.ndarray | None = None
    G: np.ndarray | None = None
    W: np.ndarray | None = None
    projection: np.ndarray | None = None
    rank: int | None = None
    truncation_error: float | None = None
    sweep_times: list = field(default_factory=list)
    sweep_updates: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------------

def _check_K0(K0: Any) -> np.ndarray:
    K0 = np.asarray(K0, dtype=np.float64)
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1] or K0.shape[0] < 2:
        raise InputError(f"K0 must be a square matrix with n >= 2, got shape {K0.shape}")
    if not np.all(np.isfinite(K0)):
        raise InputError("K0 contains NaN or infinite values")
    scale = np.abs(K0).max()
    if not scale > 0:
        raise InputError("K0 is all zeros")
    if np.abs(K0 - K0.T).max() > 1e-10 * scale:
        raise InputError("K0 is not symmetric")
    return 0.5 * (K0 + K0.T)


def _lowrank_factor(K0: np.ndarray, evals: np.ndarray, evecs: np.ndarray, rank: int | None, rank_tol: float):
    lam = evals[::-1]
    V = evecs[:, ::-1]
    pos = lam > lam[0] * 1e-12
    total = np.sqrt(np.sum(lam ** 2))
    # err[r] = relative Frobenius error of the best rank-r approximation, r = 0..n
    tail = np.sqrt(np.maximum(np.cumsum((lam ** 2)[::-1])[::-1], 0.0))
    err = np.append(tail, 0.0) / total
    rmax = int(pos.sum())
    if rank is None:
        ok = np.flatnonzero(err[: rmax + 1] <= rank_tol)
        rank = int(ok[0]) if len(ok) else rmax
        rank = max(rank, 1)
    else:
        rank = int(rank)
        if not 1 <= rank <= K0.shape[0]:
            raise InputError(f"rank must be in [1, {K0.shape[0]}], got {rank}")
        if rank > rmax:
            raise InputError(f"rank {rank} exceeds the numerical rank of K0 ({rmax})")
    Lr = lam[:rank]
    Vr = V[:, :rank]
    G = Vr * np.sqrt(Lr)
    P = Vr / np.sqrt(Lr)
    return G, P, rank, float(err[rank])


def learn_kernel(K0: Any, constraints: Any, u: float, l: float, gamma: float = 1.0, *,
                 mode: str = "exact", rank: int | None = None, rank_tol: float = 0.01,
                 factor: Any = None, tol: float = 1e-3, max_sweeps: int = 100,
                 similar_first: bool = False, order: str | None = None, seed: Any = 0,
                 track_S: bool = True, block: int = 64, time_sweeps: bool = False) -> ITMLResult:
    """Learn a kernel by ITML Bregman projections (paper Eq. 7-8).

    Parameters
    ----------
    K0 : array, shape (n, n)
        Symmetric positive semidefinite base kernel (e.g. ``kernels.gaussian(X, sigma=...)``).
    constraints : tuple (i, j, similar) of arrays, shape (m,) each
        Pairs of point indices into K0; ``similar`` True means d(i, j) <= u is wanted, else >= l.
    u, l : float
        Distance thresholds (squared kernel distances; see :func:`distance_thresholds`).
    gamma : float
        Slack trade-off (> 0; ``np.inf`` enforces the constraints exactly).
    mode : "exact" or "lowrank"
    rank : int, optional
        Low-rank mode: r; by default the smallest r whose relative Frobenius truncation error
        ||K0 - G G^T|| / ||K0|| is <= ``rank_tol``.
    factor : array, shape (n, r), optional
        Low-rank mode: use this G instead of K0's eigen-factor (e.g. a pivoted Cholesky factor, or
        data G for the linear problem); the truncation error is measured against the given K0.
        The result then has no Nystroem map (``projection`` is None).
    tol : float
        Convergence tolerance on the relative change of the dual variables per sweep.
    max_sweeps : int
        Hard cap on sweeps over the constraints.
    similar_first : bool
        Shorthand for ``order="similar_first"``.
    order : {"given", "similar_first", "random"}, optional
        The cyclic order of the projections: as given; all similar constraints before the
        dissimilar ones (the order of ``metric_learn.ITML``); or one seeded random permutation,
        kept for every sweep.  The optimum does not depend on it, but the kernel after a capped
        number of sweeps does: on real channel features, 20 sweeps in random order satisfy
        about 91 % of the constraints against 77-84 % in the given (domain-pair-blocked) order
        (``python bench/itml_satisfaction.py``).  Default: "given" (or "similar_first").
    seed : int or sequence of int
        Seed of the random order.
    track_S : bool
        Exact mode: carry S = K0^-1 (K - K0) K0^-1 for the out-of-sample kernel (about 3x the
        K-only cost per active projection, measured).
    block : int
        Exact mode: rank-1 updates delayed per BLAS fold.

    Returns
    -------
    ITMLResult
    """
    # 1. checks ---------------------------------------------------------------------------------
    K0 = _check_K0(K0)
    n = K0.shape[0]
    i, j, similar = check_constraints(constraints, n)
    gamma, u, l, max_sweeps = _check_settings(gamma, u, l, mode, order, max_sweeps, tol)
    scale = float(np.max(np.diagonal(K0)))
    _check_distinct(pair_distances(K0, i, j), scale, i, j, "{k} constrained pair(s) have zero kernel distance "
                    "(duplicate points), e.g. points {i} and {j}; remove duplicates")

    # 2. low-rank factor (or the PSD check of K0) ---------------------------------------------------
    G, P, rank, trunc = _factor(K0, mode, rank, rank_tol, factor)

    # 3. the projection order and the dual state -------------------------------------------------------
    order = _projection_order(order, similar_first, similar, seed)
    ci = np.ascontiguousarray(i[order])
    cj = np.ascontiguousarray(j[order])
    delta = np.where(similar[order], 1.0, -1.0)
    xi = np.where(similar[order], u, l).astype(np.float64)
    lam = np.zeros(len(ci))
    gamma_proj = 1.0 if np.isinf(gamma) else gamma / (gamma + 1.0)

    # 4. sweeps until the dual variables settle ----------------------------------------------------
    state = (ci, cj, delta, xi, lam, gamma, gamma_proj)
    if mode == "lowrank":
        gd = np.einsum("ij,ij->i", G[ci] - G[cj], G[ci] - G[cj])
        _check_distinct(gd, scale, ci, cj, "points {i} and {j} coincide in the rank-" + str(rank)
                        + " factor (zero distance); increase rank")
        W = np.eye(rank)
        sweep = _lowrank_sweeper(G, W, state)
    else:
        K = K0.copy()
        S = np.zeros((n, n)) if track_S else None
        sweep = _exact_sweeper(K, S, state, block, track_S)
    # exact mode folds blocks with small SYRKs (n x n x 64): a multi-threaded BLAS on a busy
    # machine was measured 70x slower there, so BLAS runs on one thread
    with blas_single_thread() if mode == "exact" else contextlib.nullcontext():
        run = _iterate(sweep, lam, tol, max_sweeps)

    # 5. the result, in the order of the given constraints -------------------------------------
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    common = dict(mode=mode, lambdas=lam[inv], slack=xi[inv], n_sweeps=run["n_sweeps"], converged=run["converged"],
                  conv=run["conv"], n_updates=run["n_updates"], sweep_times=run["times"] if time_sweeps else [],
                  sweep_updates=run["sweep_updates"])
    if mode == "lowrank":
        W = 0.5 * (W + W.T)
        Kl = K0 + G @ (W - np.eye(rank)) @ G.T
        Kl = 0.5 * (Kl + Kl.T)
        return ITMLResult(K=Kl, G=G, W=W, projection=P, rank=rank, truncation_error=trunc, **common)
    K = symmetrize_upper(K)
    S = symmetrize_upper(S) if track_S else None
    return ITMLResult(K=K, S=S, **common)


def _check_settings(gamma, u, l, mode, order, max_sweeps, tol) -> tuple[float, float, float, int]:
    gamma = float(gamma)
    if not gamma > 0:
        raise InputError(f"gamma must be > 0, got {gamma}")
    u = float(u)
    l = float(l)
    if not (np.isfinite(u) and np.isfinite(l) and u > 0 and l > 0):
        raise InputError(f"thresholds must be positive and finite, got u={u}, l={l}")
    if mode not in ("exact", "lowrank"):
        raise InputError(f"mode must be 'exact' or 'lowrank', got {mode!r}")
    if order not in (None, "given", "similar_first", "random"):
        raise InputError(f"order must be 'given', 'similar_first' or 'random', got {order!r}")
    max_sweeps = int(max_sweeps)
    if max_sweeps < 1:
        raise InputError(f"max_sweeps must be >= 1, got {max_sweeps}")
    if not tol > 0:
        raise InputError(f"tol must be > 0, got {tol}")
    return gamma, u, l, max_sweeps


def _check_distinct(d: np.ndarray, scale: float, i: np.ndarray, j: np.ndarray, msg: str) -> None:
    """One-line error (``msg`` with {k}, {i}, {j}) when a constrained pair has zero distance ``d``."""
    bad = np.flatnonzero(d <= 1e-12 * max(scale, 1e-300))
    if len(bad):
        raise InputError(msg.format(k=len(bad), i=i[bad[0]], j=j[bad[0]]))


def _factor(K0: np.ndarray, mode: str, rank: int | None, rank_tol: float, factor: Any):
    """``(G, P, rank, truncation error)`` in low-rank mode (all None in exact mode); refuses a
    K0 that is not positive semidefinite (unless an explicit ``factor`` is given)."""
    n = K0.shape[0]
    if mode == "lowrank" and factor is not None:
        G = np.ascontiguousarray(factor, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != n or not np.all(np.isfinite(G)):
            raise InputError(f"factor must be a finite ({n}, r) array, got shape {G.shape}")
        return G, None, G.shape[1], float(np.linalg.norm(K0 - G @ G.T) / np.linalg.norm(K0))
    evals, evecs = np.linalg.eigh(K0) if mode == "lowrank" else (np.linalg.eigvalsh(K0), None)
    if evals[0] < -1e-8 * evals[-1]:
        raise InputError(f"K0 is not positive semidefinite (eigenvalue {evals[0]:.3g} vs largest {evals[-1]:.3g})")
    if mode == "lowrank":
        return _lowrank_factor(K0, evals, evecs, rank, rank_tol)
    return None, None, rank, None


def _projection_order(order: str | None, similar_first: bool, similar: np.ndarray, seed) -> np.ndarray:
    """Indices of the constraints in the cyclic order of the projections."""
    if order is None:
        order = "similar_first" if similar_first else "given"
    if order == "given":
        return np.arange(len(similar))
    if order == "similar_first":
        return np.argsort(~similar, kind="stable")
    return np.random.default_rng(seed).permutation(len(similar))


def _lowrank_sweeper(G: np.ndarray, W: np.ndarray, state: tuple):
    """One low-rank sweep over all constraints, in place on ``W`` and the dual state."""
    rank = W.shape[0]
    bufs = (np.empty(rank), np.empty(rank), np.empty(rank))

    def sweep():
        return lowrank_sweep(G, W, *state, *bufs)

    return sweep


def _exact_sweeper(K: np.ndarray, S: np.ndarray | None, state: tuple, block: int, track_S: bool):
    """One exact sweep: blocks of delayed rank-1 updates folded into ``K`` (and ``S``) with BLAS."""
    n = K.shape[0]
    ci = state[0]
    MT = np.zeros((n, n)) if track_S else np.zeros((1, 1))
    b = max(int(block), 1)
    Z = np.zeros((b, n))
    Y = np.zeros((b, n)) if track_S else np.zeros((1, 1))

    def sweep():
        t = 0
        n_upd = 0
        while t < len(ci):
            t, kp, kn = exact_block(K, MT, *state, t, Z, Y, track_S)
            flush(K, MT, S, Z, Y, kp, kn, track_S)
            n_upd += kp + kn
        return n_upd

    return sweep


def _iterate(sweep, lam: np.ndarray, tol: float, max_sweeps: int) -> dict:
    """Sweep until the relative change of the dual variables ``lam`` is below ``tol`` (the test
    of metric_learn.ITML) or ``max_sweeps``."""
    lam_old = np.zeros(len(lam))
    conv = np.inf
    converged = False
    n_updates = 0
    times = []
    sweep_updates = []
    for _ in range(max_sweeps):
        t0 = time.perf_counter()
        upd = sweep()
        n_updates += upd
        times.append(time.perf_counter() - t0)
        sweep_updates.append(upd)
        normsum = np.linalg.norm(lam) + np.linalg.norm(lam_old)
        if normsum == 0:
            converged = True
            conv = 0.0
            break
        conv = float(np.abs(lam_old - lam).sum() / normsum)
        if not np.isfinite(conv):
            raise InputError("kernel learning diverged (non-finite dual variables); check K0 and the thresholds")
        if conv < tol:
            converged = True
            break
        lam_old[:] = lam
    return {"n_sweeps": len(sweep_updates), "converged": converged, "conv": conv, "n_updates": n_updates,
            "times": times, "sweep_updates": sweep_updates}
