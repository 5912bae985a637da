"""Explicit kernel maps: Nystroem features of the Gaussian and of the learned kernel (REFERENCE 15).

A map here is ``phi(x) = A k(Z, x)``: one Gaussian kernel block against ``m`` landmarks ``Z``
(rows, shape (m, d)) followed by a fixed (r, m) matrix ``A``.  A linear model on the map is then a
kernel expansion on the landmarks,

    w . phi(x) + b = (A^T w) . k(Z, x) + b,

which :meth:`KernelMap.fold` returns as ``coef = A^T w``: a model trained on the map is stored and
evaluated exactly like a kernel SVM (points ``Z``, coefficients, bias, sigma;
:func:`fastifkl.kernels.gaussian_decision`).

* Gaussian kernel (Williams & Seeger 2001): ``W = k(Z, Z) = V diag(lam) V^T``; eigenvalues below
  ``floor * lam_max`` are dropped and ``A = diag(lam^-1/2) V^T``, so that
  ``phi(x) . phi(y) = k(x, Z) W^+ k(Z, y)`` approximates ``k(x, y)`` (exact for landmarks).
  Landmarks: a seeded uniform sample of the training units, or k-means centres (Zhang, Tsang &
  Kwok 2008): :func:`landmarks`.
* Learned kernel (paper Eq. 9): ``kappa(x, y) = k0(x, y) + k_l(x)^T S k_l(y)`` with ``k_l`` the
  kernel column against the kernel-learning points ``X_l`` and ``S = P (W_itml - I) P^T`` from
  low-rank ITML (``P S P^T`` with ``P = I`` in exact mode).  ``S`` is indefinite in general (the
  similar-pair projections shrink distances), so no real ``L`` with ``S = L L^T`` exists and a
  map ``[phi0; L^T k_l]`` cannot be formed.  With ``X_l`` among the landmarks (``Z = [X_l; ...]``,
  so ``k_l(x) = E^T k(Z, x)`` is part of the same kernel block) the kernel is one quadratic form
  in that block,

      kappa(x, y) ~= k(x, Z) H k(Z, y),     H = W^+ + E S E^T,

  with the Nystroem approximation of ``k0`` as its only approximation (the correction is exact).
  ``H`` is positive semidefinite (``W^+ >= E K_l^+ E^T >= E P P^T E^T`` and ``W_itml`` is positive
  definite), so ``A = diag(mu^1/2) U^T`` from ``H = U diag(mu) U^T`` (eigenvalues below the floor
  dropped; rounding negatives are clipped) is a real map of dimension <= m whose inner products
  are Eq. 9 on the Nystroem base kernel: one kernel block serves both parts, as for the Gaussian.

Everything is BLAS and LAPACK (``eigh``); call under ``fastifkl._threads.blas_single_thread()``
for results that do not depend on the thread count (the channel fit does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .kernels import gaussian

__all__ = ["KernelMap", "landmarks", "kmeans", "gaussian_map", "learned_map", "EIG_FLOOR", "LANDMARK_METHODS"]

EIG_FLOOR = 1e-6
"""Default relative eigenvalue floor: eigenvalues of ``W`` (or ``H``) below ``EIG_FLOOR`` times the
largest are dropped (their directions carry rounding, and ``lam^-1/2`` would amplify it)."""

LANDMARK_METHODS = ("uniform", "kmeans")

H_FLOOR = 1e-12
"""Relative floor of the learned map's ``H`` (rounding-level and negative eigenvalues only)."""


@dataclass
class KernelMap:
    """``phi(x) = A k(Z, x)`` with the Gaussian kernel of width ``sigma``.

    Attributes
    ----------
    Z : ndarray, shape (m, d)
        Landmarks (normalised feature vectors).
    A : ndarray, shape (r, m)
        Map matrix (r <= m: the eigen-directions kept above the floor).
    sigma : float
        Width of the Gaussian kernel block.
    kind : {"gaussian", "learned"}
    """

    Z: np.ndarray
    A: np.ndarray
    sigma: float
    kind: str = "gaussian"

    @property
    def n_landmarks(self) -> int:
        return int(self.Z.shape[0])

    @property
    def dim(self) -> int:
        """r, the map's dimension."""
        return int(self.A.shape[0])

    def kernel_block(self, X: np.ndarray) -> np.ndarray:
        """``k(X, Z)``: shape (n, m)."""
        return gaussian(X, self.Z, self.sigma)

    def transform(self, X: np.ndarray, block: int = 8192) -> np.ndarray:
        """``phi(X)``: shape (n, r), computed ``block`` rows at a time (bounded temporaries)."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((X.shape[0], self.dim))
        for s in range(0, X.shape[0], block):
            out[s:s + block] = self.kernel_block(X[s:s + block]) @ self.A.T
        return out

    def fold(self, w: np.ndarray) -> np.ndarray:
        """Kernel-expansion coefficients ``A^T w`` (m,) of the linear weights ``w`` (r,):
        ``w . phi(x) = fold(w) . k(Z, x)``."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.dim,):
            raise InputError(f"weights must have shape ({self.dim},), got {w.shape}")
        return self.A.T @ w


# ---------------------------------------------------------------------------------------------
# landmarks


