"""Pitch trackers: synthetic signals with known f0 (male and female range), noise-only input,
the Numba kernels against their NumPy twins (tests/naive.py), block-wise tracking,
determinism, the weights file, the training command, input validation, and the corpus
checks against Praat (praat-parselmouth)."""
from __future__ import annotations

import numpy as np
import pytest

import naive
from fastifkl import periodicity, pitch, pitch_net
from fastifkl.errors import InputError, ModelError
from fastifkl.framing import n_frames

SR = 16000
METHODS = ["learned", "correlogram"]


def gpe_vde(est, ref):
    """Gross pitch error (>20 % off, on frames both call voiced) and voicing decision error."""
    both = (est > 0) & (ref > 0)
    gpe = np.mean(np.abs(est[both] - ref[both]) > 0.2 * ref[both]) if both.any() else 1.0
    return float(gpe), float(np.mean((est > 0) != (ref > 0)))


def harmonic(f0_track_hz, n_harm=12, amp_decay=0.8):
    """Harmonic complex with a sample-level f0 track (Hz); harmonics above 7 kHz are left out."""
    phase = 2 * np.pi * np.cumsum(f0_track_hz) / SR
    out = np.zeros(len(f0_track_hz))
    for k in range(n_harm):
        out += np.where((k + 1) * f0_track_hz < 7000, amp_decay ** k * np.sin((k + 1) * phase), 0.0)
    return out


# The shipped network was trained on real speech only: on these idealised harmonic complexes it
# voices 77-99 % of the frames and is within 20 % of the truth on 87-91 % of the voiced ones
# (many within 3 %), so its synthetic checks use GPE's 20 % rule with those floors; the
# correlogram tracker is held to 3 % on 97 % of 95 % voiced frames.
LEARNED = {"tol": 0.2, "min_ok": 0.85, "min_voiced": 0.75}
CORRELOGRAM = {"tol": 0.03, "min_ok": 0.97, "min_voiced": 0.95}


def glide_check(f_inst, tol=0.03, min_voiced=0.95, method="learned", min_ok=0.97):
    n = f_inst.size
    x = np.concatenate([np.zeros(4000), 0.3 * harmonic(f_inst), np.zeros(4000)])
    f0 = pitch.track(x, method=method)
    m = n_frames(x.size)
    assert f0.shape == (m,)
    centres = np.arange(m) * 160 + 160 - 4000
    ref = np.where((centres >= 400) & (centres < n - 400), np.interp(centres, np.arange(n), f_inst), 0.0)
    voiced = ref > 0
    assert np.mean(f0[voiced] > 0) >= min_voiced
    ok = voiced & (f0 > 0)
    assert np.mean(np.abs(f0[ok] - ref[ok]) < tol * ref[ok]) >= min_ok
    silent = (centres < -400) | (centres > n + 400)
    assert np.all(f0[silent] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_harmonic_glide_is_tracked(method):
    glide_check(np.linspace(100.0, 220.0, 2 * SR), method=method, **(LEARNED if method == "learned" else CORRELOGRAM))


@pytest.mark.parametrize("lo,hi", [(180.0, 300.0), (260.0, 390.0), (75.0, 110.0)])
def test_learned_tracker_covers_the_range(lo, hi):
    """Female (up to 390 Hz) and low male glides (shipped network: voiced 95 / 91 / 77 %, within
    20 % on 91 / 87 / 100 % of those)."""
    t = np.arange(2 * SR) / SR
    glide_check(lo + (hi - lo) * (0.5 - 0.5 * np.cos(np.pi * t / 2)), **LEARNED)


@pytest.mark.xfail(strict=True, reason="known limitation of the shipped network (docs/PITCH.md): a 350 Hz "
                   "harmonic complex with 5 Hz vibrato is voiced on 32 % of its frames, none within 20 %")
def test_vibrato_at_350_hz():
    t = np.arange(int(1.5 * SR)) / SR
    glide_check(350.0 * (1 + 0.04 * np.sin(2 * np.pi * 5 * t)), **LEARNED)


@pytest.mark.parametrize("method", [
    pytest.param("learned", marks=pytest.mark.xfail(strict=True, reason="known limitation of the shipped network "
                                                    "(docs/PITCH.md): 150 Hz found on 54 % of the frames")),
    "correlogram"])
def test_missing_fundamental_is_found(method):
    """Harmonics 3..10 of 150 Hz only: the period is still 150 Hz."""
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * 150 * k * t) for k in range(3, 11))
    f0 = pitch.track(x, method=method)[10:-10]
    assert np.mean(np.abs(f0 - 150) < 4.5) > 0.95


