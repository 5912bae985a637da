"""The Separator end to end on a small synthetic corpus: training, folding of the learned
kernel into the SVM, model files, determinism (serial, processes, Dask), CLI workflow."""
import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fastifkl.cli import app
from fastifkl.corpus import MixtureSet
from fastifkl.errors import InputError, ModelError
from fastifkl.level import LEVEL_RMS
from fastifkl.parallel import executor
from fastifkl.separator import Separator
from fastifkl.training import prepare
from synth import make_corpus, mixture_sets

runner = CliRunner()
SMALL = dict(n_channels=8, per_domain=15, max_train=120, units_per_mixture=15, rank=16, max_sweeps=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("corpus"))
    train, test = mixture_sets(root)
    return root, train, test


@pytest.fixture(scope="module")
def data(corpus):
    _, train, _ = corpus
    from fastifkl.training import cfs_for

    return prepare(train, None, cfs=cfs_for(8), units_per_mixture=15, seed=0, level_rms=LEVEL_RMS, calib_per_mixture=8)


def test_prepare_uses_kernel_split_and_balances(data):
    assert data.info == {"mixtures": 15, "kernel_mixtures": 6, "svm_mixtures": 9}
    assert data.domains == ["hum", "low", "white"]
    for cu in data.svm_units:
        assert cu.X.shape[1] == 195 and cu.X.shape[0] == cu.y.size
        assert np.all(np.isfinite(cu.X))
    assert data.mean.shape == (8, 195) and np.all(data.std > 0)


def test_prepare_counts_the_ibm_prior_of_the_svm_mixtures(corpus, data):
    from fastifkl.training import cfs_for, ideal_mask

    _, train, _ = corpus
    want = np.zeros((8, 2), dtype=np.int64)
    for e in train.entries:
        if e.split != "kernel":
            mx = train.mixture(e)
            m = ideal_mask(mx.speech, mx.noise, cfs_for(8), -10.0).astype(np.int64)
            want += np.stack([(1 - m).sum(1), m.sum(1)], axis=1)
    np.testing.assert_array_equal(data.class_counts, want)


def test_natural_prior_training_sample_follows_the_counts(data):
    sep = Separator(kernel="gaussian", svm_prior="natural", **SMALL).fit_data(data)
    for c, info in enumerate(sep.channel_info_):
        n0, n1 = data.class_counts[c]
        if n1 and n0:
            assert abs(info["n_pos"] / info["n_train"] - n1 / (n0 + n1)) < 0.02
    with pytest.raises(InputError, match="svm_prior"):
        Separator(svm_prior="equal").fit_data(data)


@pytest.mark.parametrize("kernel", ["gaussian", "learned"])
def test_folded_decision_equals_svm_on_its_kernel(data, kernel):
    sep = Separator(kernel=kernel, **SMALL).fit_data(data, check=True)
    for info in sep.channel_info_:
        assert info["fold_check_max_abs_err"] < 1e-8
        if kernel == "learned":
            assert "fallback" not in info and info["n_landmarks"] > 0


def test_learned_kernel_exact_and_lowrank_modes_both_train(data):
    for mode in ("exact", "lowrank"):
        sep = Separator(kernel="learned", itml_mode=mode, **{**SMALL, "n_channels": 8}).fit_data(data, check=True)
        assert max(i["fold_check_max_abs_err"] for i in sep.channel_info_) < 1e-8


def test_itml_order_random_is_seeded(data):
    """The random projection order follows the seed (same seed same model, other seed or the
    given order another kernel); a bad order is one clear error."""
    kw = {**SMALL, "n_channels": 8, "kernel": "learned", "itml_mode": "exact"}
    a = Separator(itml_order="random", **kw).fit_data(data)
    b = Separator(itml_order="random", **kw).fit_data(data)
    g = Separator(itml_order="given", **kw).fit_data(data)
    same = all(np.array_equal(x, y) for x, y in zip(a.coef_, b.coef_))
    assert same
    assert any(x.shape != y.shape or not np.allclose(x, y) for x, y in zip(a.coef_, g.coef_))
    with pytest.raises(InputError, match="itml_order"):
        Separator(itml_order="shuffled").check_params()


