from itertools import combinations

import numpy as np
import pytest

import naive
from fastifkl import constraints, itml, kernels
from fastifkl.errors import InputError


def _data(seed, D=4, pool=100, d=10, cls=2.0, shift=0.5, p1=0.5):
    rng = np.random.default_rng(seed)
    N = pool * D
    lab = (rng.random(N) < p1).astype(int)
    dom = np.repeat(np.arange(D), pool)
    X = rng.normal(size=(N, d)) + cls * lab[:, None] * (np.arange(d) < 2) + shift * rng.normal(size=(D, d))[dom]
    return X, lab, dom


def _problem(seed, per=30, **kw):
    X, lab, dom = _data(seed, **kw)
    pts, cons = constraints.cross_domain_constraints(lab, dom, per, np.random.default_rng(seed))
    Xp = X[pts]
    sigma = kernels.median_sigma(Xp)
    K0 = kernels.gaussian(Xp, sigma=sigma)
    u, l = constraints.distance_thresholds(K0, cons)
    return Xp, sigma, K0, cons, u, l


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _pair_d(K, i, j):
    return K[i, i] + K[j, j] - 2 * K[i, j]


# ---- constraints and thresholds -------------------------------------------------------------

def test_cross_domain_constraints_structure():
    X, lab, dom = _data(0, D=5, pool=60, p1=0.3)
    pts, (i, j, sim) = constraints.cross_domain_constraints(lab, dom, 20, np.random.default_rng(1))
    assert len(pts) == 100 and len(np.unique(pts)) == 100
    assert len(i) == 20 * 20 * 10  # per^2 * C(5, 2)
    d = dom[pts]
    assert np.all(d[i] != d[j])
    assert np.array_equal(sim, lab[pts][i] == lab[pts][j])
    # every cross-domain pair exactly once
    want = {(a, b) for a, b in combinations(range(100), 2) if d[a] != d[b]}
    assert {(min(a, b), max(a, b)) for a, b in zip(i, j)} == want
    # class-balanced: 10 of each class per domain (both classes have >= 10 points)
    for k in range(5):
        sel = pts[d == k]
        assert np.sum(lab[sel] == 1) == 10
    # deterministic for a seed
    pts2, (i2, _, _) = constraints.cross_domain_constraints(lab, dom, 20, np.random.default_rng(1))
    assert np.array_equal(pts, pts2) and np.array_equal(i, i2)


def test_cross_domain_constraints_balance_with_scarce_class():
    lab = np.array([1, 1] + [0] * 30 + [1] * 16 + [0] * 16)
    dom = np.array([0] * 32 + [1] * 32)
    pts, (i, j, sim) = constraints.cross_domain_constraints(lab, dom, 10, 0)
    d0 = pts[dom[pts] == 0]
    assert len(d0) == 10 and np.sum(lab[d0] == 1) == 2  # all of the scarce class, rest from the other
    d1 = pts[dom[pts] == 1]
    assert np.sum(lab[d1] == 1) == 5
    assert len(i) == 100


def test_distance_thresholds_brute_force(rng):
    Xp, sigma, K0, cons, u, l = _problem(3)
    i, j, _ = cons
    d = np.array([K0[a, a] + K0[b, b] - 2 * K0[a, b] for a, b in zip(i, j)])
    assert (u, l) == (pytest.approx(np.percentile(d, 5)), pytest.approx(np.percentile(d, 95)))
    u2, l2 = constraints.distance_thresholds(K0, cons, 10, 80)
    assert u2 == pytest.approx(np.percentile(d, 10)) and l2 == pytest.approx(np.percentile(d, 80))


# ---- exact mode vs the plain NumPy reference ------------------------------------------------

