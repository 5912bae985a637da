"""Nystroem maps of the Gaussian and the learned kernel (fastifkl.kernel_map, REFERENCE 15).

The references are independent of the module: the exact kernels (explicit ``exp`` and
``kernels.LearnedKernel``, paper Eq. 9) and the Nystroem approximation written with
``scipy.linalg.pinvh`` (tests/naive.py).  Errors are measured on units that are NOT landmarks and
printed (``pytest -s`` shows them).
"""
from __future__ import annotations

import numpy as np
import pytest

from fastifkl import constraints, itml, kernel_map, kernels
from fastifkl.errors import InputError
from naive import nystroem_gram


def _clustered(rng, n, d=12, k=6):
    """Points in ``k`` Gaussian clusters (feature-like: most pairs at the median distance)."""
    centres = rng.normal(size=(k, d)) * 1.5
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    X = _clustered(rng, 1200)
    sigma = kernels.median_sigma(X, 0)
    return X[:1000], X[1000:], sigma  # training units (landmark pool) and held-out units


def _exact(A, B, sigma):
    d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


@pytest.mark.parametrize("floor", [0.0, 1e-6])
def test_gaussian_map_is_nystroem(data, floor):
    """phi(x).phi(y) = k(x, Z) W^+ k(Z, y), W^+ by scipy's pinvh with the same relative floor."""
    X, Y, sigma = data
    Z = kernel_map.landmarks(X, 120, "uniform", 0)
    mp = kernel_map.gaussian_map(Z, sigma, floor=floor)
    got = mp.transform(Y) @ mp.transform(Y).T
    ref = nystroem_gram(Y, Y, Z, sigma, floor)
    np.testing.assert_allclose(got, ref, atol=1e-8 * np.abs(ref).max())
    # on the landmarks the map is exact (up to the dropped eigen-directions)
    Pz = mp.transform(Z)
    assert np.abs(Pz @ Pz.T - _exact(Z, Z, sigma)).max() < (1e-9 if floor == 0 else 1e-5)


def test_gaussian_map_error_on_held_out_units(data):
    """Inner products against the exact kernel on units that were not landmarks; the error
    shrinks as m grows (Williams & Seeger 2001).  A map without the W^-1/2 whitening (phi = k(Z, x)
    scaled) or with the wrong width is far off: the bounds below fail for it."""
    X, Y, sigma = data
    K = _exact(Y, Y, sigma)
    errs = {}
    for m in (50, 200, 800):
        for method in ("uniform", "kmeans"):
            mp = kernel_map.gaussian_map(kernel_map.landmarks(X, m, method, 3), sigma)
            P = mp.transform(Y)
            errs[m, method] = (float(np.abs(P @ P.T - K).max()), float(np.linalg.norm(P @ P.T - K) / np.linalg.norm(K)))
    for key, (mx, fro) in errs.items():
        print(f"Nystroem {key}: max abs error {mx:.4f}, relative Frobenius {fro:.4f}")
    for method in ("uniform", "kmeans"):
        assert errs[800, method][1] < errs[200, method][1] < errs[50, method][1]
        assert errs[800, method][1] < 0.002
        assert errs[200, method][1] < 0.01
    # the same block with a wrong map is far from the kernel
    Z = kernel_map.landmarks(X, 200, "uniform", 3)
    good = kernel_map.gaussian_map(Z, sigma)
    wrong = kernel_map.KernelMap(Z, good.A, 1.3 * sigma)
    P = wrong.transform(Y)
    assert np.linalg.norm(P @ P.T - K) / np.linalg.norm(K) > 0.1
    kb = good.kernel_block(Y)
    assert np.linalg.norm(kb @ kb.T / 200 - K) / np.linalg.norm(K) > 0.1


def test_kmeans_landmarks_seeded_and_central(data):
    X, _, _ = data
    a = kernel_map.landmarks(X, 30, "kmeans", 5)
    b = kernel_map.landmarks(X, 30, "kmeans", 5)
    assert np.array_equal(a, b)
    # Lloyd's iterations never increase the quantisation error of the seeded start
    start = X[np.sort(np.random.default_rng(5).choice(X.shape[0], 30, replace=False))]

    def qerr(C):
        return float(np.min(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1).mean())

    assert qerr(a) < 0.9 * qerr(start)
    u = kernel_map.landmarks(X, 30, "uniform", 5)
    assert np.array_equal(u, start)  # uniform: the rows, in index order


