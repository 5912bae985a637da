import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from fastifkl import constraints, itml, kernels
from fastifkl.errors import InputError


def test_gaussian_matches_cdist(rng):
    X = rng.normal(size=(37, 9)) * 3 + 10  # offset: the norms+GEMM form must survive cancellation
    Y = rng.normal(size=(23, 9)) * 3 + 10
    sigma = 2.7
    ref = np.exp(-cdist(X, Y, "sqeuclidean") / (2 * sigma**2))
    K = kernels.gaussian(X, Y, sigma)
    assert K.shape == (37, 23) and K.dtype == np.float64
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12)


def test_gaussian_gram_symmetric_unit_diagonal(rng):
    X = rng.normal(size=(50, 4))
    K = kernels.gaussian(X, sigma=1.3)
    assert np.array_equal(K, K.T)
    assert np.array_equal(np.diag(K), np.ones(50))
    np.testing.assert_allclose(K, np.exp(-cdist(X, X, "sqeuclidean") / (2 * 1.3**2)), rtol=1e-12, atol=1e-14)


def test_gaussian_clips_negative_distances():
    X = np.full((3, 5), 1e8)  # identical large points: ||x||^2 + ||y||^2 - 2xy rounds, may go < 0
    Y = X.copy()
    K = kernels.gaussian(X, Y, 1.0)
    assert np.all(K <= 1.0) and np.all(np.isfinite(K))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_gaussian_bad_sigma(bad):
    with pytest.raises(InputError):
        kernels.gaussian(np.zeros((2, 2)), sigma=bad)


def test_gaussian_bad_shapes():
    with pytest.raises(InputError):
        kernels.gaussian(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(InputError):
        kernels.gaussian(np.zeros((2, 2, 2)), sigma=1.0)
    with pytest.raises(InputError):
        kernels.gaussian(np.array([[np.nan, 1.0]]), sigma=1.0)


def test_median_sigma_brute_force(rng):
    X = rng.normal(size=(60, 7))
    assert kernels.median_sigma(X) == pytest.approx(np.median(pdist(X)), rel=1e-12)
    # subsampled path is deterministic for a seed and close to the full median
    X = rng.normal(size=(1500, 3))
    a = kernels.median_sigma(X, rng=3, max_points=400)
    assert a == kernels.median_sigma(X, rng=3, max_points=400)
    assert a == pytest.approx(np.median(pdist(X[:1000])), rel=0.1)


def test_median_sigma_degenerate():
    with pytest.raises(InputError):
        kernels.median_sigma(np.ones((10, 3)))
    with pytest.raises(InputError):
        kernels.median_sigma(np.ones((1, 3)))


def _problem(rng, n_per=15, D=3, d=6):
    N = 60 * D
    lab = (rng.random(N) < 0.5).astype(int)
    dom = np.repeat(np.arange(D), 60)
    X = rng.normal(size=(N, d)) + 2.0 * lab[:, None] * (np.arange(d) < 2) + rng.normal(size=(D, d))[dom] * 0.5
    pts, cons = constraints.cross_domain_constraints(lab, dom, n_per, rng)
    Xp = X[pts]
    sigma = kernels.median_sigma(Xp)
    K0 = kernels.gaussian(Xp, sigma=sigma)
    u, l = constraints.distance_thresholds(K0, cons)
    return X, Xp, sigma, K0, cons, u, l


@pytest.fixture(scope="module")
def learned():
    rng = np.random.default_rng(7)
    X, Xp, sigma, K0, cons, u, l = _problem(rng)
    ex = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", max_sweeps=30)
    lr = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=12, max_sweeps=30)
    return X, Xp, sigma, K0, ex, lr


@pytest.mark.parametrize("which", ["exact", "lowrank"])
def test_out_of_sample_on_training_points_returns_K(learned, which):
    X, Xp, sigma, K0, ex, lr = learned
    res = ex if which == "exact" else lr
    assert not np.allclose(res.K, K0)  # something was learned
    lk = kernels.LearnedKernel.from_result(Xp, sigma, res)
    assert lk.mode == which
    err = np.linalg.norm(lk(Xp) - res.K) / np.linalg.norm(res.K)
    assert err < 1e-8
    # rectangular blocks agree with the square evaluation
    np.testing.assert_allclose(lk(Xp[:5], Xp[3:9]), lk(Xp)[:5, 3:9], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["exact", "lowrank"])
