"""One LIBSVM C-SVC per channel on a precomputed Gram matrix (REFERENCE.md section 7).

Training goes through libsvm-official in precomputed-kernel mode (``-t 4``); prediction does
not: we keep the support-vector indices, the dual coefficients and the bias, and compute the
decision values ourselves with one matrix-vector (or matrix-matrix) product,

    decision(z) = sum_i dual_coef_[i] * k(z, x_support_[i]) + intercept_,

so that a whole channel is scored by BLAS instead of LIBSVM's row-by-row loop. The sign
convention is ours and fixed: ``decision > 0`` means label 1 (target-dominated unit), whatever
order LIBSVM assigned to the labels internally.

Training sets are capped per channel by :func:`balanced_subsample` (class-balanced, seeded).

:class:`LinearSVM` is the paper-scale solver (REFERENCE 15): LIBLINEAR (liblinear-official,
Fan et al. 2008) on an explicit kernel map (:mod:`fastifkl.kernel_map`) of every training unit,
L2-regularised L2-loss primal (``-s 2``, a trust-region Newton method: deterministic), bias
``-B 1``, and per-class weights ``-w1``/``-w-1`` for unbalanced classes.  Its weights fold into the
same kernel-expansion form as the LIBSVM model (:meth:`fastifkl.kernel_map.KernelMap.fold`).

Posteriors: :func:`platt_fit` calibrates decision values into P(label 1 | decision) =
1 / (1 + exp(A f + B)) (Platt 1999, with the numerically safe Newton method of Lin, Lin & Weng
2007; REFERENCE section 11) on units the SVM did not train on; :func:`platt_posterior` applies it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, ModelError

__all__ = ["ChannelSVM", "LinearSVM", "SOLVERS", "balanced_subsample", "prior_subsample", "platt_fit",
           "platt_objective", "platt_posterior"]


# --------------------------------------------------------------------------------------------
# class-balanced subsampling
# --------------------------------------------------------------------------------------------
def balanced_subsample(labels: np.ndarray, cap: int | None, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Indices of a class-balanced subsample of at most ``cap`` training points.

    Each class gets ``cap // n_classes`` points (the remainder going to the smaller class
    first is not needed: if one class has fewer points than its share, all of them are taken and
    the other classes fill the free slots). Sampling within a class is without replacement.

    Parameters
    ----------
    labels : ndarray, shape (n,)
        Class labels (any integer or boolean values; for the SVMs, the IBM values 0/1).
    cap : int or None
        Maximum number of indices returned. ``None`` or ``cap >= n`` returns ``arange(n)``.
    rng : numpy Generator, int seed or None
        Source of randomness; the same seed gives the same indices.

    Returns
    -------
    ndarray of int64, shape (min(n, cap),)
        Sorted indices into ``labels``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels must be one-dimensional, got shape {labels.shape}")
    n = labels.shape[0]
    if cap is None or cap >= n:
        return np.arange(n, dtype=np.int64)
    cap = int(cap)
    if cap < 1:
        raise InputError(f"the training-point cap must be >= 1, got {cap}")
    rng = np.random.default_rng(rng)
    classes, inverse = np.unique(labels, return_inverse=True)
    groups = [np.flatnonzero(inverse == k) for k in range(classes.size)]
    # water-filling: classes smaller than their share give their free slots to the others
    sizes = np.array([g.size for g in groups])
    take = np.zeros_like(sizes)
    remaining = cap
    open_ = list(np.argsort(sizes, kind="stable"))  # smallest class first
    while open_:
        share = remaining // len(open_)
        k = open_[0]
        if sizes[k] <= share:
            take[k] = sizes[k]
            remaining -= sizes[k]
            open_.pop(0)
            continue
        # every open class has more points than the share: split what is left evenly,
        # the remainder going to the larger classes (last in the ascending order)
        extra = remaining - share * len(open_)
        for pos, kk in enumerate(open_):
            take[kk] = share + (1 if pos >= len(open_) - extra else 0)
        break
    chosen = [rng.choice(g, size=int(t), replace=False) for g, t in zip(groups, take) if t > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def prior_subsample(labels: np.ndarray, cap: int | None, prior: float,
                    rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Indices of at most ``cap`` binary-labelled points whose share of label 1 is ``prior``.

    Used to give an SVM the class mix of the data it will label (the IBM prior of a channel)
    when the candidate pool was drawn class-balanced.  The largest sample with that mix is
    taken (capped by ``cap`` and by the size of each class); with a class too small for the
    wanted share, all of it is taken and the other class is cut to keep the ratio.

    Parameters
    ----------
    labels : ndarray, shape (n,) of 0/1
    cap : int or None
        Maximum number of indices (None: no cap).
    prior : float in [0, 1]
        Wanted share of label 1.
    rng : numpy Generator, int seed or None

    Returns
    -------
    ndarray of int64, sorted indices into ``labels``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels must be one-dimensional, got shape {labels.shape}")
    if not 0.0 <= prior <= 1.0:
        raise InputError(f"prior must lie in [0, 1], got {prior!r}")
    rng = np.random.default_rng(rng)
    pos = np.flatnonzero(labels > 0)
    neg = np.flatnonzero(labels <= 0)
    if pos.size == 0 or neg.size == 0 or prior in (0.0, 1.0):
        return balanced_subsample(labels, cap, rng)
    total = labels.size if cap is None else min(int(cap), labels.size)
    if total < 1:
        raise InputError(f"the training-point cap must be >= 1, got {cap}")
    total = min(total, int(pos.size / prior), int(neg.size / (1.0 - prior)))
    n_pos = min(pos.size, max(1, int(round(total * prior))))
    n_neg = min(neg.size, max(1, total - n_pos))
    chosen = [rng.choice(pos, size=n_pos, replace=False), rng.choice(neg, size=n_neg, replace=False)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# LIBSVM plumbing
# --------------------------------------------------------------------------------------------
def _precomputed_csr(kernel_rows: np.ndarray, first_column: np.ndarray):
    """LIBSVM's precomputed-kernel layout as a CSR matrix with explicit zeros.

    Row i is ``[first_column[i], kernel_rows[i, 0], ..., kernel_rows[i, n-1]]``; libsvm-official
    maps CSR column j to LIBSVM index j for ``isKernel=True``. Zeros are stored explicitly
    because LIBSVM looks kernel values up by position (a Gaussian kernel can underflow to 0).
    """
    from scipy import sparse

    m, n = kernel_rows.shape
    dense = np.empty((m, n + 1), dtype=np.float64)
    dense[:, 0] = first_column
    dense[:, 1:] = kernel_rows
    indices = np.tile(np.arange(n + 1, dtype=np.int32), m)
    indptr = np.arange(0, m * (n + 1) + 1, n + 1, dtype=np.int64)
    return sparse.csr_matrix((dense.ravel(), indices, indptr), shape=(m, n + 1))


def _train_libsvm(gram: np.ndarray, y01: np.ndarray, C: float, tol: float, cache_mb: float):
    """Train LIBSVM C-SVC on a precomputed Gram matrix; return ``(model, problem)``.

    The problem object must stay alive as long as the model is used with LIBSVM's own predict
    (LIBSVM's model points into the problem's storage).
    """
    from libsvm.svmutil import svm_parameter, svm_problem, svm_train

    n = gram.shape[0]
    x = _precomputed_csr(gram, np.arange(1, n + 1, dtype=np.float64))
    # labels as +1 (target) / -1 (masker) for LIBSVM; which one it lists first is handled later
    y = np.where(y01 > 0, 1.0, -1.0)
    prob = svm_problem(y, x, isKernel=True)
    param = svm_parameter(f"-s 0 -t 4 -c {C!r} -e {tol!r} -m {cache_mb!r} -q")
    model = svm_train(prob, param)
    return model, prob


def _libsvm_decision(model, k_test_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM's own predict on a precomputed test kernel (m x n_train, all training columns).

    Returns ``(labels in {0,1}, decision values with LIBSVM's sign convention)``. Used by tests
    and benchmarks as the reference.
    """
    from libsvm.svmutil import svm_predict

    m = k_test_train.shape[0]
    x = _precomputed_csr(k_test_train, np.zeros(m))
    labels, _, values = svm_predict([], x, model, "-q")
    return (np.asarray(labels) > 0).astype(np.int8), np.asarray(values, dtype=np.float64)[:, 0]


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------
class ChannelSVM:
    """C-SVC of one channel on a precomputed kernel; LIBSVM trains, BLAS predicts.

    Parameters
    ----------
    C : float
        Soft-margin penalty (LIBSVM ``-c``).
    tol : float
        Stopping tolerance of LIBSVM's SMO solver (``-e``).
    cache_mb : float
        LIBSVM kernel cache in MB (``-m``); with a precomputed kernel it only caches rows.

    Attributes (after ``fit`` or ``from_arrays``)
    ----------
    support_ : ndarray of int64, shape (n_sv,)
        Indices of the support vectors into the training set given to ``fit`` (ascending).
    dual_coef_ : ndarray of float64, shape (n_sv,)
        ``alpha_i * y_i`` with ``y_i = +1`` for label 1 and ``-1`` for label 0.
    intercept_ : float
        Bias ``b`` (LIBSVM's ``-rho`` with our sign convention).
    constant_ : int or None
        When the training labels hold one class only, that label; the model then predicts it
        everywhere (``decision`` returns ``+1`` or ``-1``) and has no support vectors.
    n_train_ : int
        Number of training points.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-3, cache_mb: float = 200.0) -> None:
        self.C = C
        self.tol = tol
        self.cache_mb = cache_mb

    # scikit-learn style parameter access ---------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"C": self.C, "tol": self.tol, "cache_mb": self.cache_mb}

    def set_params(self, **params: Any) -> ChannelSVM:
        for key, value in params.items():
            if key not in ("C", "tol", "cache_mb"):
                raise InputError(f"ChannelSVM has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"ChannelSVM(C={self.C!r}, tol={self.tol!r}, cache_mb={self.cache_mb!r})"

    # training --------------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("C", "tol", "cache_mb"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating, np.integer)) and np.isfinite(v) and v > 0):
                raise InputError(f"ChannelSVM {name} must be a positive number, got {v!r}")

    def fit(self, gram: np.ndarray, y: np.ndarray) -> ChannelSVM:
        """Train on a precomputed kernel.

        Parameters
        ----------
        gram : ndarray, shape (n, n)
            Kernel matrix of the training points (symmetric positive semi-definite).
        y : ndarray, shape (n,)
            Labels in {0, 1} (IBM values); booleans accepted.

        Returns
        -------
        self
        """
        self._check_params()
        gram = np.ascontiguousarray(gram, dtype=np.float64)
        y = np.asarray(y)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise InputError(f"the Gram matrix must be square, got shape {gram.shape}")
        n = gram.shape[0]
        if y.shape != (n,):
            raise InputError(f"labels must have shape ({n},) to match the Gram matrix, got {y.shape}")
        if n == 0:
            raise InputError("cannot train an SVM on zero training points")
        if not np.all(np.isfinite(gram)):
            raise InputError("the Gram matrix holds NaN or infinite values")
        if not np.all((y == 0) | (y == 1)):
            raise InputError("SVM labels must be 0 or 1")
        y01 = (y == 1).astype(np.int8)
        self.n_train_ = int(n)
        present = np.unique(y01)
        if present.size == 1:
            label = int(present[0])
            self.constant_ = label
            self.support_ = np.zeros(0, dtype=np.int64)
            self.dual_coef_ = np.zeros(0, dtype=np.float64)
            self.intercept_ = 1.0 if label == 1 else -1.0
            return self
        model, _prob = _train_libsvm(gram, y01, float(self.C), float(self.tol), float(self.cache_mb))
        n_sv = model.get_nr_sv()
        support = np.asarray(model.get_sv_indices(), dtype=np.int64) - 1  # LIBSVM is 1-based
        coef = np.array([model.sv_coef[0][i] for i in range(n_sv)], dtype=np.float64)
        rho = float(model.rho[0])
        # LIBSVM: decision = sum coef_i K - rho, positive -> model.label[0]
        sign = 1.0 if model.get_labels()[0] == 1 else -1.0
        order = np.argsort(support, kind="stable")
        self.constant_ = None
        self.support_ = support[order]
        self.dual_coef_ = sign * coef[order]
        self.intercept_ = -sign * rho
        del model, _prob
        return self

    # prediction ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "support_"):
            raise InputError("this ChannelSVM is not fitted yet; call fit() or from_arrays() first")

    @property
    def n_support_(self) -> int:
        self._check_fitted()
        return int(self.support_.size)

    def decision(self, k_test_sv: np.ndarray) -> np.ndarray:
        """Decision values from the kernel between test points and the support vectors.

        Parameters
        ----------
        k_test_sv : ndarray, shape (m, n_sv)
            ``k_test_sv[j, i] = k(z_j, x_support_[i])``, columns in the order of ``support_``.
            A constant model (one training class) accepts ``n_sv = 0`` columns.

        Returns
        -------
        ndarray of float64, shape (m,)
            ``k_test_sv @ dual_coef_ + intercept_``; positive means label 1.
        """
        self._check_fitted()
        k = np.asarray(k_test_sv, dtype=np.float64)
        if k.ndim != 2 or k.shape[1] != self.support_.size:
            raise InputError(
                f"test kernel must have shape (m, {self.support_.size}) (one column per support vector), got {k.shape}"
            )
        if self.support_.size == 0:
            return np.full(k.shape[0], float(self.intercept_))
        out = k @ self.dual_coef_
        out += self.intercept_
        return out

    def predict(self, k_test_sv: np.ndarray) -> np.ndarray:
        """Labels in {0, 1} (int8), shape (m,): ``decision(k_test_sv) > 0``."""
        return (self.decision(k_test_sv) > 0).astype(np.int8)

    # model-file arrays -----------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays for the model file (npz-friendly, fixed dtypes).

        Keys: ``support`` (int64, n_sv), ``dual_coef`` (float64, n_sv), ``intercept`` (float64,
        shape (1,)), ``constant`` (int8, shape (1,); -1 when not constant), ``n_train`` (int64,
        shape (1,)), ``params`` (float64, [C, tol, cache_mb]).
        """
        self._check_fitted()
        return {
            "support": np.asarray(self.support_, dtype=np.int64).copy(),
            "dual_coef": np.asarray(self.dual_coef_, dtype=np.float64).copy(),
            "intercept": np.array([self.intercept_], dtype=np.float64),
            "constant": np.array([-1 if self.constant_ is None else self.constant_], dtype=np.int8),
            "n_train": np.array([self.n_train_], dtype=np.int64),
            "params": np.array([self.C, self.tol, self.cache_mb], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ChannelSVM:
        """Rebuild a fitted model from :meth:`to_arrays` output; validates keys, dtypes, shapes.

        Raises
        ------
        ModelError
            On a missing key, wrong dtype kind or inconsistent shapes.
        """
        need = ("support", "dual_coef", "intercept", "constant", "n_train", "params")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ModelError(f"SVM arrays are missing {', '.join(missing)}")
        sup = np.asarray(arrays["support"])
        coef = np.asarray(arrays["dual_coef"])
        icpt = np.asarray(arrays["intercept"])
        const = np.asarray(arrays["constant"])
        ntr = np.asarray(arrays["n_train"])
        params = np.asarray(arrays["params"])
        if sup.ndim != 1 or sup.dtype.kind not in "iu":
            raise ModelError("SVM support indices must be a 1-d integer array")
        if coef.ndim != 1 or coef.dtype.kind != "f" or coef.shape != sup.shape:
            raise ModelError("SVM dual coefficients must be a float array matching the support indices")
        if icpt.shape != (1,) or icpt.dtype.kind != "f" or not np.isfinite(icpt[0]):
            raise ModelError("SVM intercept must be one finite float")
        if const.shape != (1,) or const.dtype.kind not in "iu" or int(const[0]) not in (-1, 0, 1):
            raise ModelError("SVM constant flag must be one of -1, 0, 1")
        if ntr.shape != (1,) or ntr.dtype.kind not in "iu":
            raise ModelError("SVM n_train must be one integer")
        if params.shape != (3,) or params.dtype.kind != "f":
            raise ModelError("SVM params must be three floats (C, tol, cache_mb)")
        if not np.all(np.isfinite(coef)):
            raise ModelError("SVM dual coefficients hold NaN or infinite values")
        n_train = int(ntr[0])
        if sup.size and (sup.min() < 0 or sup.max() >= n_train or np.any(np.diff(sup) <= 0)):
            raise ModelError("SVM support indices are out of range or not strictly increasing")
        constant = None if int(const[0]) == -1 else int(const[0])
        if constant is not None and sup.size:
            raise ModelError("a constant SVM cannot have support vectors")
        obj = cls(C=float(params[0]), tol=float(params[1]), cache_mb=float(params[2]))
        obj.support_ = sup.astype(np.int64)
        obj.dual_coef_ = coef.astype(np.float64)
        obj.intercept_ = float(icpt[0])
        obj.constant_ = constant
        obj.n_train_ = n_train
        return obj


# --------------------------------------------------------------------------------------------
# LIBLINEAR on an explicit map (REFERENCE section 15)
# --------------------------------------------------------------------------------------------
SOLVERS = ("libsvm", "liblinear")
"""``libsvm``: C-SVC on a precomputed Gram matrix of a capped sample (paper-exact);
``liblinear``: :class:`LinearSVM` on a Nystroem map of every training unit (paper scale)."""


def _dense_csr(X: np.ndarray):
    """A dense (n, r) array as a CSR matrix with every entry stored (LIBLINEAR's input)."""
    from scipy import sparse

    n, r = X.shape
    indices = np.tile(np.arange(r, dtype=np.int32), n)
    indptr = np.arange(0, n * r + 1, r, dtype=np.int64)
    return sparse.csr_matrix((np.ascontiguousarray(X, dtype=np.float64).ravel(), indices, indptr), shape=(n, r))


class LinearSVM:
    """L2-regularised L2-loss linear SVM of one channel, trained by LIBLINEAR (``-s 2 -B 1``).

    Parameters
    ----------
    C : float
        Penalty (``-c``).
    tol : float
        Stopping tolerance (``-e``; LIBLINEAR's default for ``-s 2`` is 0.01).
    class_weight : {"balanced", None}
        "balanced": label k's penalty is multiplied by ``n / (2 n_k)`` (``-w1``, ``-w-1``), so both
        IBM labels weigh the same in total, as HIT - FA (true minus false positive rate) does.

    Attributes (after ``fit``)
    ----------
    coef_ : ndarray (r,), intercept_ : float
        ``decision(phi) = phi @ coef_ + intercept_``; positive means label 1.
    constant_ : int or None
        The label when training saw one class only (then ``coef_ = 0``, ``intercept_ = +-1``).
    n_train_, options_ : training size; the LIBLINEAR option string used.
    """

    def __init__(self, C: float = 1.0, tol: float = 0.01, class_weight: str | None = "balanced") -> None:
        self.C = C
        self.tol = tol
        self.class_weight = class_weight

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"C": self.C, "tol": self.tol, "class_weight": self.class_weight}

    def set_params(self, **params: Any) -> LinearSVM:
        for key, value in params.items():
            if key not in ("C", "tol", "class_weight"):
                raise InputError(f"LinearSVM has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"LinearSVM(C={self.C!r}, tol={self.tol!r}, class_weight={self.class_weight!r})"

    def options(self, y01: np.ndarray) -> str:
        """The LIBLINEAR option string for labels ``y01`` (0/1)."""
        for name in ("C", "tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating, np.integer)) and np.isfinite(v) and v > 0):
                raise InputError(f"LinearSVM {name} must be a positive number, got {v!r}")
        opts = f"-s 2 -B 1 -c {float(self.C)!r} -e {float(self.tol)!r} -q"
        if self.class_weight == "balanced":
            n1 = int(np.count_nonzero(y01))
            n0 = int(y01.size - n1)
            opts += f" -w1 {y01.size / (2.0 * n1)!r} -w-1 {y01.size / (2.0 * n0)!r}"
        elif self.class_weight is not None:
            raise InputError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        return opts

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearSVM:
        """Train on features ``X`` (n, r) (a kernel map of the units) with labels ``y`` (n,) in {0, 1}."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise InputError(f"features must be (n, r) with n labels, got {X.shape} and {y.shape}")
        if X.shape[0] == 0:
            raise InputError("cannot train an SVM on zero training points")
        if not np.all(np.isfinite(X)):
            raise InputError("the SVM features hold NaN or infinite values")
        if not np.all((y == 0) | (y == 1)):
            raise InputError("SVM labels must be 0 or 1")
        y01 = (y == 1).astype(np.int8)
        self.n_train_ = int(y01.size)
        present = np.unique(y01)
        if present.size == 1:
            self.constant_ = int(present[0])
            self.coef_ = np.zeros(X.shape[1])
            self.intercept_ = 1.0 if self.constant_ == 1 else -1.0
            self.options_ = ""
            return self
        from liblinear.liblinearutil import parameter, problem, train

        self.options_ = self.options(y01)
        prob = problem(np.where(y01 > 0, 1.0, -1.0), _dense_csr(X))
        model = train(prob, parameter(self.options_))
        r = X.shape[1]
        w = np.array([model.get_decfun_coef(k + 1) for k in range(r)], dtype=np.float64)
        b = float(model.get_decfun_bias())
        # LIBLINEAR: decision w.x + b > 0 -> model.get_labels()[0]
        sign = 1.0 if model.get_labels()[0] == 1 else -1.0
        self.constant_ = None
        self.coef_ = sign * w
        self.intercept_ = sign * b
        del model, prob
        return self

    def decision(self, X: np.ndarray) -> np.ndarray:
        """``X @ coef_ + intercept_``: shape (n,)."""
        if not hasattr(self, "coef_"):
            raise InputError("this LinearSVM is not fitted yet; call fit() first")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_


# --------------------------------------------------------------------------------------------
# Platt scaling (REFERENCE section 11)
# --------------------------------------------------------------------------------------------
def _platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (N+ + 1) / (N+ + 2) for label 1, 1 / (N- + 2) for label 0."""
    pos = labels > 0
    n_pos = int(pos.sum())
    n_neg = int(pos.size - n_pos)
    return np.where(pos, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def platt_objective(A: float, B: float, decision: np.ndarray, labels: np.ndarray) -> float:
    """Platt's cross-entropy of ``P = 1 / (1 + exp(A f + B))`` against the smoothed targets.

    ``sum_i t_i z_i + log(1 + exp(-z_i))`` with ``z_i = A f_i + B`` (Lin, Lin & Weng 2007, Eq. 4
    written without the branch: both of their cases equal this), evaluated without overflow.
    """
    f = np.asarray(decision, dtype=np.float64)
    t = _platt_targets(np.asarray(labels))
    z = A * f + B
    return float(np.sum(t * z + np.logaddexp(0.0, -z)))


def platt_fit(decision: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, min_step: float = 1e-10,
              sigma: float = 1e-12, eps: float = 1e-5) -> tuple[float, float]:
    """Fit Platt's sigmoid ``P(label 1 | f) = 1 / (1 + exp(A f + B))`` to decision values.

    Newton's method with a backtracking line search and a tiny ridge on the Hessian, as in
    Lin, Lin & Weng (2007), "A note on Platt's probabilistic outputs for support vector
    machines", Algorithm 1: start at ``A = 0``, ``B = log((N- + 1) / (N+ + 1))``; stop when both
    gradient components are below ``eps``, after ``max_iter`` iterations, or when the line search
    cannot decrease the objective (:func:`platt_objective`) by a step of at least ``min_step``.

    Parameters
    ----------
    decision : ndarray, shape (n,)
        Decision values of units the SVM did NOT train on (on its own training points they are
        biased towards the margin and the fit is over-confident).
    labels : ndarray, shape (n,)
        Their labels in {0, 1} (the IBM); any value > 0 counts as 1.

    Returns
    -------
    (A, B) : floats.  ``A < 0`` when larger decision values mean label 1, as they should.
    """
    f = np.asarray(decision, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if f.shape != y.shape:
        raise InputError(f"decision values {f.shape} and labels {y.shape} differ in shape")
    if f.size == 0:
        raise InputError("Platt scaling needs at least one decision value")
    if not np.all(np.isfinite(f)):
        raise InputError("decision values hold NaN or infinite values")
    n_pos = int(np.count_nonzero(y > 0))
    n_neg = f.size - n_pos
    t = _platt_targets(y)
    A, B = 0.0, float(np.log((n_neg + 1.0) / (n_pos + 1.0)))

    def objective(a, b):
        z = a * f + b
        return float(np.sum(t * z + np.logaddexp(0.0, -z)))

    fval = objective(A, B)
    for _ in range(max_iter):
        z = A * f + B
        p = 0.5 * (1.0 - np.tanh(0.5 * z))  # 1 / (1 + exp(z)), no overflow
        d2 = p * (1.0 - p)
        h11 = sigma + float(np.dot(f * f, d2))
        h22 = sigma + float(d2.sum())
        h21 = float(np.dot(f, d2))
        d1 = t - p
        g1 = float(np.dot(f, d1))
        g2 = float(d1.sum())
        if abs(g1) < eps and abs(g2) < eps:
            break
        det = h11 * h22 - h21 * h21
        dA = -(h22 * g1 - h21 * g2) / det
        dB = -(-h21 * g1 + h11 * g2) / det
        gd = g1 * dA + g2 * dB
        step = 1.0
        while step >= min_step:
            nA, nB = A + step * dA, B + step * dB
            nf = objective(nA, nB)
            if nf < fval + 1e-4 * step * gd:
                A, B, fval = nA, nB, nf
                break
            step /= 2.0
        else:  # no step decreases the objective: we are at the minimum to machine precision
            break
    return float(A), float(B)


def platt_posterior(decision: np.ndarray, A: float | np.ndarray, B: float | np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(A f + B))`` elementwise, without overflow.

    ``A`` and ``B`` may be arrays broadcasting against ``decision`` (e.g. shape (C, 1) for one
    sigmoid per channel of a (C, M) array of decision values).
    """
    z = np.asarray(A) * np.asarray(decision, dtype=np.float64) + np.asarray(B)
    return 0.5 * (1.0 - np.tanh(0.5 * z))
