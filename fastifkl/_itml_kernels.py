"""Numba kernels of kernel ITML (private to :mod:`fastifkl.itml`): one sweep of low-rank ITML
over all constraints (:func:`lowrank_sweep`), and exact mode's blocks of delayed rank-1 updates
(:func:`exact_block`) folded into the base matrices with BLAS (:func:`flush`).  The update rules
are in :mod:`fastifkl.itml`; plain NumPy twins of the sweeps are in ``tests/naive.py``.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from scipy.linalg import blas


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
def lowrank_sweep(G, W, ci, cj, delta, xi, lam, gamma, gamma_proj, g, y, yn):  # pragma: no cover
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
def _add_rows(Z, Y, q0, q1, i, j, z, yv, track):  # pragma: no cover
    """``z += (Z[q, i] - Z[q, j]) Z[q]`` (and ``yv +=`` the same multiple of ``Y[q]`` when
    ``track``) for q = q0 .. q1-1."""
    for q in range(q0, q1):
        c = Z[q, i] - Z[q, j]
        zq = Z[q]
        for a in range(z.shape[0]):
            z[a] += c * zq[a]
        if track:
            yq = Y[q]
            for a in range(z.shape[0]):
                yv[a] += c * yq[a]


@njit(cache=True, nogil=True)
def exact_block(K, MT, ci, cj, delta, xi, lam, gamma, gamma_proj, start, Z, Y, track):  # pragma: no cover
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
        yv = Y[row] if track else z  # yv is only written when track
        if track:
            for a in range(K.shape[0]):
                yv[a] = MT[i, a] - MT[j, a]
            yv[i] += 1.0
            yv[j] -= 1.0
        # the block's earlier rank-1 terms: + rows with beta > 0, - rows with beta < 0
        _add_rows(Z, Y, 0, kp, i, j, z, yv, track)
        _add_rows(Z, Y, b - kn, b, j, i, z, yv, track)
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


def flush(K, MT, S, Z, Y, kp, kn, track):
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


def symmetrize_upper(A: np.ndarray) -> np.ndarray:
    U = np.triu(A)
    return U + np.triu(U, 1).T