@pytest.mark.parametrize("method", METHODS)
def test_noise_and_silence_are_unvoiced(method):
    assert np.all(pitch.track(np.zeros(8000), method=method) == 0)
    x = np.random.default_rng(0).standard_normal(16000)
    assert np.mean(pitch.track(x, method=method) > 0) < 0.05


@pytest.mark.xfail(strict=True, reason="known limitation of the shipped network (docs/PITCH.md): a steady "
                   "120 Hz harmonic hum is called voiced throughout")
def test_steady_hum_is_not_a_voice():
    """A 3 s stationary harmonic hum (a motor, a fridge) is not called voiced beyond its first
    second: the novelty features remove periodicity that does not change."""
    t = np.arange(3 * SR) / SR
    x = sum(np.sin(2 * np.pi * 120 * k * t + k) / k for k in range(1, 8))
    x += 0.05 * np.random.default_rng(1).standard_normal(x.size)
    f0 = pitch.track(x, method="learned")
    assert np.mean(f0[100:-60] > 0) < 0.2


def test_level_does_not_matter():
    rng = np.random.default_rng(2)
    from fastifkl.demo import synthetic_voiced_speech

    x = synthetic_voiced_speech(2.0, rng) + 0.3 * rng.standard_normal(2 * SR)
    a = pitch.track(x, method="learned")
    b = pitch.track(1e-3 * x, method="learned")
    assert np.mean((a > 0) == (b > 0)) > 0.99
    both = (a > 0) & (b > 0)
    assert np.allclose(a[both], b[both], rtol=1e-3)


def test_deterministic_and_responses_argument():
    from fastifkl.demo import synthetic_voiced_speech
    from fastifkl.gammatone import filterbank

    rng = np.random.default_rng(3)
    x = synthetic_voiced_speech(2.0, rng) + 0.5 * rng.standard_normal(2 * SR)
    a = pitch.track(x, method="learned")
    np.testing.assert_array_equal(a, pitch.track(x, method="learned"))
    # the separator's float64 responses give the same path as the tracker's own float32 ones
    b = pitch.track(x, responses=filterbank(x, SR), method="learned")
    assert np.mean((a > 0) == (b > 0)) > 0.99
    both = (a > 0) & (b > 0)
    assert np.allclose(a[both], b[both], rtol=1e-3)


def test_fmin_fmax_restrict_the_states():
    t = np.arange(SR) / SR
    x = 0.3 * harmonic(np.full(t.size, 300.0))
    f0 = pitch.track(x, fmin=70.0, fmax=200.0, method="learned")
    assert np.all((f0 == 0) | (f0 <= 200.0 * 1.03))
    assert np.mean(pitch.track(x, method="learned")[10:-10] > 290) > 0.95


@pytest.mark.parametrize("method", METHODS)
def test_blocks_agree_with_whole_signal(method):
    """A 35 s signal (synthetic speech with gaps in changing noise), tracked whole and in 10 s
    blocks with 2 s margins (overlap-and-discard, the file's mean and peak given to every
    block): the same on >= 99.5 % of frames."""
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(4)
    parts = []
    for _ in range(12):
        s = synthetic_voiced_speech(float(rng.uniform(1.5, 3.5)), rng)
        parts += [s, np.zeros(int(rng.uniform(0.1, 0.8) * SR))]
    x = np.concatenate(parts)[: 35 * SR]
    x = x + rng.uniform(0.05, 0.4) * np.repeat(rng.uniform(0.3, 1.5, 35), SR)[: x.size] * rng.standard_normal(x.size)
    whole = pitch.track(x, method=method)
    blocks = pitch.track_blocks(x, block=10.0, margin=2.0, method=method)
    same = ((whole > 0) == (blocks > 0)) & (np.abs(whole - blocks) <= 0.01 * np.maximum(whole, 1.0))
    assert np.mean(whole > 0) > 0.3
    assert np.mean(same) >= 0.995, np.mean(same)


