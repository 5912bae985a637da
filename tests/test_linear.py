"""Paper-scale SVMs (REFERENCE 15): LIBLINEAR on a Nystroem map of every training unit, folded
into the kernel-expansion model format; all-units training data; same seed, same bytes."""
import numpy as np
import pytest
from scipy.optimize import minimize
from typer.testing import CliRunner

from fastifkl.cli import app
from fastifkl.errors import InputError
from fastifkl.level import LEVEL_RMS
from fastifkl.parallel import executor
from fastifkl.separator import Separator
from fastifkl.svm import LinearSVM
from fastifkl.training import cfs_for, prepare
from synth import make_corpus, mixture_sets

runner = CliRunner()
SMALL = dict(n_channels=8, per_domain=15, rank=16, max_sweeps=5, solver="liblinear", n_landmarks=60,
             max_train=None, units_per_mixture=None)


def _primal_reference(X, y, C, weights):
    """min_w,b 1/2 (|w|^2 + b^2) + C sum_i c_i max(0, 1 - t_i (w.x_i + b))^2 (LIBLINEAR -s 2 -B 1:
    the bias is the weight of a constant feature 1, so it is regularised), by L-BFGS."""
    t = np.where(y == 1, 1.0, -1.0)
    c = np.where(y == 1, weights[1], weights[0]) * C
    Xb = np.hstack([X, np.ones((X.shape[0], 1))])

    def f(v):
        m = np.maximum(0.0, 1.0 - t * (Xb @ v))
        return 0.5 * v @ v + np.sum(c * m * m), v - 2.0 * Xb.T @ (c * m * t)

    v = minimize(f, np.zeros(Xb.shape[1]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000}).x
    return v[:-1], v[-1]


@pytest.mark.parametrize("first_label", [0, 1])
def test_linear_svm_solves_the_weighted_l2_loss_primal(first_label):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.8 * X[:, 1] + 0.5 * rng.normal(size=300) > 0.7).astype(int)
    y[0] = first_label  # LIBLINEAR orders labels by first appearance: the sign must not depend on it
    svm = LinearSVM(C=0.5, tol=1e-6).fit(X, y)
    n1 = y.sum()
    n0 = y.size - n1
    assert f"-w1 {float(y.size / (2 * n1))!r}" in svm.options_ and "-s 2 -B 1" in svm.options_
    w, b = _primal_reference(X, y, 0.5, {0: y.size / (2 * n0), 1: y.size / (2 * n1)})
    np.testing.assert_allclose(svm.coef_, w, atol=1e-4)
    assert svm.intercept_ == pytest.approx(b, abs=1e-4)
    assert np.mean((svm.decision(X) > 0) == (y == 1)) > 0.85
    # unweighted: a different optimum
    u = LinearSVM(C=0.5, tol=1e-6, class_weight=None).fit(X, y)
    wu, bu = _primal_reference(X, y, 0.5, {0: 1.0, 1: 1.0})
    np.testing.assert_allclose(u.coef_, wu, atol=1e-4)
    assert np.abs(u.coef_ - svm.coef_).max() > 1e-2