def test_params_conventions():
    s = Separator(C=2.0)
    assert s.get_params()["C"] == 2.0
    s.set_params(gamma=0.5)
    assert s.gamma == 0.5
    with pytest.raises(InputError, match="no parameter"):
        s.set_params(bogus=1)
    with pytest.raises(InputError, match="kernel must be"):
        Separator(kernel="poly").check_params()


def test_save_load_roundtrip_and_masks(corpus, data, tmp_path):
    _, _, test = corpus
    sep = Separator(kernel="learned", **SMALL).fit_data(data)
    path = sep.save(tmp_path / "m.fkl")
    back = Separator.load(path)
    assert back.get_params() == sep.get_params()
    mx = test.mixture(test.entries[0])
    d1 = sep.decision_function(mx.mixture)
    d2 = back.decision_function(mx.mixture)
    # float16 storage of the points (and the float32 kernel of a loaded model) moves decisions
    # only slightly
    assert back.points_[0].dtype == np.float32
    assert np.mean((d1 > 0) == (d2 > 0)) > 0.99
    assert np.max(np.abs(d1 - d2)) < 0.05 * (np.max(np.abs(d1)) + 1e-12) + 1e-3
    y, mask = back.separate(mx.mixture, output="binary", return_mask=True)
    assert y.shape == mx.mixture.shape and mask.shape == d2.shape and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, (d2 > 0).astype(np.uint8))
    # the default output: the ratio mask of the calibrated posteriors, from the same decision values
    assert back.calibrated and back.platt_.shape == (8, 2) and np.all(back.platt_[:, 0] < 0)
    np.testing.assert_array_equal(back.platt_, sep.platt_)
    y2, soft, d3 = back.separate(mx.mixture, return_mask=True, return_decision=True)
    np.testing.assert_array_equal(d3, d2)
    p = 1.0 / (1.0 + np.exp(back.platt_[:, :1] * d2 + back.platt_[:, 1:]))
    np.testing.assert_allclose(soft, np.maximum(p ** back.mask_beta, 10 ** (back.mask_floor_db / 20)), rtol=1e-12)
    assert y2.shape == y.shape and not np.array_equal(y2, y)
    # the float32 kernel path agrees with the float64 one on the same (loaded) points
    from fastifkl.kernels import gaussian_decision

    X = np.random.default_rng(3).standard_normal((50, 195))
    c = 3
    d32 = gaussian_decision(X, back.points_[c], back.coef_[c], back.bias_[c], back.sigma_[c])
    d64 = gaussian_decision(X, back.points_[c].astype(np.float64), back.coef_[c], back.bias_[c], back.sigma_[c])
    np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=1e-4 * np.abs(back.coef_[c]).sum())


@pytest.mark.parametrize("kernel", ["gaussian"])
def test_mask_does_not_depend_on_the_input_level(corpus, data, kernel):
    """The same recording 20 dB quieter or louder gives the same binary mask (<= 1 % of units)."""
    _, _, test = corpus
    sep = Separator(kernel=kernel, **SMALL).fit_data(data)
    x = test.mixture(test.entries[0]).mixture
    d0 = sep.decision_function(x)
    for db in (-20.0, 20.0):
        d = sep.decision_function(10 ** (db / 20) * x)
        assert np.mean((d > 0) != (d0 > 0)) <= 0.01
        np.testing.assert_allclose(d, d0, atol=1e-6 * np.abs(d0).max())
    # the test can fail: analysed without following the level (the gain of the unscaled input),
    # the features move and so does the mask
    d_fixed = sep.decision_function(10.0 * x, gain=sep.analysis_gain(x))
    assert np.mean((d_fixed > 0) != (d0 > 0)) > 0.01


