"""ChannelSVM: our BLAS decision values against LIBSVM's own predict and scikit-learn's SVC."""
import numpy as np
import pytest

from fastifkl.errors import InputError, ModelError
from fastifkl.svm import ChannelSVM, _libsvm_decision, _train_libsvm, balanced_subsample, prior_subsample


def _gauss(a, b, sigma):
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-np.maximum(d2, 0.0) / (2.0 * sigma * sigma))


def _data(seed, n=400, m=250, d=8, shift=0.8, first_label=None):
    """Two overlapping Gaussian classes in d dimensions (not separable: bounded and free SVs)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int8)
    if first_label is not None:
        y[0] = first_label
    x = rng.normal(size=(n, d))
    x[:, 0] += shift * (2 * y - 1)
    z = rng.normal(size=(m, d)) * 1.3
    sigma = np.sqrt(d)
    return _gauss(x, x, sigma), y, _gauss(z, x, sigma)


@pytest.mark.parametrize("seed,first_label,C", [(0, 0, 1.0), (1, 1, 1.0), (2, 0, 10.0), (3, 1, 0.1)])
def test_decision_matches_libsvm_predict(seed, first_label, C):
    gram, y, k_test = _data(seed, first_label=first_label)
    svm = ChannelSVM(C=C).fit(gram, y)
    model, prob = _train_libsvm(gram, y, C, 1e-3, 200.0)
    ref_labels, ref_values = _libsvm_decision(model, k_test)
    sign = 1.0 if model.get_labels()[0] == 1 else -1.0
    ours = svm.decision(k_test[:, svm.support_])
    assert svm.support_.size == model.get_nr_sv()
    assert 0 < svm.support_.size < y.size
    np.testing.assert_allclose(ours, sign * ref_values, rtol=1e-9, atol=1e-9 * np.abs(ref_values).max())
    np.testing.assert_array_equal(svm.predict(k_test[:, svm.support_]), ref_labels)
    # the model must actually have learnt something: training accuracy far above chance
    train_pred = svm.predict(gram[:, svm.support_])
    assert np.mean(train_pred == y) > 0.75
    del prob


def test_sign_convention_independent_of_label_order():
    """Swapping the meaning of the labels must exactly negate the decision values."""
    gram, y, k_test = _data(5)
    a = ChannelSVM(C=2.0, tol=1e-8).fit(gram, y)
    b = ChannelSVM(C=2.0, tol=1e-8).fit(gram, 1 - y)
    np.testing.assert_array_equal(a.support_, b.support_)
    np.testing.assert_allclose(a.decision(k_test[:, a.support_]), -b.decision(k_test[:, b.support_]), atol=1e-7)
    # label 1 gets positive decision values on its own (well-separated) training points
    gram, y, _ = _data(6, shift=3.0)
    s = ChannelSVM(C=1.0).fit(gram, y)
    dec = s.decision(gram[:, s.support_])
    assert np.mean(dec[y == 1] > 0) > 0.95 and np.mean(dec[y == 0] < 0) > 0.95


def test_agrees_with_sklearn_svc():
    sklearn_svm = pytest.importorskip("sklearn.svm")
    gram, y, k_test = _data(7, n=500)
    ours = ChannelSVM(C=1.0, tol=1e-8).fit(gram, y)
    ref = sklearn_svm.SVC(kernel="precomputed", C=1.0, tol=1e-8).fit(gram, y)
    np.testing.assert_array_equal(np.sort(ref.support_), ours.support_)
    dec_ref = ref.decision_function(k_test)  # sklearn: positive -> classes_[1] == 1
    dec = ours.decision(k_test[:, ours.support_])
    np.testing.assert_allclose(dec, dec_ref, atol=1e-6 * np.abs(dec_ref).max())
    np.testing.assert_array_equal(ours.predict(k_test[:, ours.support_]), ref.predict(k_test))


def test_single_class_is_constant():
    gram, y, k_test = _data(8)
    for label in (0, 1):
        s = ChannelSVM().fit(gram, np.full(y.size, label))
        assert s.constant_ == label and s.support_.size == 0
        np.testing.assert_array_equal(s.predict(np.zeros((5, 0))), np.full(5, label))
        back = ChannelSVM.from_arrays(s.to_arrays())
        assert back.constant_ == label
        np.testing.assert_array_equal(back.predict(np.zeros((3, 0))), np.full(3, label))


def test_round_trip_arrays_and_validation():
    gram, y, k_test = _data(9)
    s = ChannelSVM(C=3.0).fit(gram, y)
    arrays = s.to_arrays()
    back = ChannelSVM.from_arrays(arrays)
    assert back.C == 3.0 and back.constant_ is None and back.n_train_ == y.size
    np.testing.assert_array_equal(back.decision(k_test[:, s.support_]), s.decision(k_test[:, s.support_]))
    bad = dict(arrays)
    del bad["dual_coef"]
    with pytest.raises(ModelError):
        ChannelSVM.from_arrays(bad)
    bad = dict(arrays, dual_coef=arrays["dual_coef"][:-1])
    with pytest.raises(ModelError):
        ChannelSVM.from_arrays(bad)
    bad = dict(arrays, support=arrays["support"] + y.size)
    with pytest.raises(ModelError):
        ChannelSVM.from_arrays(bad)
    bad = dict(arrays, intercept=np.array([np.nan]))
    with pytest.raises(ModelError):
        ChannelSVM.from_arrays(bad)
    with pytest.raises(InputError):
        s.decision(k_test)  # all training columns instead of the support columns
    with pytest.raises(InputError):
        ChannelSVM().fit(gram, y + 1)
    with pytest.raises(InputError):
        ChannelSVM().fit(gram[:, :-1], y)
    with pytest.raises(InputError):
        ChannelSVM(C=-1.0).fit(gram, y)
    with pytest.raises(InputError):
        ChannelSVM().decision(k_test)


def test_underflowing_kernel_entries_are_kept():
    """Exact zeros in the Gram matrix (Gaussian underflow) must not shift LIBSVM's columns."""
    rng = np.random.default_rng(10)
    n, d = 300, 6
    y = (rng.random(n) < 0.5).astype(np.int8)
    x = rng.normal(size=(n, d))
    x[:, 0] += 0.8 * (2 * y - 1)
    x[::2, 1] += 200.0  # two far-apart clusters: cross-cluster kernel values underflow to 0.0
    z = rng.normal(size=(120, d))
    z[::3, 1] += 200.0
    sigma = np.sqrt(d)
    gram, k_test = _gauss(x, x, sigma), _gauss(z, x, sigma)
    assert np.mean(gram == 0.0) > 0.45 and np.mean(k_test == 0.0) > 0.3
    s = ChannelSVM(C=1.0).fit(gram, y)
    model, prob = _train_libsvm(gram, y, 1.0, 1e-3, 200.0)
    _, ref = _libsvm_decision(model, k_test)
    sign = 1.0 if model.get_labels()[0] == 1 else -1.0
    np.testing.assert_allclose(s.decision(k_test[:, s.support_]), sign * ref, rtol=1e-9, atol=1e-12)
    # independent check (sklearn's dense LIBSVM copy): a dropped zero would shift columns
    tight = ChannelSVM(C=1.0, tol=1e-8).fit(gram, y)
    ref_sk = pytest.importorskip("sklearn.svm").SVC(kernel="precomputed", C=1.0, tol=1e-8).fit(gram, y)
    np.testing.assert_array_equal(np.sort(ref_sk.support_), tight.support_)
    dec_sk = ref_sk.decision_function(k_test)
    np.testing.assert_allclose(tight.decision(k_test[:, tight.support_]), dec_sk, atol=1e-6 * np.abs(dec_sk).max())


