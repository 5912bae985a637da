"""Plain-NumPy reference of kernelized ITML (Davis et al. 2007, Alg. 1 with slack), written from
the formulas in REFERENCE.md section 6 independently of fastifkl.itml: full n x n matrices, one
projection at a time, S carried by its defining recursion.
"""
import numpy as np


def naive_kernel_itml(K0, i, j, similar, u, l, gamma, tol=1e-3, max_sweeps=100):
    """Returns (K, S, lambdas, n_sweeps) for constraints processed in the given order."""
    K = np.array(K0, dtype=float)
    K0 = np.array(K0, dtype=float)
    n = K.shape[0]
    S = np.zeros((n, n))
    m = len(i)
    lam = np.zeros(m)
    lam_prev = np.zeros(m)
    xi = np.array([u if s else l for s in similar], dtype=float)
    gp = 1.0 if np.isinf(gamma) else gamma / (gamma + 1.0)
    sweeps = 0
    for sweep in range(max_sweeps):
        sweeps += 1
        for t in range(m):
            e = np.zeros(n)
            e[i[t]] = 1.0
            e[j[t]] = -1.0
            delta = 1.0 if similar[t] else -1.0
            Ke = K @ e
            p = e @ Ke
            alpha = min(lam[t], delta * gp * (1.0 / p - 1.0 / xi[t]))
            beta = delta * alpha / (1.0 - delta * alpha * p)
            xi[t] = 1.0 / (1.0 / xi[t] + delta * alpha / gamma)
            lam[t] -= alpha
            w = e + S @ (K0 @ e)  # K e = K0 w with K = K0 + K0 S K0
            S = S + beta * np.outer(w, w)
            K = K + beta * np.outer(Ke, Ke)
        ns = np.linalg.norm(lam) + np.linalg.norm(lam_prev)
        if ns == 0:
            break
        if np.abs(lam - lam_prev).sum() / ns < tol:
            break
        lam_prev = lam.copy()
    return K, S, lam, sweeps
