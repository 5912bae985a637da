"""Gaussian kernel (BLAS) and the learned kernel with its out-of-sample extension (paper Eq. 9).

``gaussian`` builds kappa0(x, y) = exp(-||x - y||^2 / (2 sigma^2)) from squared norms and one
GEMM.  ``LearnedKernel`` evaluates the kernel learned by :func:`fastifkl.itml.learn_kernel` on
arbitrary points,

    kappa(z1, z2) = kappa0(z1, z2) + k1^T P C P^T k2,      k = [kappa0(z, x_1), ..., kappa0(z, x_n)],

where the correction ``C`` is held in a numerically stable form and never requires K0^-1:

* exact mode: P = I and C = S = K0^-1 (K - K0) K0^-1, carried along the Bregman projections
  (S <- S + beta w w^T);
* low-rank mode: P = Q_r Lambda_r^-1/2 (the Nystroem map, phi(z) = P^T k) and C = W - I.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["gaussian", "gaussian_decision", "median_sigma", "LearnedKernel"]


def _as_points(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (points x features), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise InputError(f"{name} contains NaN or infinite values")
    return X


def _sq_dists(X: np.ndarray, Y: np.ndarray, same: bool) -> np.ndarray:
    """Squared Euclidean distances ||x||^2 + ||y||^2 - 2 x.y (one GEMM), clipped at 0."""
    nx = np.einsum("ij,ij->i", X, X)
    ny = nx if same else np.einsum("ij,ij->i", Y, Y)
    D = X @ Y.T  # the GEMM
    D *= -2.0
    D += nx[:, None]
    D += ny[None, :]
    np.maximum(D, 0.0, out=D)
    if same:
        np.fill_diagonal(D, 0.0)
        D += D.T
        D *= 0.5  # exact symmetry
    return D


def gaussian(X: Any, Y: Any = None, sigma: float = 1.0) -> np.ndarray:
    """Gaussian kernel matrix exp(-||x_a - y_b||^2 / (2 sigma^2)).

    Parameters
    ----------
    X : array, shape (na, d)
    Y : array, shape (nb, d), optional
        Defaults to ``X`` (then the result is exactly symmetric with a unit diagonal).
    sigma : float
        Kernel width (> 0), in feature units.

    Returns
    -------
    K : ndarray, shape (na, nb), float64
    """
    X = _as_points(X, "X")
    same = Y is None or Y is X
    Y = X if same else _as_points(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise InputError(f"X and Y have different feature dimensions: {X.shape[1]} vs {Y.shape[1]}")
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise InputError(f"sigma must be a positive finite number, got {sigma}")
    D = _sq_dists(X, Y, same)
    D *= -0.5 / (sigma * sigma)
    np.exp(D, out=D)
    return D


def gaussian_decision(X: np.ndarray, Z: np.ndarray, coef: np.ndarray, bias: float, sigma: float) -> np.ndarray:
    """Decision values ``gaussian(X, Z, sigma) @ coef + bias`` of a kernel expansion on points ``Z``.

    In float64 when ``Z`` is float64 (a freshly fitted model), and in float32 when ``Z`` is
    float32 (a loaded model, whose points were stored as float16 and are exact in float32): one
    SGEMM instead of a DGEMM, half the time; the kernel values move by ~1e-7 relative, far below
    anything that flips a decision (the tests bound it).  No input checks (a hot path): the
    caller passes finite (n, d) ``X`` and (m, d) ``Z``.  For results that do not depend on the
    machine's BLAS thread count, call it under ``fastifkl._threads.blas_single_thread()`` (as
    :meth:`fastifkl.separator.Separator.decision_from_features` does).

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Normalised feature vectors.
    Z : ndarray, shape (m, d), float64 or float32
        Expansion points (support vectors and landmarks).
    coef : ndarray, shape (m,)
    bias : float
    sigma : float
        Gaussian width.

    Returns
    -------
    ndarray, shape (n,), float64
    """
    if Z.shape[0] == 0:
        return np.full(X.shape[0], bias)
    if Z.dtype == np.float32:
        return _gaussian_decision32(X, Z, coef, bias, sigma)
    return gaussian(X, Z.astype(np.float64, copy=False), sigma) @ coef.astype(np.float64, copy=False) + bias


_ROWS = 1024  # rows of X per GEMM in the float32 path (bounds the (rows, m) kernel block)


def _gaussian_decision32(X: np.ndarray, Z: np.ndarray, coef: np.ndarray, bias: float, sigma: float) -> np.ndarray:
    """The float32 path of :func:`gaussian_decision`: the exponent
    ``-||x - z||^2 / (2 sigma^2) = x.z / sigma^2 - ||x||^2 / (2 sigma^2) - ||z||^2 / (2 sigma^2)``
    comes out of one SGEMM of augmented matrices ``[x / sigma^2, -||x||^2 / (2 sigma^2), 1]`` and
    ``[z, 1, -||z||^2 / (2 sigma^2)]`` (no broadcast passes), then min(., 0) (the distance's
    clip at 0), exp and the GEMV with ``coef``, in blocks of :data:`_ROWS` rows."""
    s2 = 1.0 / (sigma * sigma)
    X32 = np.asarray(X, dtype=np.float32)
    n, d = X32.shape
    m = Z.shape[0]
    Xa = np.empty((n, d + 2), dtype=np.float32)
    np.multiply(X32, np.float32(s2), out=Xa[:, :d])
    Xa[:, d] = np.einsum("ij,ij->i", X32, X32) * np.float32(-0.5 * s2)
    Xa[:, d + 1] = 1.0
    Za = np.empty((m, d + 2), dtype=np.float32)
    Za[:, :d] = Z
    Za[:, d] = 1.0
    Za[:, d + 1] = np.einsum("ij,ij->i", Z, Z) * np.float32(-0.5 * s2)
    c32 = np.asarray(coef, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    t = np.empty((min(_ROWS, n), m), dtype=np.float32)
    for i0 in range(0, n, _ROWS):
        i1 = min(n, i0 + _ROWS)
        tt = t[: i1 - i0]
        np.matmul(Xa[i0:i1], Za.T, out=tt)
        np.minimum(tt, 0.0, out=tt)
        np.exp(tt, out=tt)
        np.matmul(tt, c32, out=out[i0:i1])
    return out.astype(np.float64) + bias


def median_sigma(X: Any, rng: np.random.Generator | int | None = None, max_points: int = 1000) -> float:
    """Median heuristic for the Gaussian width: the median pairwise Euclidean distance.

    Parameters
    ----------
    X : array, shape (n, d)
    rng : Generator or seed, optional
        Used only to subsample ``max_points`` points when ``n > max_points``.
    max_points : int
        Cap on the number of points used (the cost is O(max_points^2 d)).

    Returns
    -------
    sigma : float (> 0)
    """
    X = _as_points(X, "X")
    n = X.shape[0]
    if n < 2:
        raise InputError("median_sigma needs at least 2 points")
    if n > max_points:
        gen = np.random.default_rng(rng)
        X = X[np.sort(gen.choice(n, size=max_points, replace=False))]
        n = max_points
    D = _sq_dists(X, X, True)
    iu = np.triu_indices(n, 1)
    med = float(np.median(np.sqrt(D[iu])))
    if not med > 0:
        raise InputError("median_sigma: the median pairwise distance is 0 (more than half the points coincide)")
    return med


class LearnedKernel:
    """Out-of-sample evaluation of a learned kernel (paper Eq. 9).

    ``kappa(A, B) = gaussian(A, B) + (gaussian(A, X) P) C (gaussian(B, X) P)^T``
    with ``P`` the identity (exact mode) or the Nystroem map (low-rank mode).

    Parameters
    ----------
    landmarks : array, shape (n, d)
        The training points x_1..x_n the kernel was learned on.
    sigma : float
        Width of the base Gaussian kernel kappa0.
    correction : array, shape (m, m), symmetric
        ``S`` (exact mode, m = n) or ``W - I`` (low-rank mode, m = r).
    projection : array, shape (n, m), optional
        ``Q_r Lambda_r^-1/2`` in low-rank mode; ``None`` in exact mode.

    Attributes
    ----------
    landmarks, sigma, correction, projection : as above (plain arrays / float).
    """

    def __init__(self, landmarks: Any, sigma: float, correction: Any, projection: Any = None):
        X = _as_points(landmarks, "landmarks")
        C = np.asarray(correction, dtype=np.float64)
        n = X.shape[0]
        P = None
        if projection is not None:
            P = np.asarray(projection, dtype=np.float64)
            if P.ndim != 2 or P.shape[0] != n:
                raise InputError(f"projection must have shape ({n}, r), got {P.shape}")
            m = P.shape[1]
        else:
            m = n
        if C.shape != (m, m):
            raise InputError(f"correction must have shape ({m}, {m}), got {C.shape}")
        if not (np.all(np.isfinite(C)) and (P is None or np.all(np.isfinite(P)))):
            raise InputError("correction/projection contain NaN or infinite values")
        sigma = float(sigma)
        if not np.isfinite(sigma) or sigma <= 0:
            raise InputError(f"sigma must be a positive finite number, got {sigma}")
        self.landmarks = X
        self.sigma = sigma
        self.correction = C
        self.projection = P

    @property
    def mode(self) -> str:
        return "exact" if self.projection is None else "lowrank"

    @classmethod
    def from_result(cls, landmarks: Any, sigma: float, result: Any) -> LearnedKernel:
        """Build from a :class:`fastifkl.itml.ITMLResult` learned on ``gaussian(landmarks, sigma=sigma)``."""
        if result.mode == "exact":
            if result.S is None:
                raise InputError("this exact-mode result was learned with track_S=False; no out-of-sample kernel")
            return cls(landmarks, sigma, result.S)
        if result.projection is None:
            raise InputError("this low-rank result was learned on an explicit factor; it has no Nystroem map")
        r = result.W.shape[0]
        return cls(landmarks, sigma, result.W - np.eye(r), result.projection)

    def features(self, A: Any) -> np.ndarray:
        """``k(A) P``: shape (na, m), the map the correction acts on."""
        KA = gaussian(A, self.landmarks, self.sigma)
        return KA if self.projection is None else KA @ self.projection

    def __call__(self, A: Any, B: Any = None) -> np.ndarray:
        """Kernel matrix between the rows of ``A`` (na, d) and ``B`` (nb, d); ``B`` defaults to ``A``.

        Returns
        -------
        ndarray, shape (na, nb)
        """
        A = _as_points(A, "A")
        same = B is None or B is A
        B = A if same else _as_points(B, "B")
        d = self.landmarks.shape[1]
        if A.shape[1] != d or B.shape[1] != d:
            raise InputError(f"points must have {d} features, got {A.shape[1]} and {B.shape[1]}")
        FA = self.features(A)
        FB = FA if same else self.features(B)
        out = gaussian(A, None if same else B, self.sigma)
        out += (FA @ self.correction) @ FB.T
        if same:
            out += out.T
            out *= 0.5
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a model file (``from_arrays`` restores the kernel bit-for-bit)."""
        return {
            "landmarks": self.landmarks,
            "sigma": np.array(self.sigma, dtype=np.float64),
            "correction": self.correction,
            "projection": (np.zeros((0, 0)) if self.projection is None else self.projection),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> LearnedKernel:
        """Inverse of :meth:`to_arrays`; raises ``InputError`` on missing keys or bad shapes."""
        try:
            X = arrays["landmarks"]
            sigma = float(np.asarray(arrays["sigma"]).reshape(()))
            C = arrays["correction"]
            P = arrays.get("projection", None)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"learned-kernel arrays are incomplete or malformed: {exc}") from None
        if P is not None and np.asarray(P).size == 0:
            P = None
        return cls(X, sigma, C, P)