def test_linear_svm_one_class_and_bad_input():
    s = LinearSVM().fit(np.ones((5, 3)), np.ones(5, int))
    assert s.constant_ == 1 and np.all(s.decision(np.zeros((2, 3))) == 1.0)
    with pytest.raises(InputError, match="labels"):
        LinearSVM().fit(np.ones((3, 2)), np.array([0, 2, 1]))
    with pytest.raises(InputError, match="C must be"):
        LinearSVM(C=-1).fit(np.eye(2), np.array([0, 1]))
    with pytest.raises(InputError, match="class_weight"):
        LinearSVM(class_weight="auto").fit(np.eye(2), np.array([0, 1]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    train, test = mixture_sets(root)
    return root, train, test


@pytest.fixture(scope="module")
def data(corpus):
    _, train, _ = corpus
    return prepare(train, None, cfs=cfs_for(8), units_per_mixture=None, seed=0, level_rms=LEVEL_RMS,
                   calib_per_mixture=8)


def test_all_units_are_every_frame_but_the_calibration_ones(corpus, data):
    _, train, _ = corpus
    from fastifkl.training import ideal_mask

    frames, pos = 0, np.zeros(8, np.int64)
    for e in train.entries:
        if e.split != "kernel":
            mx = train.mixture(e)
            m = ideal_mask(mx.speech, mx.noise, cfs_for(8), -10.0)
            frames += m.shape[1]
            pos += m.astype(np.int64).sum(1)
    n_svm = data.info["svm_mixtures"]
    for c in range(8):
        su, cu = data.svm_units[c], data.calib_units[c]
        assert su.X.dtype == np.float32 and su.y.size == frames - 8 * n_svm and cu.y.size == 8 * n_svm
        assert int(su.y.sum()) + int(cu.y.sum()) == pos[c]  # together: every frame, once
    assert data.kernel_units[0].y.size > 0


@pytest.mark.parametrize("kernel", ["gaussian", "learned"])
def test_folded_decision_equals_the_linear_model_on_the_map(data, kernel):
    sep = Separator(kernel=kernel, **SMALL).fit_data(data, check=True)
    for c, info in enumerate(sep.channel_info_):
        assert info["n_train"] == data.svm_units[c].y.size  # every unit
        assert info["fold_check_max_abs_err"] < 1e-8
        assert sep.points_[c].shape[0] == (60 if kernel == "gaussian" else max(60, info.get("n_landmarks", 0)))
        assert "-s 2 -B 1" in info["solver"]
        if kernel == "learned":
            assert "fallback" not in info
    # the linear model separates the units it was trained on better than chance in every channel
    assert min(i["calib_accuracy"] for i in sep.channel_info_) > 0.5


def test_kmeans_landmarks_and_params(data):
    sep = Separator(kernel="gaussian", landmark_method="kmeans", **SMALL).fit_data(data)
    uni = Separator(kernel="gaussian", **SMALL).fit_data(data)
    assert not np.array_equal(sep.points_[0], uni.points_[0])
    with pytest.raises(InputError, match="solver"):
        Separator(solver="sgd").check_params()
    with pytest.raises(InputError, match="landmark_method"):
        Separator(landmark_method="grid").check_params()
    with pytest.raises(InputError, match="needs solver='liblinear'"):
        Separator(max_train=None).check_params()


def test_save_load_keeps_the_decision(corpus, data, tmp_path):
    """The folded coefficients of a map can be large (W^-1/2): float16 points must still give the
    same mask."""
    _, _, test = corpus
    sep = Separator(kernel="learned", **SMALL).fit_data(data)
    back = Separator.load(sep.save(tmp_path / "m.fkl"))
    assert back.get_params() == sep.get_params()
    x = test.mixture(test.entries[0]).mixture
    d1, d2 = sep.decision_function(x), back.decision_function(x)
    print("float16 points: mask agreement", np.mean((d1 > 0) == (d2 > 0)), "max |dd|", np.abs(d1 - d2).max())
    assert np.mean((d1 > 0) == (d2 > 0)) > 0.99


def test_model_files_are_deterministic_serial_processes_dask(data, tmp_path):
    a = Separator(kernel="learned", **SMALL).fit_data(data).save(tmp_path / "a.fkl").read_bytes()
    with executor(workers=2) as ex:
        c = Separator(kernel="learned", **SMALL).fit_data(data, executor=ex).save(tmp_path / "c.fkl").read_bytes()
    assert a == c
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client, executor(scheduler=client) as ex:
        d = Separator(kernel="learned", **SMALL).fit_data(data, executor=ex).save(tmp_path / "d.fkl").read_bytes()
    assert a == d


def test_cli_train_liblinear_all_units_and_info(corpus, tmp_path):
    _, train, _ = corpus
    model = tmp_path / "g.fkl"
    r = runner.invoke(app, ["train", str(train.directory), "-o", str(model), "--channels", "8", "--kernel", "gaussian",
                            "--solver", "liblinear", "--landmarks", "50", "--all-units", "-q"])
    assert r.exit_code == 0, r.output
    sep = Separator.load(model)
    assert sep.solver == "liblinear" and sep.n_landmarks == 50 and sep.max_train is None
    assert all(z.shape[0] == 50 for z in sep.points_)
    r = runner.invoke(app, ["info", str(model)])
    assert r.exit_code == 0 and "liblinear" in r.output and "50 landmarks" in r.output and "units per channel: all" \
        in r.output
    r = runner.invoke(app, ["train", str(train.directory), "-o", str(tmp_path / "x.fkl"), "--all-units", "-q"])
    assert r.exit_code == 2 and "liblinear" in r.output