@pytest.mark.parametrize("similar_first,block,gamma", [(False, 7, 1.0), (True, 64, 3.0), (False, 3, np.inf)])
def test_exact_equals_numpy_reference(similar_first, block, gamma):
    Xp, sigma, K0, cons, u, l = _problem(1, per=12, D=3)
    res = itml.learn_kernel(K0, cons, u, l, gamma, mode="exact", similar_first=similar_first, block=block,
                            max_sweeps=25)
    i, j, s = cons
    order = np.argsort(~s, kind="stable") if similar_first else np.arange(len(i))
    Kn, Sn, lamn, sweeps = naive.kernel_itml(K0, i[order], j[order], s[order], u, l, gamma, max_sweeps=25)
    assert res.n_sweeps == sweeps
    assert _rel(res.K, Kn) < 1e-10
    assert _rel(res.S, Sn) < 1e-10
    assert _rel(res.lambdas[order], lamn) < 1e-10
    assert res.n_updates > 0


def test_random_order_is_a_seeded_permutation():
    """order="random": the NumPy reference run on the permuted constraints, lambdas returned in
    the caller's order; same seed same result, other seed another result."""
    Xp, sigma, K0, cons, u, l = _problem(3, per=12, D=3)
    i, j, s = cons
    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", order="random", seed=7, block=5, max_sweeps=10)
    perm = np.random.default_rng(7).permutation(len(i))
    Kn, Sn, lamn, sweeps = naive.kernel_itml(K0, i[perm], j[perm], s[perm], u, l, 1.0, max_sweeps=10)
    assert res.n_sweeps == sweeps
    assert _rel(res.K, Kn) < 1e-10 and _rel(res.S, Sn) < 1e-10
    assert _rel(res.lambdas[perm], lamn) < 1e-10
    again = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", order="random", seed=7, block=5, max_sweeps=10)
    assert np.array_equal(again.K, res.K)
    other = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", order="random", seed=8, block=5, max_sweeps=10)
    assert _rel(other.K, res.K) > 1e-8
    given = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", order="given", block=5, max_sweeps=10)
    assert _rel(given.K, res.K) > 1e-8
    with pytest.raises(InputError, match="order"):
        itml.learn_kernel(K0, cons, u, l, 1.0, order="shuffled")


def test_numpy_twins_match_kernels():
    Xp, sigma, K0, cons, u, l = _problem(2, per=10, D=3)
    i, j, s = cons
    delta = np.where(s, 1.0, -1.0)
    gp = 0.5
    # exact: jitted blocked sweeps vs naive.exact_sweep, 3 sweeps
    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", block=5, max_sweeps=3, tol=1e-300)
    K = K0.copy()
    S = np.zeros_like(K0)
    xi = np.where(s, u, l)
    lam = np.zeros(len(i))
    for _ in range(3):
        naive.exact_sweep(K, S, K0, i, j, delta, xi, lam, 1.0, gp)
    assert _rel(res.K, K) < 1e-10 and _rel(res.S, S) < 1e-10
    # low-rank
    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=9, max_sweeps=3, tol=1e-300)
    W = np.eye(9)
    xi = np.where(s, u, l)
    lam = np.zeros(len(i))
    for _ in range(3):
        naive.lowrank_sweep(res.G, W, i, j, delta, xi, lam, 1.0, gp)
    assert _rel(res.W, W) < 1e-10 and _rel(res.lambdas, lam) < 1e-10


# ---- low-rank mode vs metric_learn.ITML -----------------------------------------------------

def _ml_fit(G, cons, u, l, gamma, max_iter):
    from metric_learn import ITML
    i, j, s = cons
    order = np.argsort(~s, kind="stable")
    pairs = np.stack([G[i[order]], G[j[order]]], axis=1)
    y = np.where(s[order], 1, -1)
    m = ITML(gamma=gamma, max_iter=max_iter, tol=1e-3, prior="identity")
    m._fit(pairs, y, bounds=np.array([u, l]))
    return m.get_mahalanobis_matrix(), m.n_iter_ + 1