def kmeans(X: np.ndarray, m: int, rng: np.random.Generator | int | None = None, n_iter: int = 10) -> np.ndarray:
    """Lloyd's k-means centres (m, d) of the rows of ``X``, from a seeded uniform start.

    Deterministic for a given ``rng`` (ties go to the lower centre index); an emptied cluster
    keeps its previous centre.  ``n_iter`` assignment/update rounds, one GEMM each.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if not 1 <= m <= n:
        raise InputError(f"k-means needs 1 <= m <= n points, got m={m}, n={n}")
    gen = np.random.default_rng(rng)
    C = X[np.sort(gen.choice(n, m, replace=False))].copy()
    xx = np.einsum("ij,ij->i", X, X)
    for _ in range(int(n_iter)):
        d2 = xx[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
        lab = np.argmin(d2, axis=1)
        cnt = np.bincount(lab, minlength=m)
        S = np.zeros_like(C)
        np.add.at(S, lab, X)
        ok = cnt > 0
        C[ok] = S[ok] / cnt[ok, None]
    return C


def landmarks(X: np.ndarray, m: int, method: str = "uniform",
              rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``m`` landmarks (m, d) for the Nystroem map of the rows of ``X`` (n, d).

    ``"uniform"``: a seeded sample without replacement (rows of ``X``, in index order);
    ``"kmeans"``: :func:`kmeans` centres.  ``m >= n`` returns all rows.
    """
    X = np.asarray(X, dtype=np.float64)
    if method not in LANDMARK_METHODS:
        raise InputError(f"landmark method must be one of {', '.join(LANDMARK_METHODS)}, got {method!r}")
    m = int(m)
    if m < 1:
        raise InputError(f"the number of landmarks must be >= 1, got {m}")
    if m >= X.shape[0]:
        return X.copy()
    gen = np.random.default_rng(rng)
    if method == "uniform":
        return X[np.sort(gen.choice(X.shape[0], m, replace=False))].copy()
    return kmeans(X, m, gen)


# ---------------------------------------------------------------------------------------------
# maps


def _eig_rows(H: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs ``(lam, V)`` of symmetric ``H`` with ``lam > floor * lam_max``, largest first."""
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    lam, V = lam[::-1], V[:, ::-1]
    if not lam[0] > 0:
        raise InputError("the kernel matrix of the landmarks has no positive eigenvalue")
    keep = lam > floor * lam[0]
    return lam[keep], np.ascontiguousarray(V[:, keep])


def gaussian_map(Z: np.ndarray, sigma: float, floor: float = EIG_FLOOR) -> KernelMap:
    """Nystroem map of the Gaussian kernel on landmarks ``Z`` (m, d): ``A = diag(lam^-1/2) V^T``.

    Parameters
    ----------
    Z : ndarray, shape (m, d)
    sigma : float
        Gaussian width.
    floor : float
        Relative eigenvalue floor of ``W = k(Z, Z)`` (see :data:`EIG_FLOOR`).
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    _check_floor(floor)
    lam, V = _eig_rows(gaussian(Z, sigma=sigma), floor)
    return KernelMap(Z, np.ascontiguousarray(V.T / np.sqrt(lam)[:, None]), float(sigma), "gaussian")


def learned_map(lk: Any, extra: np.ndarray | None = None, floor: float = EIG_FLOOR) -> KernelMap:
    """Map of a learned kernel (Eq. 9; :class:`fastifkl.kernels.LearnedKernel`), see the module doc.

    Parameters
    ----------
    lk : LearnedKernel
        Learned on points ``X_l = lk.landmarks`` (n_l, d) with base width ``lk.sigma``.
    extra : ndarray, shape (k, d), optional
        More landmarks for the Nystroem part (``Z = [X_l; extra]``, m = n_l + k).
    floor : float
        Relative eigenvalue floor of ``W = k(Z, Z)`` (``H`` drops only eigenvalues below
        :data:`H_FLOOR` times its largest: rounding and negative ones).
    """
    _check_floor(floor)
    Xl = np.asarray(lk.landmarks, dtype=np.float64)
    Z = Xl if extra is None or len(extra) == 0 else np.vstack([Xl, np.asarray(extra, dtype=np.float64)])
    Z = np.ascontiguousarray(Z)
    n_l = Xl.shape[0]
    lam, V = _eig_rows(gaussian(Z, sigma=lk.sigma), floor)
    H = (V / lam) @ V.T  # W^+ (floored)
    # E S E^T: S = P C P^T acts on the first n_l entries of k(Z, x); restricted to the range of
    # W^+ (Pi = V V^T), so that directions the Nystroem part drops (duplicate landmarks, floored
    # eigenvalues) get no correction either and H stays positive semidefinite
    PC = lk.correction if lk.projection is None else lk.projection @ lk.correction @ lk.projection.T
    Vl = V[:n_l]
    H += V @ (Vl.T @ PC @ Vl) @ V.T
    mu, U = _eig_rows(H, H_FLOOR)
    return KernelMap(Z, np.ascontiguousarray(U.T * np.sqrt(mu)[:, None]), float(lk.sigma), "learned")


def _check_floor(floor: float) -> None:
    if not (np.isfinite(floor) and 0 <= floor < 1):
        raise InputError(f"the relative eigenvalue floor must lie in [0, 1), got {floor!r}")