# ------------------------------------------------------------------------------------------
# balanced subsampling
# ------------------------------------------------------------------------------------------
def test_balanced_subsample_properties():
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.2).astype(np.int8)  # 20% ones
    idx = balanced_subsample(labels, 1000, np.random.default_rng(42))
    assert idx.size == 1000 and idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    np.testing.assert_array_equal(np.bincount(labels[idx]), [500, 500])
    # deterministic under the seed, different under another seed
    np.testing.assert_array_equal(idx, balanced_subsample(labels, 1000, np.random.default_rng(42)))
    np.testing.assert_array_equal(idx, balanced_subsample(labels, 1000, 42))
    assert not np.array_equal(idx, balanced_subsample(labels, 1000, 43))
    # a rare class is taken whole and the other fills the rest
    labels = np.zeros(3000, dtype=np.int8)
    labels[rng.choice(3000, 120, replace=False)] = 1
    idx = balanced_subsample(labels, 1000, 1)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [880, 120])
    # odd cap: sizes differ by at most one
    idx = balanced_subsample((np.arange(999) % 2).astype(int), 101, 3)
    counts = np.bincount((np.arange(999) % 2)[idx])
    assert counts.sum() == 101 and abs(counts[0] - counts[1]) == 1
    # three classes, no cap, cap above n
    lab3 = np.arange(30) % 3
    np.testing.assert_array_equal(np.bincount(lab3[balanced_subsample(lab3, 9, 0)]), [3, 3, 3])
    np.testing.assert_array_equal(balanced_subsample(lab3, None, 0), np.arange(30))
    np.testing.assert_array_equal(balanced_subsample(lab3, 100, 0), np.arange(30))
    # a single class
    np.testing.assert_array_equal(np.bincount(np.ones(50, int)[balanced_subsample(np.ones(50, int), 10, 0)]), [0, 10])
    with pytest.raises(InputError):
        balanced_subsample(lab3, 0, 0)
    with pytest.raises(InputError):
        balanced_subsample(lab3.reshape(3, 10), 5, 0)


