"""Leave-one-noise-out selection (fastifkl.selection, REFERENCE 14) on a small synthetic corpus."""
import numpy as np
import pytest
from typer.testing import CliRunner

from fastifkl import selection
from fastifkl.cli import app
from fastifkl.corpus import MixtureSet, scan, select_noises
from fastifkl.kernels import gaussian_decision
from fastifkl.level import LEVEL_RMS
from fastifkl.masks import confusion, pooled_scores
from fastifkl.parallel import executor
from fastifkl.separator import Separator
from fastifkl.training import ChannelUnits, cfs_for, prepare
from synth import make_corpus

runner = CliRunner()
SMALL = dict(n_channels=8, per_domain=15, rank=16, max_sweeps=5, solver="liblinear", n_landmarks=40,
             max_train=None, units_per_mixture=None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    sp = scan(root / "speech", "speech")
    nz = select_noises(scan(root / "noise", "noise"), ["white", "low", "hum"])
    train = MixtureSet.create([s for s in sp if s.split != "test"], nz, root / "train_set", seed=0)
    return root, train


@pytest.fixture(scope="module")
def data(corpus):
    return prepare(corpus[1], None, cfs=cfs_for(8), units_per_mixture=None, seed=0, level_rms=LEVEL_RMS,
                   calib_per_mixture=8)


def test_default_grids_have_the_same_budget():
    g, k = selection.GRIDS["gaussian"], selection.GRIDS["learned"]
    assert selection.budget(g) == selection.budget(k) == 7
    assert selection.budget({"C": (1, 10), "gamma": (1, 1, 3)}) == 3


def test_folds_hold_out_one_noise_and_share_the_subsample(data):
    p1 = Separator(kernel="gaussian", **SMALL).get_params()
    p2 = Separator(kernel="learned", C=3.0, **SMALL).get_params()
    j1 = list(selection.lono_jobs(data, p1, [0, 4], 100, 0))
    j2 = list(selection.lono_jobs(data, p2, [0, 4], 100, 0))
    assert [(j["fold"], j["channel"]) for j in j1] == [(d, c) for d in range(3) for c in (0, 4)]
    for a, b in zip(j1, j2):
        d, c = a["fold"], a["channel"]
        assert np.all(a["svm"].domain != d) and np.all(a["kernel_units"].domain != d)
        assert a["svm"].y.size == min(100, int(np.sum(data.svm_units[c].domain != d)))
        np.testing.assert_array_equal(a["svm"].X, b["svm"].X)  # the same units for every setting and kernel
        assert a["test_y"].size == int(np.sum(data.svm_units[c].domain == d))


def _without(units, d):
    keep = units.domain != d
    return ChannelUnits(units.X[keep], units.y[keep], units.domain[keep])


@pytest.mark.parametrize("kernel", ["gaussian", "learned"])
def test_lono_score_equals_separators_trained_without_each_noise(data, kernel):
    """The score by hand: per held-out noise, a Separator fitted on TrainingData without that
    noise, scored on its units; pooled over channels, averaged over the noises."""
    from dataclasses import replace

    sep = Separator(kernel=kernel, **SMALL)
    with executor(workers=1) as ex:
        got = selection.lono_score(sep, data, list(range(8)), executor=ex, max_units=None)
    want = {}
    for d, name in enumerate(data.domains):
        sub = replace(data, svm_units=[_without(u, d) for u in data.svm_units],
                      kernel_units=[_without(u, d) for u in data.kernel_units], calib_units=None)
        s = Separator(kernel=kernel, **SMALL).fit_data(sub)
        counts = []
        for c in range(8):
            u = data.svm_units[c]
            t = u.domain == d
            X = (u.X[t].astype(np.float64) - data.mean[c]) / data.std[c]
            d_c = gaussian_decision(X, s.points_[c], s.coef_[c], s.bias_[c], s.sigma_[c])
            counts.append(confusion(d_c > 0, u.y[t]))
        want[name] = pooled_scores(counts)["hit_fa"]
    assert got["per_fold"] == pytest.approx(want, abs=1e-12)
    assert got["hit_fa"] == pytest.approx(np.mean(list(want.values())))
    assert got["worst"] == pytest.approx(min(want.values()))
    assert got["fits"] == 3 * 8


def test_select_is_a_coordinate_search_and_sets_the_choice(data):
    sep = Separator(kernel="gaussian", **SMALL)
    grid = {"C": (1.0, 0.01), "sigma_scale": (1.0, 0.3)}
    with executor(workers=1) as ex:
        rec = selection.select(sep, data, executor=ex, grid=grid, channel_step=2, max_units=300, confirm=True)
    assert rec["settings_scored"] == rec["budget"] == 3 and rec["channels"] == [0, 2, 4, 6]
    scores = {tuple(t["params"].values()): t["hit_fa"] for t in rec["trials"]}
    c_best = 0.01 if scores[(0.01, 1.0)] > scores[(1.0, 1.0)] else 1.0  # ties keep the start
    s_best = 0.3 if scores[(c_best, 0.3)] > scores[(c_best, 1.0)] else 1.0
    assert rec["chosen"] == {"C": c_best, "sigma_scale": s_best} and (sep.C, sep.sigma_scale) == (c_best, s_best)
    assert rec["score"] == scores[(c_best, s_best)] == max(scores.values())
    assert rec["confirmed"]["hit_fa"] > 0 and set(rec["confirmed"]["per_fold"]) == set(data.domains)


def test_cli_train_select_lono_records_the_grid(corpus, tmp_path):
    _, train = corpus
    model = tmp_path / "g.fkl"
    r = runner.invoke(app, ["train", str(train.directory), "-o", str(model), "--channels", "8", "--kernel", "gaussian",
                            "--solver", "liblinear", "--landmarks", "40", "--all-units", "--select", "lono",
                            "--select-channel-step", "4", "--select-max-units", "300", "-q"])
    assert r.exit_code == 0, r.output
    sep = Separator.load(model)
    rec = sep.meta_["selection"]
    assert rec["budget"] == 7 and rec["chosen"] == {k: getattr(sep, k) for k in rec["grid"]}
    assert len(rec["trials"]) <= 7 and rec["confirmed"] is not None
    r = runner.invoke(app, ["info", str(model)])
    assert r.exit_code == 0 and "selection: leave-one-noise-out" in r.output and "chosen" in r.output