@pytest.fixture(scope="module")
def problem200():
    """200 points (4 domains x 50), a random 4,000 of the 15,000 cross-domain constraints, linear data."""
    X, lab, dom = _data(11, D=4, pool=150, d=12, cls=1.0, shift=0.4)
    rng = np.random.default_rng(11)
    pts, (i, j, s) = constraints.cross_domain_constraints(lab, dom, 50, rng)
    sel = np.sort(rng.choice(len(i), 4000, replace=False))
    cons = (i[sel], j[sel], s[sel])
    G = X[pts] / 4.0
    K0 = G @ G.T
    u, l = constraints.distance_thresholds(K0, cons)
    return G, K0, cons, u, l


def test_lowrank_equals_metric_learn_on_factor(problem200):
    pytest.importorskip("metric_learn")
    G, K0, cons, u, l = problem200
    assert G.shape[0] == 200
    A, n_ml = _ml_fit(G, cons, u, l, 1.0, 8)
    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", factor=G, similar_first=True, max_sweeps=8)
    assert res.n_sweeps == n_ml == 8
    assert _rel(res.W, A) < 1e-8
    assert not np.allclose(A, np.eye(A.shape[0]))
    # the eigen-factor of K0 = G G^T is G up to a rotation: the learned kernels agree
    res2 = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=G.shape[1], similar_first=True,
                             max_sweeps=8)
    assert res2.truncation_error < 1e-12
    assert _rel(res2.K, K0 + G @ (A - np.eye(A.shape[0])) @ G.T) < 1e-8


def test_lowrank_convergence_test_matches_metric_learn():
    """Run to convergence (tol 1e-3): same stopping sweep and same matrix as metric_learn."""
    pytest.importorskip("metric_learn")
    Xp, sigma, K0, cons, u, l = _problem(4, per=10, D=3, cls=8.0)
    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=8, similar_first=True, max_sweeps=1000)
    assert res.converged and 10 < res.n_sweeps < 1000
    A, n_ml = _ml_fit(res.G, cons, u, l, 1.0, 1000)
    assert res.n_sweeps == n_ml
    assert _rel(res.W, A) < 1e-8


# ---- properties of the learned kernel -------------------------------------------------------

def test_learned_kernel_spd_and_satisfies_constraints():
    Xp, sigma, K0, cons, u, l = _problem(4, per=30, D=3, cls=8.0)
    i, j, s = cons

    def share(K):
        d = _pair_d(K, i, j)
        return np.mean(np.where(s, d <= u, d >= l))

    res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", max_sweeps=300)
    assert res.converged
    assert np.array_equal(res.K, res.K.T)
    assert np.linalg.eigvalsh(res.K)[0] > 0
    assert share(K0) < 0.2
    assert share(res.K) >= 0.9
    # the low-rank mode improves on K0 as well (less, as its changes live in r dimensions)
    lr = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=20, max_sweeps=300)
    assert np.linalg.eigvalsh(lr.K)[0] > 0
    assert share(lr.K) > 2 * share(K0)


def test_rank_picked_by_truncation_error():
    Xp, sigma, K0, cons, u, l = _problem(6, per=15, D=3)
    w = np.linalg.eigvalsh(K0)[::-1]
    for tol in (0.1, 0.01, 1e-3):
        res = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank_tol=tol, max_sweeps=1)
        r = res.rank
        err = lambda k: np.sqrt(np.sum(w[k:] ** 2) / np.sum(w**2))  # noqa: E731
        assert err(r) <= tol < err(r - 1)
        assert res.truncation_error == pytest.approx(err(r), rel=1e-6)
        assert res.truncation_error == pytest.approx(_rel(res.G @ res.G.T, K0), rel=1e-6)


# ---- degenerate input ---------------------------------------------------------------------------

def test_single_class_domain_is_an_error():
    lab = np.array([0, 1] * 10 + [1] * 20)
    dom = np.array([0] * 20 + [1] * 20)
    with pytest.raises(InputError, match="single class"):
        constraints.cross_domain_constraints(lab, dom, 5, 0)


def test_fewer_than_two_domains_is_an_error():
    with pytest.raises(InputError, match="2 domains"):
        constraints.cross_domain_constraints([0, 1, 0, 1], [3, 3, 3, 3], 2, 0)
    with pytest.raises(InputError):
        constraints.cross_domain_constraints([0, 1, 0], [0, 1], 2, 0)