def test_balanced_subsample_is_uniform_within_class():
    """Every point of a class is equally likely to be chosen (chi-square-ish bound)."""
    labels = np.r_[np.zeros(40, int), np.ones(10, int)]
    counts = np.zeros(50)
    for seed in range(2000):
        counts[balanced_subsample(labels, 20, seed)] += 1
    np.testing.assert_array_equal(counts[40:], 2000)  # all 10 ones always taken
    p = counts[:40] / 2000  # each zero chosen with probability 10/40
    assert np.all(np.abs(p - 0.25) < 0.06)


def test_prior_subsample_keeps_the_wanted_class_mix():
    labels = np.r_[np.zeros(3000, int), np.ones(3000, int)]  # a class-balanced pool
    idx = prior_subsample(labels, 2000, 0.3, 7)
    assert idx.size == 2000 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [1400, 600])
    np.testing.assert_array_equal(idx, prior_subsample(labels, 2000, 0.3, 7))  # seeded
    # the rarer class limits the sample: 100 ones at prior 0.25 -> 300 zeros, not 1900
    lab = np.r_[np.zeros(3000, int), np.ones(100, int)]
    np.testing.assert_array_equal(np.bincount(lab[prior_subsample(lab, 2000, 0.25, 0)]), [300, 100])
    # no cap: as many as the mix allows
    np.testing.assert_array_equal(np.bincount(labels[prior_subsample(labels, None, 0.75, 0)]), [1000, 3000])
    # one class present, or a degenerate prior: falls back to the balanced sample
    np.testing.assert_array_equal(prior_subsample(np.ones(50, int), 10, 0.3, 0),
                                  balanced_subsample(np.ones(50, int), 10, 0))
    np.testing.assert_array_equal(prior_subsample(labels, 10, 0.0, 0), balanced_subsample(labels, 10, 0))
    with pytest.raises(InputError, match="prior"):
        prior_subsample(labels, 10, 1.5, 0)


