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
from numba import njit
from scipy.linalg import blas

from .errors import InputError

__all__ = ["cross_domain_constraints", "distance_thresholds", "learn_kernel", "ITMLResult"]


# ----------------------------------------------------------------------------------------------
# constraints and thresholds
# ----------------------------------------------------------------------------------------------

def _balanced_take(labels: np.ndarray, members: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    """Pick ``k`` of ``members`` as evenly over the classes as their sizes allow."""
    classes = np.unique(labels[members])
    pools = [gen.permutation(members[labels[members] == c]) for c in classes]
    quota = np.zeros(len(pools), dtype=np.int64)
    left = min(k, len(members))
    while left > 0:  # water-filling: give one more to every class that still has points
        open_ = [c for c in range(len(pools)) if quota[c] < len(pools[c])]
        share = max(left // len(open_), 1)
        for c in open_:
            add = min(share, len(pools[c]) - quota[c], left)
            quota[c] += add
            left -= add
            if left == 0:
                break
    return np.sort(np.concatenate([p[:q] for p, q in zip(pools, quota)]))


def cross_domain_constraints(labels: Any, domains: Any, per_domain: int = 100,
                             rng: np.random.Generator | int | None = None
                             ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sample points per domain and emit every cross-domain pair as a constraint (paper Eq. 3).

    Parameters
    ----------
    labels : array, shape (N,)
        Class of every candidate point (the IBM label of the T-F unit).
    domains : array, shape (N,)
        Domain (noise condition) of every candidate point.
    per_domain : int
        Points sampled from each domain, class-balanced where possible (all of a domain's
        points when it has fewer).
    rng : Generator or seed, optional

    Returns
    -------
    points : ndarray of int, shape (n,)
        Indices (into ``labels``) of the sampled points, grouped by domain; K0 is built on them.
    constraints : tuple (i, j, similar)
        ``i``, ``j`` int arrays indexing ``points`` (so 0 <= i, j < n), ``similar`` bool array,
        one entry per pair of sampled points from two different domains
        (``per_domain^2 * C(D, 2)`` pairs for D full domains).
    """
    labels = np.asarray(labels)
    domains = np.asarray(domains)
    if labels.ndim != 1 or domains.ndim != 1 or labels.shape != domains.shape:
        raise InputError(f"labels and domains must be 1-D arrays of one length, got {labels.shape} and {domains.shape}")
    per_domain = int(per_domain)
    if per_domain < 1:
        raise InputError(f"per_domain must be >= 1, got {per_domain}")
    gen = np.random.default_rng(rng)
    doms = np.unique(domains)
    if len(doms) < 2:
        raise InputError(f"cross-domain constraints need at least 2 domains, got {len(doms)}")
    picked = []
    for d in doms:
        members = np.flatnonzero(domains == d)
        if len(np.unique(labels[members])) < 2:
            raise InputError(f"domain {d!r} has a single class ({labels[members][0]!r}); "
                             "cross-domain constraints need both classes in every domain")
        picked.append(_balanced_take(labels, members, per_domain, gen))
    points = np.concatenate(picked)
    dom_of = np.concatenate([np.full(len(p), a) for a, p in enumerate(picked)])
    starts = np.concatenate([[0], np.cumsum([len(p) for p in picked])])
    lab = labels[points]
    ii, jj = [], []
    for a in range(len(picked)):
        for b in range(a + 1, len(picked)):
            ia = np.arange(starts[a], starts[a + 1])
            ib = np.arange(starts[b], starts[b + 1])
            ii.append(np.repeat(ia, len(ib)))
            jj.append(np.tile(ib, len(ia)))
    i = np.concatenate(ii).astype(np.int64)
    j = np.concatenate(jj).astype(np.int64)
    assert np.all(dom_of[i] != dom_of[j])
    return points, (i, j, lab[i] == lab[j])


def _check_constraints(constraints: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        i, j, similar = constraints
    except (TypeError, ValueError):
        raise InputError("constraints must be a tuple (i, j, similar) of three 1-D arrays") from None
    i = np.asarray(i)
    j = np.asarray(j)
    similar = np.asarray(similar)
    if not (i.ndim == j.ndim == similar.ndim == 1 and len(i) == len(j) == len(similar)):
        raise InputError("constraints (i, j, similar) must be 1-D arrays of one length")
    if len(i) == 0:
        raise InputError("no constraints given")
    if not (np.issubdtype(i.dtype, np.integer) and np.issubdtype(j.dtype, np.integer)):
        raise InputError("constraint indices i, j must be integers")
    if i.min() < 0 or j.min() < 0 or i.max() >= n or j.max() >= n:
        raise InputError(f"constraint indices must lie in [0, {n})")
    if np.any(i == j):
        raise InputError("a constraint pairs a point with itself (i == j)")
    return i.astype(np.int64), j.astype(np.int64), similar.astype(bool)


def _pair_dists(K0: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    d = np.diagonal(K0)
    return d[i] + d[j] - 2.0 * K0[i, j]


def distance_thresholds(K0: Any, constraints: Any, lower_pct: float = 5.0,
                        upper_pct: float = 95.0) -> tuple[float, float]:
    """Distance thresholds u, l: percentiles of the constrained pairs' squared kernel distances.

    d(i, j) = K0_ii + K0_jj - 2 K0_ij over all constraints (similar and dissimilar).

    Returns
    -------
    (u, l) : the ``lower_pct`` and ``upper_pct`` percentiles.
    """
    K0 = np.asarray(K0, dtype=np.float64)
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1]:
        raise InputError(f"K0 must be a square matrix, got shape {K0.shape}")
    if not 0 <= lower_pct < upper_pct <= 100:
        raise InputError(f"need 0 <= lower_pct < upper_pct <= 100, got {lower_pct}, {upper_pct}")
    i, j, _ = _check_constraints(constraints, K0.shape[0])
    d = _pair_dists(K0, i, j)
    u, l = np.percentile(d, [lower_pct, upper_pct])
    if not u > 0:
        raise InputError(f"the {lower_pct}th percentile of the constrained distances is {u:.3g} "
                         "(duplicate points?); thresholds must be positive")
    return float(u), float(l)


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
# Numba kernels
# ----------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _alpha(p, xi, lam, delta, gamma_proj):
    return min(lam, delta * gamma_proj * (1.0 / p - 1.0 / xi))


@njit(cache=True, nogil=True, fastmath={"contract"})
def _matvec(W, g, y):  # pragma: no cover
    """y = W g for a symmetric W, as AXPYs over rows of W (row k == column k): unit stride, no
    reduction, and eight rows per pass over y so y is loaded/stored once per 8 rows."""
    r = W.shape[0]
    for a in range(r):
        y[a] = 0.0
    k = 0
    while k + 8 <= r:
        g0 = g[k]; g1 = g[k + 1]; g2 = g[k + 2]; g3 = g[k + 3]  # noqa: E702
        g4 = g[k + 4]; g5 = g[k + 5]; g6 = g[k + 6]; g7 = g[k + 7]  # noqa: E702
        w0 = W[k]; w1 = W[k + 1]; w2 = W[k + 2]; w3 = W[k + 3]  # noqa: E702
        w4 = W[k + 4]; w5 = W[k + 5]; w6 = W[k + 6]; w7 = W[k + 7]  # noqa: E702
        for a in range(r):
            y[a] = ((((((((y[a] + g0 * w0[a]) + g1 * w1[a]) + g2 * w2[a]) + g3 * w3[a]) + g4 * w4[a])
                      + g5 * w5[a]) + g6 * w6[a]) + g7 * w7[a])
        k += 8
    while k < r:
        gk = g[k]
        for a in range(r):
            y[a] += gk * W[k, a]
        k += 1


@njit(cache=True, nogil=True, fastmath={"contract"})
def _dot4(x, y):  # pragma: no cover
    """x . y with four interleaved partial sums (a fixed order: four dependency chains, not one)."""
    n = x.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += x[a] * y[a]
        s1 += x[a + 1] * y[a + 1]
        s2 += x[a + 2] * y[a + 2]
        s3 += x[a + 3] * y[a + 3]
        a += 4
    while a < n:
        s0 += x[a] * y[a]
        a += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _update_matvec(W, beta, y, g, yn):  # pragma: no cover
    """W += beta y y^T and yn = W_new g in one pass over W, eight rows per pass over yn."""
    r = W.shape[0]
    for a in range(r):
        yn[a] = 0.0
    k = 0
    while k + 8 <= r:
        b0 = beta * y[k]; b1 = beta * y[k + 1]; b2 = beta * y[k + 2]; b3 = beta * y[k + 3]  # noqa: E702
        b4 = beta * y[k + 4]; b5 = beta * y[k + 5]; b6 = beta * y[k + 6]; b7 = beta * y[k + 7]  # noqa: E702
        g0 = g[k]; g1 = g[k + 1]; g2 = g[k + 2]; g3 = g[k + 3]  # noqa: E702
        g4 = g[k + 4]; g5 = g[k + 5]; g6 = g[k + 6]; g7 = g[k + 7]  # noqa: E702
        w0 = W[k]; w1 = W[k + 1]; w2 = W[k + 2]; w3 = W[k + 3]  # noqa: E702
        w4 = W[k + 4]; w5 = W[k + 5]; w6 = W[k + 6]; w7 = W[k + 7]  # noqa: E702
        for a in range(r):
            ya = y[a]
            v0 = w0[a] + b0 * ya
            v1 = w1[a] + b1 * ya
            v2 = w2[a] + b2 * ya
            v3 = w3[a] + b3 * ya
            v4 = w4[a] + b4 * ya
            v5 = w5[a] + b5 * ya
            v6 = w6[a] + b6 * ya
            v7 = w7[a] + b7 * ya
            w0[a] = v0
            w1[a] = v1
            w2[a] = v2
            w3[a] = v3
            w4[a] = v4
            w5[a] = v5
            w6[a] = v6
            w7[a] = v7
            yn[a] = (((((((yn[a] + g0 * v0) + g1 * v1) + g2 * v2) + g3 * v3) + g4 * v4) + g5 * v5)
                     + g6 * v6) + g7 * v7
        k += 8
    while k < r:
        bk = beta * y[k]
        gk = g[k]
        for a in range(r):
            v = W[k, a] + bk * y[a]
            W[k, a] = v
            yn[a] += gk * v
        k += 1


@njit(cache=True, nogil=True, fastmath={"contract"})
def _lowrank_kernel(G, W, ci, cj, delta, xi, lam, gamma, gamma_proj, g, y, yn):  # pragma: no cover
    """One sweep of low-rank ITML over all constraints, in place on W (r x r, symmetric, full).

    The rank-1 update W += beta y y^T is fused with the mat-vec W g' of the *next* constraint, so
    an active projection streams W once (2 r^2 multiply-adds) and an inactive one (alpha == 0) costs
    one mat-vec.  All inner loops are unit-stride AXPYs over rows of W, which vectorise without
    reassociating sums (``contract`` only lets LLVM fuse a*b+c into an FMA).
    Returns the number of projections with alpha != 0.
    """
    m = ci.shape[0]
    r = W.shape[0]
    for a in range(r):
        g[a] = G[ci[0], a] - G[cj[0], a]
    _matvec(W, g, y)
    n_upd = 0
    for t in range(m):
        p = _dot4(g, y)
        dl = delta[t]
        alpha = _alpha(p, xi[t], lam[t], dl, gamma_proj)
        nxt = t + 1 < m
        if nxt:
            i2 = ci[t + 1]
            j2 = cj[t + 1]
            for a in range(r):
                g[a] = G[i2, a] - G[j2, a]
        if alpha == 0.0:
            if nxt:
                _matvec(W, g, y)
            continue
        n_upd += 1
        lam[t] -= alpha
        beta = dl * alpha / (1.0 - dl * alpha * p)
        xi[t] = 1.0 / (1.0 / xi[t] + dl * alpha / gamma)
        # W += beta y y^T, and yn = W_new g_next in the same pass over W
        _update_matvec(W, beta, y, g, yn)
        for a in range(r):
            y[a] = yn[a]
    return n_upd


@njit(cache=True, nogil=True)
def _sym_row_diff(K, i, j, out):  # pragma: no cover
    """out = K[i, :] - K[j, :] for a symmetric K of which only the upper triangle (a <= c) is valid."""
    n = K.shape[0]
    for a in range(i):
        out[a] = K[a, i]
    for a in range(i, n):
        out[a] = K[i, a]
    for a in range(j):
        out[a] -= K[a, j]
    for a in range(j, n):
        out[a] -= K[j, a]


@njit(cache=True, nogil=True)
def _exact_block_kernel(K, MT, ci, cj, delta, xi, lam, gamma, gamma_proj, start, Z, Y, track):  # pragma: no cover
    """Process constraints from ``start`` until the block buffers are full or the list ends.

    K : base kernel, upper triangle valid.  MT : base K0 S (full), read only if ``track``.
    Z, Y : (b, n) buffers; active projection k stores z = sqrt|beta| u (u = K (e_i - e_j)) and
    y = sqrt|beta| w, positive-beta rows from the top (0, 1, ...) and negative-beta rows from the
    bottom (b-1, b-2, ...), so that K_t = K + Z_+^T Z_+ - Z_-^T Z_- exactly.
    Returns (next constraint index, rows with beta > 0, rows with beta < 0).
    """
    m = ci.shape[0]
    b = Z.shape[0]
    kp = 0
    kn = 0
    t = start
    while t < m and kp + kn < b:
        i = ci[t]
        j = cj[t]
        lo = min(i, j)
        hi = max(i, j)
        p = K[i, i] + K[j, j] - 2.0 * K[lo, hi]
        for q in range(kp):
            dq = Z[q, i] - Z[q, j]
            p += dq * dq
        for q in range(b - kn, b):
            dq = Z[q, i] - Z[q, j]
            p -= dq * dq
        dl = delta[t]
        alpha = _alpha(p, xi[t], lam[t], dl, gamma_proj)
        if alpha == 0.0:
            t += 1
            continue
        lam[t] -= alpha
        beta = dl * alpha / (1.0 - dl * alpha * p)
        xi[t] = 1.0 / (1.0 / xi[t] + dl * alpha / gamma)
        if beta > 0.0:
            row = kp
        else:
            row = b - 1 - kn
        z = Z[row]
        _sym_row_diff(K, i, j, z)
        if track:
            yv = Y[row]
            for a in range(K.shape[0]):
                yv[a] = MT[i, a] - MT[j, a]
            yv[i] += 1.0
            yv[j] -= 1.0
        for q in range(kp):
            c = Z[q, i] - Z[q, j]
            zq = Z[q]
            for a in range(z.shape[0]):
                z[a] += c * zq[a]
            if track:
                yq = Y[q]
                for a in range(z.shape[0]):
                    yv[a] += c * yq[a]
        for q in range(b - kn, b):
            c = Z[q, j] - Z[q, i]
            zq = Z[q]
            for a in range(z.shape[0]):
                z[a] += c * zq[a]
            if track:
                yq = Y[q]
                for a in range(z.shape[0]):
                    yv[a] += c * yq[a]
        s = np.sqrt(abs(beta))
        for a in range(z.shape[0]):
            z[a] *= s
        if track:
            for a in range(z.shape[0]):
                yv[a] *= s
        if beta > 0.0:
            kp += 1
        else:
            kn += 1
        t += 1
    return t, kp, kn


def _flush(K, MT, S, Z, Y, kp, kn, track):
    """Fold the block into the base matrices with BLAS (in place on Fortran views)."""
    b = Z.shape[0]
    Kf = K.T  # Fortran view: its lower triangle is K's upper triangle
    for rows, sign in ((slice(0, kp), 1.0), (slice(b - kn, b), -1.0)):
        if rows.stop - rows.start == 0:
            continue
        Zf = Z[rows].T
        out = blas.dsyrk(sign, Zf, beta=1.0, c=Kf, lower=1, overwrite_c=1)
        if not np.shares_memory(out, K):  # pragma: no cover - scipy always works in place here
            Kf[...] = out
        if track:
            Yf = Y[rows].T
            # M^T = K0 S:  M^T += sign z y^T   ->   (M^T)^T += sign y z^T   (Fortran view of MT)
            out = blas.dgemm(sign, Yf, Zf, beta=1.0, c=MT.T, trans_b=1, overwrite_c=1)
            if not np.shares_memory(out, MT):  # pragma: no cover
                MT.T[...] = out
            out = blas.dsyrk(sign, Yf, beta=1.0, c=S.T, lower=1, overwrite_c=1)
            if not np.shares_memory(out, S):  # pragma: no cover
                S.T[...] = out


def _one_blas_thread():
    """Limit BLAS to one thread while folding blocks: the SYRKs are small (n x n x 64), and a
    multi-threaded BLAS on a busy machine was measured 70x slower here.  Needs threadpoolctl; without
    it BLAS runs as configured (set OPENBLAS_NUM_THREADS=1)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _symmetrize_upper(A: np.ndarray) -> np.ndarray:
    U = np.triu(A)
    return U + np.triu(U, 1).T


# ----------------------------------------------------------------------------------------------
# plain NumPy twins of the kernels (used by the tests)
# ----------------------------------------------------------------------------------------------

def _lowrank_sweep_numpy(G, W, ci, cj, delta, xi, lam, gamma, gamma_proj):
    n_upd = 0
    for t in range(len(ci)):
        g = G[ci[t]] - G[cj[t]]
        y = W @ g
        p = g @ y
        alpha = min(lam[t], delta[t] * gamma_proj * (1.0 / p - 1.0 / xi[t]))
        if alpha == 0.0:
            continue
        n_upd += 1
        lam[t] -= alpha
        beta = delta[t] * alpha / (1.0 - delta[t] * alpha * p)
        xi[t] = 1.0 / (1.0 / xi[t] + delta[t] * alpha / gamma)
        W += beta * np.outer(y, y)
    return n_upd


def _exact_sweep_numpy(K, S, K0, ci, cj, delta, xi, lam, gamma, gamma_proj):
    n_upd = 0
    for t in range(len(ci)):
        i, j = ci[t], cj[t]
        u = K[:, i] - K[:, j]
        p = u[i] - u[j]
        alpha = min(lam[t], delta[t] * gamma_proj * (1.0 / p - 1.0 / xi[t]))
        if alpha == 0.0:
            continue
        n_upd += 1
        lam[t] -= alpha
        beta = delta[t] * alpha / (1.0 - delta[t] * alpha * p)
        xi[t] = 1.0 / (1.0 / xi[t] + delta[t] * alpha / gamma)
        if S is not None:
            w = S @ (K0[:, i] - K0[:, j])
            w[i] += 1.0
            w[j] -= 1.0
            S += beta * np.outer(w, w)
        K += beta * np.outer(u, u)
    return n_upd


# ----------------------------------------------------------------------------------------------
# public entry point
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
    K0 = _check_K0(K0)
    n = K0.shape[0]
    i, j, similar = _check_constraints(constraints, n)
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
    scale = float(np.max(np.diagonal(K0)))
    d0 = _pair_dists(K0, i, j)
    bad = np.flatnonzero(d0 <= 1e-12 * max(scale, 1e-300))
    if len(bad):
        raise InputError(f"{len(bad)} constrained pair(s) have zero kernel distance (duplicate points), "
                         f"e.g. points {i[bad[0]]} and {j[bad[0]]}; remove duplicates")

    G = P = None
    trunc = None
    if mode == "lowrank" and factor is not None:
        G = np.ascontiguousarray(factor, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != n or not np.all(np.isfinite(G)):
            raise InputError(f"factor must be a finite ({n}, r) array, got shape {G.shape}")
        rank = G.shape[1]
        trunc = float(np.linalg.norm(K0 - G @ G.T) / np.linalg.norm(K0))
    else:
        evals, evecs = np.linalg.eigh(K0) if mode == "lowrank" else (np.linalg.eigvalsh(K0), None)
        if evals[0] < -1e-8 * evals[-1]:
            raise InputError(f"K0 is not positive semidefinite (eigenvalue {evals[0]:.3g} vs largest "
                             f"{evals[-1]:.3g})")
        if mode == "lowrank":
            G, P, rank, trunc = _lowrank_factor(K0, evals, evecs, rank, rank_tol)

    if order is None:
        order = "similar_first" if similar_first else "given"
    if order == "given":
        order = np.arange(len(i))
    elif order == "similar_first":
        order = np.argsort(~similar, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(i))
    ci = np.ascontiguousarray(i[order])
    cj = np.ascontiguousarray(j[order])
    delta = np.where(similar[order], 1.0, -1.0)
    xi = np.where(similar[order], u, l).astype(np.float64)
    lam = np.zeros(len(ci))
    lam_old = np.zeros(len(ci))
    gamma_proj = 1.0 if np.isinf(gamma) else gamma / (gamma + 1.0)

    if mode == "lowrank":
        gd = np.einsum("ij,ij->i", G[ci] - G[cj], G[ci] - G[cj])
        bad = np.flatnonzero(gd <= 1e-12 * max(scale, 1e-300))
        if len(bad):
            raise InputError(f"points {ci[bad[0]]} and {cj[bad[0]]} coincide in the rank-{rank} factor "
                             "(zero distance); increase rank")
        W = np.eye(rank)
        bufs = (np.empty(rank), np.empty(rank), np.empty(rank))

        def sweep():
            return _lowrank_kernel(G, W, ci, cj, delta, xi, lam, gamma, gamma_proj, *bufs)
    else:
        K = K0.copy()
        MT = np.zeros((n, n)) if track_S else np.zeros((1, 1))
        S = np.zeros((n, n)) if track_S else None
        b = max(int(block), 1)
        Z = np.zeros((b, n))
        Y = np.zeros((b, n)) if track_S else np.zeros((1, 1))

        def sweep():
            t = 0
            n_upd = 0
            while t < len(ci):  # BLAS limited to one thread (see _one_blas_thread)
                t, kp, kn = _exact_block_kernel(K, MT, ci, cj, delta, xi, lam, gamma, gamma_proj, t, Z, Y,
                                                track_S)
                _flush(K, MT, S, Z, Y, kp, kn, track_S)
                n_upd += kp + kn
            return n_upd

    conv = np.inf
    converged = False
    n_updates = 0
    times = []
    sweep_updates = []
    it = 0
    limiter = _one_blas_thread() if mode == "exact" else contextlib.nullcontext()
    with limiter:
        for it in range(max_sweeps):
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

    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    common = dict(mode=mode, lambdas=lam[inv], slack=xi[inv], n_sweeps=it + 1, converged=converged,
                  conv=conv, n_updates=n_updates, sweep_times=times if time_sweeps else [],
                  sweep_updates=sweep_updates)
    if mode == "lowrank":
        W = 0.5 * (W + W.T)
        Kl = K0 + G @ (W - np.eye(rank)) @ G.T
        Kl = 0.5 * (Kl + Kl.T)
        return ITMLResult(K=Kl, G=G, W=W, projection=P, rank=rank, truncation_error=trunc, **common)
    K = _symmetrize_upper(K)
    S = _symmetrize_upper(S) if track_S else None
    return ITMLResult(K=K, S=S, **common)