@pytest.mark.parametrize("mode", ["exact", "lowrank"])
def test_duplicate_points_are_an_error(mode):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    K0 = kernels.gaussian(X, sigma=1.0)
    cons = (np.array([0, 1]), np.array([3, 2]), np.array([True, True]))
    with pytest.raises(InputError, match="duplicate"):
        itml.learn_kernel(K0, cons, 0.1, 1.0, 1.0, mode=mode)
    with pytest.raises(InputError, match="thresholds must be positive|duplicate"):
        u, l = constraints.distance_thresholds(K0, (np.array([1, 1]), np.array([2, 2]), np.array([True, False])))


@pytest.mark.parametrize("gamma", [0.0, -1.0, np.nan])
def test_gamma_must_be_positive(gamma):
    K0 = kernels.gaussian(np.arange(5.0)[:, None], sigma=1.0)
    with pytest.raises(InputError, match="gamma"):
        itml.learn_kernel(K0, ([0], [1], [True]), 0.1, 1.0, gamma)


def test_non_psd_K0_is_an_error():
    K0 = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.9], [0.0, 0.9, 1.0]])  # eigenvalues 1 +- 0.9*sqrt(2), 1
    for mode in ("exact", "lowrank"):
        with pytest.raises(InputError, match="positive semidefinite"):
            itml.learn_kernel(K0, ([0], [2], [True]), 0.1, 1.0, 1.0, mode=mode)
    with pytest.raises(InputError, match="symmetric"):
        itml.learn_kernel(np.triu(np.ones((3, 3))), ([0], [2], [True]), 0.1, 1.0, 1.0)
    with pytest.raises(InputError, match="NaN"):
        itml.learn_kernel(np.full((3, 3), np.nan), ([0], [2], [True]), 0.1, 1.0, 1.0)


def test_bad_constraints_and_options():
    K0 = kernels.gaussian(np.arange(6.0)[:, None], sigma=2.0)
    ok = ([0, 1], [4, 5], [True, False])
    for cons in (([0], [0], [True]), ([0], [9], [True]), ([0, 1], [2], [True]), ([], [], []),
                 ([0.5], [1.0], [True]), "nope"):
        with pytest.raises(InputError):
            itml.learn_kernel(K0, cons, 0.1, 1.0, 1.0)
    for kw in (dict(mode="fast"), dict(max_sweeps=0), dict(tol=0), dict(mode="lowrank", rank=99)):
        with pytest.raises(InputError):
            itml.learn_kernel(K0, ok, 0.1, 1.0, 1.0, **kw)
    with pytest.raises(InputError):
        itml.learn_kernel(K0, ok, 0.0, 1.0, 1.0)
    # rank too small: points coincide in the factor -> error, not a division by zero
    X = np.array([[0.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    K0 = X @ X.T + 1e-3 * np.eye(3)
    with pytest.raises(InputError, match="coincide"):
        itml.learn_kernel(K0, ([1], [2], [True]), 0.1, 1.0, 1.0, mode="lowrank", factor=np.ones((3, 1)))


@pytest.mark.parametrize("mode", ["exact", "lowrank"])
def test_hard_constraints_finite(mode):
    """gamma = inf (no slack) still gives finite, SPD output."""
    Xp, sigma, K0, cons, u, l = _problem(8, per=8, D=3)
    res = itml.learn_kernel(K0, cons, u, l, np.inf, mode=mode, rank=10, max_sweeps=20)
    assert np.all(np.isfinite(res.K)) and np.all(np.isfinite(res.lambdas))
    assert np.linalg.eigvalsh(res.K)[0] > 0


def test_constraints_stay_importable_from_itml():
    """README's Python API shows ``itml.cross_domain_constraints``: the names moved to
    fastifkl.constraints and stay importable from itml."""
    assert itml.cross_domain_constraints is constraints.cross_domain_constraints
    assert itml.distance_thresholds is constraints.distance_thresholds