def test_out_of_sample_matches_eq9_brute_force(learned, which):
    """kappa(z1, z2) = kappa0(z1, z2) + k1^T Sigma k2, with Sigma = S (exact) or P (W - I) P^T,
    element by element with explicit exp() -- independent of gaussian()."""
    X, Xp, sigma, K0, ex, lr = learned
    res = ex if which == "exact" else lr
    lk = kernels.LearnedKernel.from_result(Xp, sigma, res)
    Sig = res.S if which == "exact" else res.projection @ (res.W - np.eye(res.W.shape[0])) @ res.projection.T
    Z = X[:4] + 0.1
    k0 = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))  # noqa: E731
    got = lk(Z, X[10:13])
    for p in range(4):
        k1 = np.array([k0(Z[p], x) for x in Xp])
        for q in range(3):
            k2 = np.array([k0(X[10 + q], x) for x in Xp])
            assert got[p, q] == pytest.approx(k0(Z[p], X[10 + q]) + k1 @ Sig @ k2, rel=1e-9, abs=1e-12)


def test_learned_kernel_arrays_roundtrip(learned):
    X, Xp, sigma, K0, ex, lr = learned
    for res in (ex, lr):
        lk = kernels.LearnedKernel.from_result(Xp, sigma, res)
        arrays = lk.to_arrays()
        assert all(isinstance(v, np.ndarray) for v in arrays.values())
        lk2 = kernels.LearnedKernel.from_arrays({k: v.copy() for k, v in arrays.items()})
        assert np.array_equal(lk2(X[:20]), lk(X[:20]))
    with pytest.raises(InputError):
        kernels.LearnedKernel.from_arrays({"landmarks": Xp})
    with pytest.raises(InputError):
        kernels.LearnedKernel(Xp, sigma, np.zeros((3, 3)))


def test_learned_kernel_needs_S():
    K0 = kernels.gaussian(np.arange(8.0)[:, None], sigma=2.0)
    cons = (np.array([0, 1]), np.array([5, 6]), np.array([True, False]))
    res = itml.learn_kernel(K0, cons, 0.5, 1.5, 1.0, mode="exact", track_S=False, max_sweeps=2)
    assert res.S is None
    with pytest.raises(InputError):
        kernels.LearnedKernel.from_result(np.arange(8.0)[:, None], 2.0, res)


def test_learned_kernel_needs_nystroem_map():
    X = np.arange(8.0)[:, None]
    K0 = kernels.gaussian(X, sigma=2.0)
    cons = (np.array([0, 1]), np.array([5, 6]), np.array([True, False]))
    G = np.linalg.cholesky(K0 + 1e-9 * np.eye(8))
    res = itml.learn_kernel(K0, cons, 0.5, 1.5, 1.0, mode="lowrank", factor=G, max_sweeps=2)
    with pytest.raises(InputError, match="Nystroem"):
        kernels.LearnedKernel.from_result(X, 2.0, res)


def test_gaussian_decision_float32_path_matches_float64_formula_across_row_blocks():
    from fastifkl import kernels

    rng = np.random.default_rng(11)
    n = kernels._ROWS + 37  # two row blocks
    X = rng.standard_normal((n, 20))
    Z = rng.standard_normal((50, 20)).astype(np.float32)
    Z[0] = X[3]  # a point at distance 0 (the clip of the exponent at 0)
    coef = rng.standard_normal(50)
    sigma = 3.0
    d2 = ((X[:, None, :] - Z.astype(np.float64)[None]) ** 2).sum(axis=2)
    ref = np.exp(-d2 / (2 * sigma ** 2)) @ coef + 0.25
    got = kernels.gaussian_decision(X, Z, coef, 0.25, sigma)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(coef).sum())
    assert np.all(kernels.gaussian_decision(X[:3], Z[:0], coef[:0], 0.5, sigma) == 0.5)