# ---- Platt scaling ---------------------------------------------------------------------------
def _platt_data(seed, n=3000, A=-1.7, B=0.4):
    """Decision values and labels drawn from a known sigmoid P(1 | f) = 1 / (1 + exp(A f + B))."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(A * f + B))).astype(np.int8)
    return f, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_platt_fit_is_the_minimum_scipy_finds(seed):
    from scipy.optimize import minimize

    from fastifkl.svm import platt_fit, platt_objective

    f, y = _platt_data(seed)
    A, B = platt_fit(f, y)
    ref = minimize(lambda ab: platt_objective(ab[0], ab[1], f, y), x0=[0.0, 0.0], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert platt_objective(A, B, f, y) <= ref.fun + 1e-9
    np.testing.assert_allclose([A, B], ref.x, atol=1e-4)
    # and the objective is Platt's cross-entropy against the smoothed targets, written out
    n1, n0 = int(y.sum()), int((1 - y).sum())
    t = np.where(y > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    p = 1 / (1 + np.exp(A * f + B))
    assert platt_objective(A, B, f, y) == pytest.approx(-np.sum(t * np.log(p) + (1 - t) * np.log(1 - p)), rel=1e-10)


def test_platt_fit_matches_scikit_learn_and_recovers_the_sigmoid():
    calibration = pytest.importorskip("sklearn.calibration")
    from fastifkl.svm import platt_fit

    f, y = _platt_data(5, n=20000)
    A, B = platt_fit(f, y)
    a_ref, b_ref = calibration._sigmoid_calibration(f, y)  # scikit-learn's own Platt fit (L-BFGS)
    np.testing.assert_allclose([A, B], [a_ref, b_ref], rtol=1e-3, atol=1e-4)
    assert A == pytest.approx(-1.7, abs=0.1) and B == pytest.approx(0.4, abs=0.1)


def test_platt_fit_degenerate_inputs_stay_finite():
    import warnings

    from fastifkl.svm import platt_fit, platt_posterior

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or division warnings
        f = np.concatenate([rng.uniform(1, 50, 100), rng.uniform(-50, -1, 100)])  # separable, huge margins
        y = (f > 0).astype(int)
        A, B = platt_fit(f, y)
        assert np.isfinite([A, B]).all() and A < 0
        p = platt_posterior(f, A, B)
        # the smoothed targets keep the slope finite: p > 1/2 on the positive side, near 1 far out
        assert np.all(p[y == 1] > 0.5) and np.all(p[y == 0] < 0.5)
        assert p[np.argmax(f)] > 0.999 and p[np.argmin(f)] < 0.001
        # one class only: the posterior is Platt's smoothed target everywhere
        A, B = platt_fit(rng.normal(size=50), np.ones(50))
        np.testing.assert_allclose(platt_posterior(np.linspace(-3, 3, 7), A, B), 51 / 52, atol=1e-3)
        # constant decision values: the posterior is the mean smoothed target
        A, B = platt_fit(np.zeros(40), np.r_[np.ones(10), np.zeros(30)])
        assert platt_posterior(0.0, A, B) == pytest.approx((10 * 11 / 12 + 30 / 32) / 40, abs=1e-6)
        assert np.all(np.isfinite(platt_posterior(np.array([-1e300, 1e300]), -2.0, 0.0)))
    with pytest.raises(InputError):
        platt_fit(np.zeros(0), np.zeros(0))
    with pytest.raises(InputError):
        platt_fit(np.array([np.nan, 1.0]), np.array([0, 1]))


def test_platt_posterior_formula_and_broadcasting():
    from fastifkl.svm import platt_posterior

    d = np.random.default_rng(1).normal(size=(3, 20))
    A = np.array([[-1.0], [-2.0], [-0.5]])
    B = np.array([[0.0], [0.3], [-0.2]])
    np.testing.assert_allclose(platt_posterior(d, A, B), 1 / (1 + np.exp(A * d + B)), rtol=1e-13)