@pytest.fixture(scope="module")
def learned():
    rng = np.random.default_rng(7)
    n_dom = 4
    lab = (rng.random(400) < 0.5).astype(int)
    dom = np.repeat(np.arange(n_dom), 100)
    X = _clustered(rng, 400, d=8) + 1.5 * lab[:, None] * (np.arange(8) < 2) + rng.normal(size=(n_dom, 8))[dom] * 0.7
    pts, cons = constraints.cross_domain_constraints(lab, dom, 25, rng)
    Xl = X[pts]
    sigma = kernels.median_sigma(Xl, 0)
    K0 = kernels.gaussian(Xl, sigma=sigma)
    u, l = constraints.distance_thresholds(K0, cons)
    lr = itml.learn_kernel(K0, cons, u, l, 1.0, mode="lowrank", rank=20, max_sweeps=30)
    ex = itml.learn_kernel(K0, cons, u, l, 1.0, mode="exact", max_sweeps=10)
    rest = np.delete(X, pts, axis=0)
    return Xl, rest[:150], sigma, lr, ex, rest[150:]  # held-out units; other units (extra landmarks)


@pytest.mark.parametrize("which", ["lowrank", "exact"])
@pytest.mark.parametrize("n_extra", [0, 60])
def test_learned_map_matches_eq9(learned, which, n_extra):
    """phi_L(x).phi_L(y) against LearnedKernel (Eq. 9) on units that were not landmarks: the
    only difference is the Nystroem approximation of the base kernel k0 on the same landmarks,
    so (Eq. 9 - map) equals (k0 - Nystroem k0) entry by entry; a wrong correction breaks it."""
    Xl, Y, sigma, lr, ex, other = learned
    res = lr if which == "lowrank" else ex
    lk = kernels.LearnedKernel.from_result(Xl, sigma, res)
    extra = other[:n_extra] if n_extra else None
    mp = kernel_map.learned_map(lk, extra, floor=1e-10)
    assert mp.kind == "learned" and mp.n_landmarks == Xl.shape[0] + n_extra
    PL = mp.transform(Y)
    eq9 = lk(Y)
    Z = mp.Z
    nys = nystroem_gram(Y, Y, Z, sigma, 1e-10)
    K0 = _exact(Y, Y, sigma)
    err = eq9 - PL @ PL.T
    print(f"learned map ({which}, m={mp.n_landmarks}): max |Eq.9 - map| {np.abs(err).max():.4f}, "
          f"relative Frobenius {np.linalg.norm(err) / np.linalg.norm(eq9):.4f}; Nystroem k0 error "
          f"{np.abs(K0 - nys).max():.4f}")
    np.testing.assert_allclose(err, K0 - nys, atol=1e-6 * np.abs(eq9).max())
    assert np.linalg.norm(err) / np.linalg.norm(eq9) < 0.05
    # the correction matters: the learned kernel is far from k0 here, so a Gaussian map fails
    assert np.linalg.norm(eq9 - K0) / np.linalg.norm(eq9) > 0.1
    # on the kernel-learning points the map gives the learned Gram matrix
    Pl = mp.transform(Xl)
    assert np.abs(Pl @ Pl.T - res.K).max() < 1e-5 * np.abs(res.K).max()


def test_learned_map_duplicate_landmarks(learned):
    """Extra landmarks that repeat kernel-learning points (a singular W) still give a real map:
    the correction is restricted to the range of W^+, so H stays positive semidefinite."""
    Xl, Y, sigma, lr, _, other = learned
    lk = kernels.LearnedKernel.from_result(Xl, sigma, lr)
    mp = kernel_map.learned_map(lk, np.vstack([Xl[:10], other[:20]]))
    PL = mp.transform(Y)
    eq9 = lk(Y)
    assert np.linalg.norm(eq9 - PL @ PL.T) / np.linalg.norm(eq9) < 0.05


def test_learned_correction_is_indefinite(learned):
    """Why the learned map is H^1/2 k(Z, x) and not [phi0; L^T k]: low-rank ITML's W - I has
    negative eigenvalues (similar-pair projections shrink distances), so S = L L^T has no real L."""
    _, _, _, lr, _, _ = learned
    ev = np.linalg.eigvalsh(lr.W - np.eye(lr.W.shape[0]))
    assert ev.min() < 0 < ev.max()


def test_fold_equals_linear_decision(data):
    X, Y, sigma = data
    mp = kernel_map.gaussian_map(kernel_map.landmarks(X, 80, "uniform", 1), sigma)
    w = np.random.default_rng(2).normal(size=mp.dim)
    lin = mp.transform(Y) @ w + 0.3
    folded = kernels.gaussian_decision(Y, mp.Z, mp.fold(w), 0.3, sigma)
    np.testing.assert_allclose(folded, lin, rtol=1e-9, atol=1e-9 * np.abs(lin).max())


def test_bad_arguments(data):
    X, _, sigma = data
    with pytest.raises(InputError, match="landmark method"):
        kernel_map.landmarks(X, 10, "grid")
    with pytest.raises(InputError, match=">= 1"):
        kernel_map.landmarks(X, 0)
    with pytest.raises(InputError, match="floor"):
        kernel_map.gaussian_map(X[:10], sigma, floor=1.5)
    mp = kernel_map.gaussian_map(X[:10], sigma)
    with pytest.raises(InputError, match="weights"):
        mp.fold(np.ones(mp.dim + 1))
    assert kernel_map.landmarks(X[:5], 10).shape == (5, X.shape[1])
