"""Per-channel feature normalisation: running moments (Chan et al. pairwise merge) and :class:`Normalizer`."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(n, mean, M2)`` of ``x`` along its first axis (frames): n rows, their mean and the sum of
    squared deviations from it (shape ``x.shape[1:]`` each)."""
    mean = x.mean(axis=0)
    return x.shape[0], mean, ((x - mean) ** 2).sum(axis=0)


def merge_moments(a: tuple | None, b: tuple) -> tuple:
    """Moments of the union of two samples from the moments of each (Chan, Golub & LeVeque
    pairwise update); ``a`` may be None (nothing seen yet)."""
    if a is None:
        return b
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), sa + sb + d * d * (na * nb / n)


class Normalizer:
    """Per-channel zero-mean / unit-variance scaling of feature arrays (M, C, D).

    Attributes
    ----------
    mean_ : ndarray, shape (C, D)
    std_ : ndarray, shape (C, D); dimensions with (near-)zero spread get std 1.
    n_ : int, frames seen.

    ``fit`` may be called on one array or a list of arrays (e.g. one per utterance);
    ``partial_fit`` accumulates statistics (Chan et al. pairwise update) for streaming, and
    ``partial_fit_moments`` does the same from the :func:`moments` of a batch computed elsewhere
    (e.g. in a worker process).
    """

    def __init__(self, eps: float = 1e-10):
        self.eps = float(eps)
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.n_ = 0
        self._m2: np.ndarray | None = None

    def partial_fit(self, x: np.ndarray) -> Normalizer:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3:
            raise InputError(f"features must be (frames, channels, dims), got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InputError("features contain NaN or infinite values")
        if x.shape[0] == 0:
            return self
        return self.partial_fit_moments(*moments(x))

    def partial_fit_moments(self, n: int, mean: np.ndarray, m2: np.ndarray) -> Normalizer:
        """Add a batch of ``n`` frames given its :func:`moments` ``(n, mean, M2)``, each (C, D)."""
        if self.mean_ is None or self.n_ == 0:
            seen = None
        else:
            if self.mean_.shape != mean.shape:
                raise InputError(f"features have shape {mean.shape}, normaliser was fit on {self.mean_.shape}")
            seen = (self.n_, self.mean_, self._m2)
        self.n_, self.mean_, self._m2 = merge_moments(seen, (n, mean, m2))
        std = np.sqrt(self._m2 / self.n_)
        self.std_ = np.where(std > self.eps * np.maximum(1.0, np.abs(self.mean_)), std, 1.0)
        return self

    def fit(self, x) -> Normalizer:
        """Fit on an (M, C, D) array or a list of them."""
        self.mean_ = self.std_ = self._m2 = None
        self.n_ = 0
        for a in ([x] if isinstance(x, np.ndarray) else x):
            self.partial_fit(a)
        if self.mean_ is None:
            raise InputError("no frames to fit the normaliser on")
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise InputError("normaliser is not fitted")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != self.mean_.shape:
            raise InputError(f"features have shape {x.shape}, expected (frames, {self.mean_.shape[0]}, "
                             f"{self.mean_.shape[1]})")
        return (x - self.mean_) / self.std_

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"mean": (C, D), "std": (C, D)}`` for storing in a model file."""
        if self.mean_ is None:
            raise InputError("normaliser is not fitted")
        return {"mean": self.mean_.copy(), "std": self.std_.copy()}

    @classmethod
    def from_arrays(cls, mean: np.ndarray, std: np.ndarray) -> Normalizer:
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        if mean.ndim != 2 or mean.shape != std.shape:
            raise InputError(f"normaliser arrays must both be (C, D); got {mean.shape} and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise InputError("normaliser arrays must be finite with positive std")
        n = cls()
        n.mean_, n.std_ = mean, std
        return n