def test_training_data_must_match_the_level_setting(data):
    with pytest.raises(InputError, match="level_rms"):
        Separator(kernel="gaussian", level_rms=None, **SMALL).fit_data(data)


def test_training_data_must_match_the_pitch_tracker(data):
    assert data.pitch_method == "learned"  # prepare's default: the default tracker
    with pytest.raises(InputError, match="pitch_method"):
        Separator(kernel="gaussian", pitch_method="correlogram", **SMALL).fit_data(data)
    with pytest.raises(InputError, match="pitch_method must be one of"):
        Separator(pitch_method="crepe").check_params()
    assert Separator().pitch_method == "learned" and "pitch_method" in Separator().get_params()


def _spy_pitch(monkeypatch):
    """Record the ``method`` of every fastifkl.pitch.track call (the separator and the block
    engine import it at call time)."""
    import fastifkl.pitch as pitch_mod

    calls = []
    original = pitch_mod.track

    def spy(*args, **kwargs):
        calls.append(kwargs.get("method", "<default>"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pitch_mod, "track", spy)
    return calls


def test_model_separates_with_the_tracker_it_was_trained_with(corpus, data, tmp_path, monkeypatch):
    """A model records its pitch tracker in the file; whole-file and block-wise separation use
    it; a file without the record (trained before issue 19) loads as the correlogram tracker."""
    _, _, test = corpus
    x = test.mixture(test.entries[0]).mixture
    path = Separator(kernel="gaussian", **SMALL).fit_data(data).save(tmp_path / "learned.fkl")
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
    assert meta["params"]["pitch_method"] == "learned" and meta["training"]["pitch_method"] == "learned"
    sep = Separator.load(path)
    assert sep.pitch_method == "learned"
    calls = _spy_pitch(monkeypatch)
    y_whole = sep.separate(x, block_seconds=None)
    assert calls == ["learned"]
    y_block = sep.separate(x, block_seconds=1.0)
    assert len(calls) > 2 and set(calls) == {"learned"}
    np.testing.assert_allclose(y_block, y_whole, atol=1e-4 * np.sqrt(np.mean(y_whole ** 2)))
    # the same file without the record: the correlogram tracker, and another output
    old_params = {k: v for k, v in meta["params"].items() if k != "pitch_method"}
    _rewrite_meta(path, tmp_path / "old.fkl", params=old_params)
    old = Separator.load(tmp_path / "old.fkl")
    assert old.pitch_method == "correlogram"
    calls.clear()
    y_old = old.separate(x, block_seconds=None)
    old.separate(x, block_seconds=1.0)
    assert set(calls) == {"correlogram"}
    assert np.max(np.abs(y_old - y_whole)) > 1e-6
    r = runner.invoke(app, ["info", str(tmp_path / "old.fkl")])
    assert r.exit_code == 0 and "pitch tracker: correlogram (not recorded" in r.output
    # an unknown tracker in the file is a one-line ModelError
    _rewrite_meta(path, tmp_path / "bad.fkl", params={**meta["params"], "pitch_method": "crepe"})
    with pytest.raises(ModelError, match="unknown pitch tracker 'crepe'"):
        Separator.load(tmp_path / "bad.fkl")


def test_model_files_are_deterministic_serial_processes_dask(data, tmp_path):
    a = Separator(kernel="learned", **SMALL).fit_data(data).save(tmp_path / "a.fkl").read_bytes()
    b = Separator(kernel="learned", **SMALL).fit_data(data).save(tmp_path / "b.fkl").read_bytes()
    assert a == b
    with executor(workers=2) as ex:
        c = Separator(kernel="learned", **SMALL).fit_data(data, executor=ex).save(tmp_path / "c.fkl").read_bytes()
    assert a == c
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client, executor(scheduler=client) as ex:
        d = Separator(kernel="learned", **SMALL).fit_data(data, executor=ex).save(tmp_path / "d.fkl").read_bytes()
    assert a == d


def _rewrite_meta(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename == "meta.json":
                meta = json.loads(buf)
                meta.update(changes)
                buf = json.dumps(meta).encode()
            zout.writestr(item, buf)


def test_bad_model_files(data, tmp_path):
    good = Separator(kernel="gaussian", **SMALL).fit_data(data).save(tmp_path / "good.fkl")
    raw = good.read_bytes()
    (tmp_path / "trunc.fkl").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.fkl").write_bytes(b"\x00garbage" * 100)
    with zipfile.ZipFile(tmp_path / "foreign.fkl", "w") as z:
        z.writestr("hello.txt", "not a model")
    _rewrite_meta(good, tmp_path / "future.fkl", format_version=99)
    _rewrite_meta(good, tmp_path / "other.fkl", format="something-else")
    cases = {"trunc.fkl": "corrupt or truncated", "junk.fkl": "corrupt or truncated", "foreign.fkl": "no meta.json",
             "future.fkl": "newer than", "other.fkl": "not a fastifkl model", "missing.fkl": "not found"}
    for name, msg in cases.items():
        with pytest.raises(ModelError, match=msg) as ei:
            Separator.load(tmp_path / name)
        assert "\n" not in str(ei.value) and name in str(ei.value)
    # an array of the wrong shape
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(tmp_path / "shape.fkl", "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename == "bias.npy":
                b = io.BytesIO()
                np.save(b, np.zeros(3))
                buf = b.getvalue()
            zout.writestr(item, buf)
    with pytest.raises(ModelError, match="'bias' has shape"):
        Separator.load(tmp_path / "shape.fkl")


def test_cli_train_separate_evaluate_info(corpus, tmp_path):
    root, train, test = corpus
    model = tmp_path / "kl.fkl"
    r = runner.invoke(app, ["train", str(train.directory), "-o", str(model), "--channels", "8", "--per-domain", "15",
                            "--max-train", "120", "--rank", "16", "--max-sweeps", "5", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(model)])
    assert r.exit_code == 0 and "KL-SVM" in r.output and "channels: 8" in r.output
    assert "pitch tracker: learned\n" in r.output
    r = runner.invoke(app, ["train", str(train.directory), "-o", str(tmp_path / "x.fkl"), "--pitch-method", "crepe"])
    assert r.exit_code == 2 and "pitch_method must be one of learned, correlogram" in r.output
    # separate: a file, a directory and a glob, with one bad file skipped -> exit 2 (bad input)
    ind = tmp_path / "in"
    ind.mkdir()
    for i, e in enumerate(test.entries):
        sf.write(ind / f"mix{i}.wav", test.mixture(e).mixture, 16000, subtype="FLOAT")
    (ind / "broken.wav").write_text("no audio here")
    out = tmp_path / "out"
    r = runner.invoke(app, ["separate", str(ind), "-m", str(model), "-o", str(out), "--mask", "-q"])
    assert r.exit_code == 2
    assert "broken.wav" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["mix0.mask.npy", "mix0.sep.wav", "mix1.mask.npy", "mix1.sep.wav"]
    y, sr = sf.read(out / "mix0.sep.wav")
    assert sr == 16000 and y.size == test.mixture(test.entries[0]).mixture.size
    r = runner.invoke(app, ["separate", str(ind / "mix*.wav"), "-m", str(model), "-o", str(tmp_path / "o2"), "-q"])
    assert r.exit_code == 0, r.output
    # same model, same input -> identical bytes
    assert (tmp_path / "o2" / "mix0.sep.wav").read_bytes() == (out / "mix0.sep.wav").read_bytes()
    # the default output is the ratio mask; --output binary the paper's; --mask writes the binary mask either way
    sep = Separator.load(model)
    x = test.mixture(test.entries[0]).mixture.astype(np.float32).astype(np.float64)
    d = sep.decision_function(x)
    np.testing.assert_array_equal(np.load(out / "mix0.mask.npy"), (d > 0).astype(np.uint8))
    np.testing.assert_allclose(y, sep.separate(x), atol=1e-6)
    r = runner.invoke(app, ["separate", str(ind / "mix0.wav"), "-m", str(model), "-o", str(tmp_path / "o3"),
                            "--output", "binary", "--mask", "-q"])
    assert r.exit_code == 0, r.output
    yb, _ = sf.read(tmp_path / "o3" / "mix0.sep.wav")
    np.testing.assert_allclose(yb, sep.separate(x, output="binary"), atol=1e-6)
    assert np.max(np.abs(yb - y)) > 1e-3
    np.testing.assert_array_equal(np.load(tmp_path / "o3" / "mix0.mask.npy"), np.load(out / "mix0.mask.npy"))
    r = runner.invoke(app, ["separate", str(ind / "mix0.wav"), "-m", str(model), "--output", "soft"])
    assert r.exit_code == 2 and "--output must be one of ratio, binary" in r.output
    rep = tmp_path / "rep.json"
    r = runner.invoke(app, ["evaluate", str(model), str(test.directory), "--report", str(rep),
                            "--plot", str(tmp_path / "fig"), "-q"])
    assert r.exit_code == 0, r.output
    j = json.loads(rep.read_text())
    assert set(j["per_noise"]) == {"high", "beeps"}
    for s in j["per_noise"].values():
        assert 0 <= s["hit"] <= 1 and 0 <= s["fa"] <= 1 and s["hit_fa"] == pytest.approx(s["hit"] - s["fa"])
    assert list((tmp_path / "fig").glob("masks_*.png"))


def test_cli_input_errors_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.fkl").write_bytes(b"PK\x03\x04 truncated")
    cases = [
        (["separate", str(tmp_path / "nope.wav"), "-m", str(tmp_path / "bad.fkl")], "bad.fkl"),
        (["info", str(tmp_path / "missing.fkl")], "not found"),
        (["separate", str(tmp_path / "x.wav"), "-m", str(tmp_path / "missing.fkl")],
         "missing.fkl: model file not found"),
        (["train", str(tmp_path / "empty"), "-o", str(tmp_path / "m.fkl")], "not a mixture set"),
        (["evaluate", str(tmp_path / "bad.fkl"), str(tmp_path / "empty")], "not a mixture set"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output
    assert not (tmp_path / "m.fkl").exists()


def test_separate_with_missing_input_and_empty_dir(corpus, data, tmp_path):
    model = Separator(kernel="gaussian", **SMALL).fit_data(data).save(tmp_path / "g.fkl")
    (tmp_path / "nothing").mkdir()
    r = runner.invoke(app, ["separate", str(tmp_path / "nothing"), "-m", str(model), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "holds no audio" in r.output
    r = runner.invoke(app, ["separate", str(tmp_path / "gone.wav"), "-m", str(model), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_training_leaves_test_splits_out_unless_named(tmp_path):
    """Without --split, training uses every split but tune, test and test_real; a test split is
    only trained on when named."""
    from fastifkl.corpus import Entry
    from fastifkl.training import training_sets

    splits = ["kernel", "svm", "tune", "test", "test_real", "train_real"]
    ms = MixtureSet(tmp_path, [Entry(id=f"u{k}", speech="s.wav", noise="n.wav", noise_label="hum", offset=0,
                                     snr_db=0.0, split=s, domain="hum", seed=0) for k, s in enumerate(splits)])
    train, tune = training_sets(ms)
    assert [e.split for e in train] == ["kernel", "svm", "train_real"] and tune is None
    train, tune = training_sets(ms, tune=True)
    assert [e.split for e in tune] == ["tune"] and "test" not in train.splits
    train, _ = training_sets(ms, ["svm", "test"])  # asked for by name
    assert [e.split for e in train] == ["svm", "test"]
    only_test = MixtureSet(tmp_path, [e for e in ms.entries if e.split in ("tune", "test", "test_real")])
    with pytest.raises(InputError, match="held out by default: test, test_real, tune; name a split with --split"):
        training_sets(only_test)