@pytest.mark.parametrize("method", METHODS)
def test_global_stats(method):
    """The file's own (mean, peak) change nothing; a block tracked with the file's stats sees the
    file's offset and level, not its own: with a DC offset and a loud event elsewhere in the
    file, the correlogram method's unvoiced strength follows the file's peak."""
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(8)
    x = synthetic_voiced_speech(2.0, rng) + 0.05 * rng.standard_normal(2 * SR) + 0.3
    mean = float(np.mean(x))
    peak = float(np.max(np.abs(x - mean)))
    np.testing.assert_array_equal(pitch.track(x, method=method, global_stats=(mean, peak)),
                                  pitch.track(x, method=method))
    # the given mean is the one subtracted: a block's own mean differs from the file's
    a = pitch.track(x, method=method)
    b = pitch.track(x + 0.2, method=method, global_stats=(mean + 0.2, peak))
    np.testing.assert_array_equal(a > 0, b > 0)
    np.testing.assert_allclose(a, b, rtol=1e-9)
    if method == "correlogram":
        # a peak 100 x the block's makes every frame quiet -> unvoiced (Praat's silence rule)
        loud = pitch.track(x, method=method, global_stats=(mean, 100 * peak))
        assert np.mean(pitch.track(x, method=method) > 0) > 0.3 and np.mean(loud > 0) < 0.05
    for bad in [(0.0,), (np.nan, 1.0), (0.0, -1.0), "ab"]:
        with pytest.raises(InputError, match="global_stats"):
            pitch.track(x, method=method, global_stats=bad)
    with pytest.raises(InputError, match="global_stats"):
        pitch.track_blocks(x, method=method, global_stats=(0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Kernels against their NumPy twins


def test_envelope_filter_constants_match_scipy():
    import scipy.signal

    np.testing.assert_allclose(periodicity.ENV_SOS_8K,
                               scipy.signal.butter(2, (50, 550), "bandpass", fs=8000, output="sos"),
                               rtol=1e-12, atol=1e-15)


def test_signals_match_twin():
    from fastifkl.gammatone import erb_space, filterbank

    rng = np.random.default_rng(5)
    x = rng.standard_normal(4001)
    cfs = erb_space()
    r = filterbank(x, SR, cfs)
    fe = periodicity.FrontEnd()
    y, group_of, n_raw_g = periodicity.signals(r, cfs, fe)
    raw, env, g2, _ = periodicity.channel_layout(cfs, fe)
    np.testing.assert_array_equal(group_of, g2)
    assert raw.size == np.sum(cfs < 2000) and env.size == np.sum(cfs >= 800)
    ref = naive.pitch_signals(r, raw, env)
    assert y.shape == ref.shape == (raw.size + env.size, 2000)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("n_win", [2, 3, 4])
def test_correlogram_matches_brute_force(n_win):
    rng = np.random.default_rng(6)
    y = rng.standard_normal((3, 1300)).astype(np.float32)
    y[1, :500] = 0.0  # silent start: zero denominators give 0
    n_fr = n_frames(2 * 1300)
    A = periodicity.correlogram(y, n_fr, 18, 60, n_win)
    ref = naive.pitch_correlogram(y, n_fr, 18, 60, n_win)
    np.testing.assert_allclose(A, ref, atol=2e-5)
    assert np.all(A[1, :2] == 0)


def test_correlogram_of_a_periodic_signal_peaks_at_its_period():
    t = np.arange(4000)
    y = np.sin(2 * np.pi * t / 40.0)[None, :]  # period 40 samples at 8 kHz = 200 Hz
    A = periodicity.correlogram(y, 40, 18, 117, 3)
    assert np.all(np.argmax(A[0, 5:-5], axis=1) + 18 == 40)
    np.testing.assert_allclose(A[0, 5:-5, 40 - 18], 1.0, atol=1e-4)


def test_bin_pool_matches_twin():
    rng = np.random.default_rng(7)
    fe = periodicity.FrontEnd()
    lo, hi = fe.lag_range()
    A = rng.uniform(-1, 1, (4, 6, hi - lo + 1)).astype(np.float32)
    edges = periodicity.SR_DEC / periodicity.bin_edges(fe.fmin, fe.fmax, fe.n_bins)
    ref = naive.pitch_bin_pool(A, lo, edges)
    got = periodicity.bin_pool(A, fe, lo, np.arange(4))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    grouped = periodicity.bin_pool(A, fe, lo, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(grouped[:, 0], ref[:, :2].mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("w", [0, 1, 3, 50])
def test_running_min_matches_scipy(w):
    B = np.random.default_rng(8).standard_normal((37, 5)).astype(np.float32)
    out = np.empty_like(B)
    periodicity.running_min(B, w, out)
    np.testing.assert_array_equal(out, naive.pitch_running_min(B, w))


def test_cross_stats_match_twin():
    rng = np.random.default_rng(9)
    B = rng.uniform(-0.2, 1.0, (7, 9, 5)).astype(np.float32)
    got = periodicity.cross_stats(B, 4, (0.9, 0.5), 3)
    np.testing.assert_allclose(got, naive.pitch_cross_stats(B, 4, (0.9, 0.5), 3), atol=1e-6)
    with pytest.raises(InputError):
        periodicity.cross_stats(B, 9, (0.9,), 3)


def test_frame_features_shape_and_locality():
    """Features of a frame depend only on nearby signal: changing the last 3 s leaves the
    features more than 1.2 s (novelty and energy windows) before the change untouched."""
    from fastifkl.demo import synthetic_voiced_speech
    from fastifkl.gammatone import erb_space, filterbank

    rng = np.random.default_rng(10)
    x = synthetic_voiced_speech(6.0, rng) + 0.2 * rng.standard_normal(6 * SR)
    y = x.copy()
    y[3 * SR:] = rng.standard_normal(3 * SR)
    cfs = erb_space()
    fe = periodicity.FrontEnd()
    m = n_frames(x.size)
    Fx, Sx = periodicity.frame_features(filterbank(x, SR, cfs), cfs, fe, m)
    Fy, _ = periodicity.frame_features(filterbank(y, SR, cfs), cfs, fe, m)
    _, _, _, n_raw_g = periodicity.channel_layout(cfs, fe)
    assert Fx.shape == (m, fe.n_features(n_raw_g)) and Sx.shape[0] == m
    cut = 300 - max(fe.novelty, fe.energy_window) - 10
    np.testing.assert_allclose(Fx[:cut], Fy[:cut], atol=1e-5)
    assert not np.allclose(Fx[300:], Fy[300:])


def test_viterbi_matches_twin_and_exhaustive_search():
    import itertools

    rng = np.random.default_rng(11)
    for _ in range(5):
        lp = np.log(rng.dirichlet(np.ones(4), 5))
        lt = np.log(rng.dirichlet(np.ones(4), 4))
        got = pitch_net.viterbi(lp, lt)
        np.testing.assert_array_equal(got, naive.pitch_viterbi(lp, lt))
        best = max(itertools.product(range(4), repeat=5),
                   key=lambda p: lp[0, p[0]] + sum(lt[p[t - 1], p[t]] + lp[t, p[t]] for t in range(1, 5)))
        np.testing.assert_array_equal(got, best)


def test_transition_matrix_and_states():
    bins = periodicity.bin_centres()
    f0 = np.array([0, 0, 100, 103, 106, 0, 200, 200, 0.0])
    s = pitch_net.states_from_f0(f0, bins)
    assert s[0] == 0 and s[5] == 0
    np.testing.assert_allclose(bins[s[2:5] - 1], [100, 103, 106], rtol=0.016)
    lt = pitch_net.transition_matrix([s], bins.size)
    np.testing.assert_allclose(np.exp(lt).sum(axis=1), 1.0, atol=1e-12)
    assert np.exp(lt[0, 0]) == pytest.approx(1 / 3)  # u->u: 1 of the 3 transitions from unvoiced
    assert np.exp(lt[s[2], 0]) == pytest.approx(2 / 5)  # v->u 2 of 5 voiced-start transitions


def test_refine_pitch_weights_the_neighbours():
    bins = periodicity.bin_centres()
    lp = np.full((2, 61), -np.inf)
    lp[0, 0] = 0.0
    lp[1, 21], lp[1, 22] = np.log(0.5), np.log(0.5)
    f0 = pitch_net.refine_pitch(np.array([0, 21]), lp, bins, 2)
    assert f0[0] == 0.0
    assert f0[1] == pytest.approx(np.sqrt(bins[20] * bins[21]))


# ---------------------------------------------------------------------------------------------
# Weights file and training


def test_weights_round_trip(tmp_path):
    net = pitch_net.load()
    p = net.save(tmp_path / "net.fkl")
    back = pitch_net.PitchNet.load(p)
    assert back.front_end == net.front_end and back.offsets == net.offsets
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(a, b)
    assert p.read_bytes() == net.save(tmp_path / "again.fkl").read_bytes()
    x = np.random.default_rng(12).standard_normal(8000)
    np.testing.assert_array_equal(pitch.track(x, net=back, method="learned"), pitch.track(x, method="learned"))


def test_bad_weights_file(tmp_path):
    bad = tmp_path / "bad.fkl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.fkl"):
        pitch_net.load(bad)
    with pytest.raises(ModelError, match="not found"):
        pitch_net.load(tmp_path / "missing.fkl")


def test_weights_file_is_checked_before_reading(tmp_path):
    """model_file's safe loading with the pitch network's layout: metadata that does not fit,
    an array whose header disagrees with the metadata, a separator model: one-line ModelError
    naming the file; a valid file still loads."""
    import json
    import zipfile

    from fastifkl import model_file

    net = pitch_net.load()
    good = net.save(tmp_path / "good.fkl")
    meta, arrays = model_file.read(good, expected=pitch_net.file_layout)

    def variant(name, meta_change=None, array_change=None):
        m = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
        a = dict(arrays)
        if meta_change:
            meta_change(m)
        if array_change:
            array_change(a)
        return model_file.write(tmp_path / name, m, a)

    cases = {
        "dims.fkl": (lambda m: m.pop("dims"), None, "dims"),
        "huge.fkl": (lambda m: m.__setitem__("dims", [10 ** 9] + m["dims"][1:]), None, "dims"),
        "layers.fkl": (lambda m: m.__setitem__("n_layers", 7), None, "n_layers"),
        "kind.fkl": (lambda m: m.__setitem__("kind", "separator"), None, "not a pitch-network"),
        "fe.fkl": (lambda m: m.__setitem__("front_end", {"bogus": 1}), None, "front_end"),
        "w1.fkl": (None, lambda a: a.__setitem__("w1", a["w1"][:-1]), "'w1' has shape"),
        "int.fkl": (None, lambda a: a.__setitem__("b0", a["b0"].astype(np.int32)), "'b0' has dtype"),
        "nan.fkl": (None, lambda a: a.__setitem__("w2", np.full_like(a["w2"], np.nan)), "w2"),
    }
    for name, (mc, ac, match) in cases.items():
        p = variant(name, mc, ac)
        with pytest.raises(ModelError, match=match) as exc:
            pitch_net.PitchNet.load(p)
        assert name in str(exc.value) and "\n" not in str(exc.value)
    with zipfile.ZipFile(good) as zf:
        assert json.loads(zf.read("meta.json"))["dims"] == [1212, net.weights[0].shape[1], net.weights[1].shape[1], 61]
    np.testing.assert_array_equal(pitch_net.PitchNet.load(variant("same.fkl")).weights[1], net.weights[1])


def test_training_command_is_deterministic(tmp_path):
    """A tiny run of `python -m fastifkl.pitch_train` on a synthetic corpus, twice: identical
    weight files; the result loads and tracks."""
    pytest.importorskip("parselmouth")
    from fastifkl import pitch_train
    from synth import make_corpus

    root = make_corpus(tmp_path / "corpus", n_utts=4, splits=["kernel", "svm", "svm", "test"])
    outs = []
    out = tmp_path / "net.fkl"
    for _ in range(2):
        pitch_train.main(["--corpus", str(root), "--out", str(out), "--splits", "kernel,svm", "--noises", "white,hum",
                          "--n-aug", "1", "--n-cond", "1", "--epochs", "1", "--workers", "1", "--h1", "8",
                          "--hidden", "8"])
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    net = pitch_net.PitchNet.load(out)
    assert net.info["speech"] == ["u0.flac", "u1.flac", "u2.flac"]  # never the test split
    assert pitch.track(np.random.default_rng(0).standard_normal(4000), net=net, method="learned").shape == (24,)
    with pytest.raises(InputError, match="held-out split.*test"):
        pitch_train.main(["--corpus", str(root), "--out", str(tmp_path / "x.fkl"), "--splits", "svm,test"])


# ---------------------------------------------------------------------------------------------
# The correlogram method's pieces


def test_nccf_matches_brute_force():
    rng = np.random.default_rng(3)
    s = rng.standard_normal((2, 3000))
    lag_max, window = 60, 200
    for taper in (False, True):
        A = pitch.nccf(s, n_frames(3000), lag_max, window, taper)
        w = np.hanning(window + 2)[1:-1] if taper else np.ones(window)
        for c, m in [(0, 0), (1, 5), (0, n_frames(3000) - 1)]:
            t0 = 160 * m + 160 - window // 2
            sp = np.concatenate([np.zeros(1000), s[c], np.zeros(1000)])
            for tau in (0, 7, 33, lag_max):
                a = sp[1000 + t0: 1000 + t0 + window]
                b = sp[1000 + t0 + tau: 1000 + t0 + tau + window]
                ref = np.sum(w * a * b) / np.sqrt(np.sum(w * a * a) * np.sum(w * b * b))
                assert abs(A[c, m, tau] - ref) < 1e-9


def test_hann_nccf_matches_naive_twin_and_fft_nccf():
    rng = np.random.default_rng(4)
    n = 2500
    s = rng.standard_normal((3, n))
    s[1, 800:1500] = 0.0  # silence inside: the zero-denominator rule
    s[2] *= np.linspace(0.0, 1e3, n)  # a wide dynamic range
    m = n_frames(n)
    for window, lo, hi in ((640, 39, 230), (320, 5, 60)):
        got = pitch.hann_nccf(s, m, lo, hi, window)
        ref = naive.hann_nccf(s, m, lo, hi, window)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)  # float32 per-hop products
        np.testing.assert_allclose(got, pitch.nccf(s, m, hi, window, True)[:, :, lo:], rtol=0, atol=1e-6)
    with pytest.raises(InputError):
        pitch.hann_nccf(s, m, 5, 60, 300)


def test_candidate_viterbi_matches_exhaustive_search():
    import itertools

    rng = np.random.default_rng(5)
    f = rng.uniform(80, 300, (4, 2))
    s = rng.uniform(0, 1, (4, 2))
    s[2, 1] = -np.inf  # a missing candidate
    su = rng.uniform(0, 1, 4)
    got = pitch.viterbi(f, s, su, 0.35, 0.14)
    best, best_path = -np.inf, None
    for path in itertools.product(range(3), repeat=4):
        tot, prev = 0.0, None
        for t, k in enumerate(path):
            tot += s[t, k] if k < 2 else su[t]
            fk = f[t, k] if k < 2 else 0.0
            if prev is not None:
                if fk > 0 and prev > 0:
                    tot -= 0.35 * abs(np.log2(fk / prev))
                elif (fk > 0) != (prev > 0):
                    tot -= 0.14
            prev = fk
        if tot > best:
            best, best_path = tot, [f[t, k] if k < 2 else 0.0 for t, k in enumerate(path)]
    np.testing.assert_allclose(got, best_path)


def test_moving_average_matches_scipy():
    from scipy.ndimage import uniform_filter1d

    a = np.random.default_rng(1).standard_normal((30, 4))
    np.testing.assert_allclose(pitch.moving_average(a, 2), uniform_filter1d(a, 5, axis=0, mode="nearest"), atol=1e-12)


def test_default_method_is_the_learned_tracker():
    """The learned tracker is the default (issue 19; docs/PITCH.md); the correlogram tracker is
    method="correlogram", and the two give different tracks (the test can fail)."""
    from fastifkl.demo import synthetic_voiced_speech

    rng = np.random.default_rng(5)
    x = synthetic_voiced_speech(1.5, rng) + 0.3 * rng.standard_normal(int(1.5 * SR))
    default = pitch.track(x)
    np.testing.assert_array_equal(default, pitch.track(x, method="learned"))
    assert not np.array_equal(default, pitch.track(x, method="correlogram"))
    assert pitch.DEFAULT_METHOD == "learned"


@pytest.mark.parametrize("split", ["test", "test_real", "tune_real"])
def test_pitch_training_refuses_held_out_splits(tmp_path, split):
    from fastifkl.pitch_train import corpus_items

    (tmp_path / "MANIFEST.tsv").write_text("file\tkind\tlabel\tsplit\n"
                                           f"speech/a.flac\tspeech\tx\t{split}\nspeech/b.flac\tspeech\tx\tkernel\n"
                                           "noise/ssn.flac\tnoise\tssn\t\n")
    assert corpus_items(tmp_path, ["kernel"], ["ssn"])[0] == [tmp_path / "speech/b.flac"]
    with pytest.raises(InputError, match=f"held-out split\\(s\\) {split}"):
        corpus_items(tmp_path, ["kernel", split], ["ssn"])


def test_bad_input():
    for method in METHODS:
        with pytest.raises(InputError):
            pitch.track(np.zeros(100), method=method)
        with pytest.raises(InputError):
            pitch.track(np.zeros((2, 4000)), method=method)
        with pytest.raises(InputError):
            pitch.track(np.full(4000, np.nan), method=method)
        with pytest.raises(InputError):
            pitch.track(np.zeros(4000), sr=8000, method=method)
    with pytest.raises(InputError, match="method"):
        pitch.track(np.zeros(4000), method="crepe")
    with pytest.raises(InputError, match="70-400"):
        pitch.track(np.zeros(4000), fmin=50.0, method="learned")
    with pytest.raises(InputError, match="responses"):
        pitch.track(np.zeros(4000), responses=np.zeros((64, 3000)), method="learned")
    with pytest.raises(InputError, match="option"):
        pitch.track(np.zeros(4000), voicing_threshold=0.3, method="learned")


# ---------------------------------------------------------------------------------------------
# Corpus checks against Praat


def praat_f0(x):
    """Praat's AC pitch (70-400 Hz, 10 ms step) at our frame centres, 0 = unvoiced."""
    pytest.importorskip("parselmouth")
    from fastifkl.pitch_train import praat_pitch

    return praat_pitch(x)


def _utterances(corpus_dir, split=None):
    import csv

    import soundfile as sf

    rows = list(csv.DictReader(open(corpus_dir / "MANIFEST.tsv"), delimiter="\t"))
    files = sorted(r["file"] for r in rows
                   if r["file"].startswith("speech/ieee_real/") and (split is None or r["split"] == split))
    assert files
    return [sf.read(corpus_dir / f)[0] for f in files]


@pytest.mark.corpus
def test_clean_speech_agrees_with_praat(corpus_dir):
    """Acceptance (issue 12): clean speech GPE <= 3 % against Praat (all 20 real utterances)."""
    both = gross = vd = total = 0
    for x in _utterances(corpus_dir):
        ref = praat_f0(x)
        est = pitch.track(x, method="learned")
        b = (est > 0) & (ref > 0)
        both += b.sum()
        gross += np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b])
        vd += np.sum((est > 0) != (ref > 0))
        total += ref.size
    gpe, vde = gross / both, vd / total
    assert gpe <= 0.03, f"GPE {gpe:.3f}"
    assert vde <= 0.10, f"VDE {vde:.3f}"


@pytest.mark.corpus
def test_brown_noise_mixture_at_minus_5_db(corpus_dir):
    """Regression guard on the spare noise (never trained on): 4 test utterances at -5 dB."""
    import soundfile as sf

    from fastifkl.audio import mix_at_snr

    noise, _ = sf.read(corpus_dir / "noise" / "brown.flac")
    both = gross = vd = total = 0
    for i, x in enumerate(_utterances(corpus_dir, "test")[:4]):
        y = mix_at_snr(x, noise, -5.0, np.random.default_rng(i)).mixture
        ref = praat_f0(x)
        est = pitch.track(y, method="learned")
        b = (est > 0) & (ref > 0)
        both += b.sum()
        gross += np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b])
        vd += np.sum((est > 0) != (ref > 0))
        total += ref.size
    assert gross / both <= 0.08
    assert vd / total <= 0.30
