"""Per-unit features: each family against the loop references in tests/naive.py,
MFCC against python_speech_features, analytic checks, edge cases, FeatureSpec, Normalizer."""
from __future__ import annotations

import numpy as np
import pytest

import naive
from fastifkl import gammatone
from fastifkl.errors import InputError
from fastifkl.features import (
    FAMILIES,
    FeatureSpec,
    Normalizer,
    _common,
    ams,
    deltas,
    extract,
    mfcc,
    pitch_features,
    rasta_plp,
)
from fastifkl.framing import n_frames

SR = 16000
CH = slice(None, None, 9)  # 8 of the 64 channels for the slow loop references


def assert_rel(ours, ref, rtol=1e-6):
    """|ours - ref| <= rtol * max|ref| per feature dimension (last axis)."""
    assert ours.shape == ref.shape
    scale = np.abs(ref).reshape(-1, ref.shape[-1]).max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    err = np.abs(ours - ref) / scale
    assert np.all(np.isfinite(ours))
    assert err.max() <= rtol, f"max relative error {err.max():.3g}"


@pytest.fixture(scope="module")
def random_responses():
    x = np.random.default_rng(7).standard_normal(4800) * 0.1
    return gammatone.filterbank(x, SR)[CH]


@pytest.fixture(scope="module")
def real_responses(corpus_dir):
    import soundfile as sf

    x, sr = sf.read(corpus_dir / "speech" / "ieee_real" / "S_02_03.flac")
    assert sr == SR
    x = x[8000:8000 + 8000]  # 0.5 s of voiced speech
    return gammatone.filterbank(x, SR)[CH]


def _f0(m, seed=3):
    rng = np.random.default_rng(seed)
    f0 = rng.uniform(75, 380, m)
    f0[rng.random(m) < 0.3] = 0.0
    return f0


FAMILY_FUNCS = {
    "mfcc": (mfcc.mfcc, naive.mfcc),
    "rasta_plp": (rasta_plp.rasta_plp, naive.rasta_plp),
    "ams": (ams.ams, naive.ams),
}


@pytest.mark.parametrize("family", list(FAMILY_FUNCS))
def test_family_matches_loop_reference_random(family, random_responses):
    ours, ref = FAMILY_FUNCS[family]
    assert_rel(ours(random_responses), ref(random_responses).transpose(1, 0, 2))


@pytest.mark.parametrize("family", list(FAMILY_FUNCS))
def test_family_matches_loop_reference_real(family, real_responses):
    ours, ref = FAMILY_FUNCS[family]
    assert_rel(ours(real_responses), ref(real_responses).transpose(1, 0, 2))


def test_pitch_features_match_loop_reference(random_responses, real_responses):
    for r in (random_responses, real_responses):
        f0 = _f0(n_frames(r.shape[1]))
        got = pitch_features.pitch_features(r, f0)
        ref = naive.pitch_features(r, f0).transpose(1, 0, 2)
        assert_rel(got, ref)
        assert np.all(got[f0 == 0] == 0)
        assert np.abs(got[f0 > 0]).max() > 0.1


def test_deltas_match_loop_reference():
    x = np.random.default_rng(0).standard_normal((7, 5, 4))
    dt, df = naive.deltas(x)
    np.testing.assert_array_equal(deltas.time_delta(x), dt)
    np.testing.assert_array_equal(deltas.freq_delta(x), df)


def test_extract_layout_matches_families_and_deltas(random_responses):
    r = random_responses
    m = n_frames(r.shape[1])
    f0 = _f0(m)
    x = extract(r, f0)
    assert x.shape == (m, r.shape[0], 195) and x.dtype == np.float64
    base = np.concatenate([naive.ams(r), naive.rasta_plp(r), naive.mfcc(r), naive.pitch_features(r, f0)],
                          axis=2).transpose(1, 0, 2)
    dt, df = naive.deltas(base)
    assert_rel(x, np.concatenate([base, dt, df], axis=2))


def test_mfcc_full_band_agrees_with_python_speech_features():
    """Library check: python_speech_features with the same framing, window, FFT size,
    filterbank (its own 64-filter bank injected into ours) and orthonormal DCT-II.
    psf scales the power spectrum by 1/512, which shifts every log band by -log(512) and hence
    only c0, by -8 log(512) (orthonormal DCT of a constant over 64 bands).  Documented
    tolerance: 1e-8 relative to the largest |coefficient| per dimension."""
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(11)
    x = rng.standard_normal(8000) + 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / SR)
    ref = psf.mfcc(x, SR, winlen=0.02, winstep=0.01, numcep=31, nfilt=64, nfft=512, lowfreq=0, highfreq=8000,
                   preemph=0, ceplifter=0, appendEnergy=False, winfunc=np.hamming)
    fb = psf.get_filterbanks(64, 512, SR, 0, 8000)
    ours = mfcc.from_power(_common.power_spectrum(x[None, :]), melmat=fb)[:, 0]
    ours[:, 0] -= 8 * np.log(512)
    m = ours.shape[0]
    assert_rel(ours, ref[:m], rtol=1e-8)


def test_mel_filterbank_is_psf_like_where_bins_are_dense():
    """Our continuous-frequency triangles and psf's bin-quantised ones agree on the centres
    of the upper filters (where a filter spans many bins)."""
    psf = pytest.importorskip("python_speech_features")
    ours = mfcc.mel_filterbank()
    theirs = psf.get_filterbanks(64, 512, SR, 0, 8000)
    for j in range(40, 64):
        assert abs(np.argmax(ours[j]) - np.argmax(theirs[j])) <= 1


# ------------------------------------------------------------------ Numba kernels vs twins


def test_power_spectrum_twin(random_responses):
    np.testing.assert_allclose(_common.power_spectrum(random_responses), naive.power_spectrum(random_responses),
                               rtol=1e-9, atol=1e-12 * naive.power_spectrum(random_responses).max())


def test_chunked_band_energies_match_full_power_spectrum():
    r = np.random.default_rng(8).standard_normal((3, 160 * 40 + 320))  # 41 frames: 3 chunks
    w1, w2 = mfcc.mel_filterbank(), rasta_plp.bark_filterbank()
    e1, e2 = _common.band_energies(r, [w1, w2])
    p = naive.power_spectrum(r)
    np.testing.assert_allclose(e1, p @ w1.T, rtol=1e-10, atol=1e-12 * p.max())
    np.testing.assert_allclose(e2, p @ w2.T, rtol=1e-10, atol=1e-12 * p.max())


def test_rasta_and_lpc_twins():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 3, 21))
    np.testing.assert_allclose(rasta_plp.rasta_filter(x), naive.rasta_filter(x), rtol=1e-12, atol=1e-12)
    # autocorrelations of random positive spectra
    s = np.exp(rng.standard_normal((50, 21)))
    r = s @ rasta_plp._acf_matrix(21)
    np.testing.assert_allclose(rasta_plp.lpc_cepstrum(r), naive.lpc_cepstrum(r), rtol=1e-9, atol=1e-9)


def test_rasta_filter_kills_constants_and_passes_modulation():
    x = np.full((50, 1, 2), 3.7)
    assert np.abs(rasta_plp.rasta_filter(x)).max() < 1e-12
    t = np.arange(200)
    mod = np.sin(2 * np.pi * 5 * t / 100)[:, None, None]  # 5 Hz at 100 frames/s: in the pass band
    assert np.abs(rasta_plp.rasta_filter(mod)[100:, 0, 0]).max() > 0.3


def test_filter_constants_match_scipy_designs():
    import scipy.signal

    np.testing.assert_allclose(ams.antialias_fir(), scipy.signal.firwin(33, 1000.0, fs=SR), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(pitch_features.envelope_sos(),
                               scipy.signal.butter(2, (50.0, 550.0), btype="bandpass", fs=SR, output="sos"), rtol=1e-12)


def test_ams_envelope_matches_upfirdn():
    import scipy.signal

    r = np.random.default_rng(9).standard_normal((3, 1001))
    y = scipy.signal.upfirdn(scipy.signal.firwin(33, 1000.0, fs=SR), np.abs(r), up=1, down=4, axis=-1)[:, 4:]
    e = ams.envelope(r)
    k = min(e.shape[1], y.shape[1])
    assert e.shape[1] >= (r.shape[1] - 1) // 4
    np.testing.assert_allclose(e[:, :k], y[:, :k], rtol=1e-12, atol=1e-14)


def test_pitch_envelope_twin(random_responses):
    np.testing.assert_allclose(pitch_features.pitch_envelope(random_responses),
                               naive.pitch_envelope_bank(random_responses), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ analytic checks


def test_pitch_features_of_a_harmonic_tone():
    """A 500 Hz tone with f0 = 125 Hz (tau = 128 samples): in the channel at 500 Hz the
    autocorrelation at tau is ~1 and f tau ~ 4, an integer."""
    n = 6400
    t = np.arange(n) / SR
    x = np.sin(2 * np.pi * 500 * t)
    cfs = gammatone.erb_space(80, 5000, 64)
    c = int(np.argmin(np.abs(cfs - 500)))
    r = gammatone.filterbank(x, SR)[c:c + 1]
    m = n_frames(n)
    feats = pitch_features.pitch_features(r, np.full(m, 125.0))[10:, 0]
    assert np.all(feats[:, 0] > 0.99)
    assert np.all(feats[:, 2] < 0.01)
    # and at a lag that is not a multiple of the period, f tau is far from an integer
    feats2 = pitch_features.pitch_features(r, np.full(m, 16000 / 136.0))[10:, 0]  # tau = 136 = 4.25 periods
    assert np.all(np.abs(feats2[:, 2] - 0.25) < 0.01)


def test_ams_peaks_at_the_modulation_frequency():
    n = 8000
    t = np.arange(n) / SR
    x = (1 + np.cos(2 * np.pi * 98.0 * t)) * np.sin(2 * np.pi * 2000 * t)
    cfs = gammatone.erb_space(80, 5000, 64)
    c = int(np.argmin(np.abs(cfs - 2000)))
    r = gammatone.filterbank(x, SR)[c:c + 1]
    a = ams.ams(r)[5:-5, 0]
    # centres linspace(15.625, 400, 15): band 3 is at 98.0 Hz
    assert np.all(np.argmax(a, axis=1) == 3)


def test_mfcc_of_white_noise_is_flat():
    """White noise: the expected power spectrum is flat (sigma^2 sum w^2 in every bin), so the
    cepstrum of the frame-averaged spectrum is the DCT of log(sum of each filter's weights)
    plus a c0 offset."""
    x = np.random.default_rng(5).standard_normal(1_600_000)
    p = _common.power_spectrum(x[None, :]).mean(axis=0)  # (1, 257)
    c = mfcc.from_power(p)[0]
    w = mfcc.mel_filterbank()
    expect = np.log(w.sum(axis=1)) @ mfcc.dct_matrix(64, 31)
    np.testing.assert_allclose(c[1:], expect[1:], atol=0.06)  # ~1% per-bin sampling noise, ~0.01 rms per coefficient
    exact = mfcc.from_power(np.ones((1, 257)))[0]  # an exactly flat spectrum
    np.testing.assert_allclose(exact, expect, atol=1e-12)
    np.testing.assert_allclose(c[0] - expect[0], 8 * np.log(np.sum(np.hamming(320) ** 2)), atol=0.1)


# ------------------------------------------------------------------ robustness


@pytest.mark.parametrize("kind", ["silence", "clipping", "dc", "tone", "tiny"])
def test_features_finite_on_edge_signals(kind):
    n = 4000
    t = np.arange(n) / SR
    rng = np.random.default_rng(0)
    x = {
        "silence": np.zeros(n),
        "clipping": np.clip(10 * rng.standard_normal(n), -1, 1),
        "dc": 0.8 + 1e-3 * rng.standard_normal(n),
        "tone": np.sin(2 * np.pi * 1000 * t),
        "tiny": 1e-300 * rng.standard_normal(n),
    }[kind]
    r = gammatone.filterbank(x, SR)
    m = n_frames(n)
    f0 = np.full(m, 150.0)
    f0[::2] = 0
    feats = extract(r, f0)
    assert feats.shape == (m, 64, 195)
    assert np.all(np.isfinite(feats))


@pytest.mark.parametrize("resp", ["zeros", "constant", "fullscale"])
def test_features_finite_on_raw_responses(resp):
    n = 3200
    r = {"zeros": np.zeros((4, n)), "constant": np.full((4, n), 0.5),
         "fullscale": np.sign(np.random.default_rng(1).standard_normal((4, n)))}[resp]
    feats = extract(r, np.full(n_frames(n), 200.0))
    assert np.all(np.isfinite(feats))


def test_bad_inputs_raise_input_error():
    r = np.zeros((4, 3200))
    with pytest.raises(InputError):
        extract(r, np.zeros(3))  # wrong f0 length
    with pytest.raises(InputError):
        extract(np.zeros(3200), np.zeros(19))
    with pytest.raises(InputError):
        extract(np.zeros((4, 100)), np.zeros(1))  # shorter than a frame
    bad = r.copy()
    bad[0, 5] = np.nan
    with pytest.raises(InputError):
        extract(bad, np.zeros(19))
    with pytest.raises(InputError):
        extract(r, np.zeros(19), sr=8000)
    with pytest.raises(InputError):
        FeatureSpec.select(families=["lpc"])


# ------------------------------------------------------------------ FeatureSpec


def test_feature_spec_names_every_dimension():
    spec = FeatureSpec()
    assert spec.n_dims == 195 == 3 * sum(FAMILIES.values())
    assert len(set(spec.names)) == 195
    assert spec.dims[0] == ("ams", 0, "none")
    assert spec.dims[65] == ("ams", 0, "time")
    assert spec.dims[130 + 15 + 13] == ("mfcc", 0, "freq")
    assert spec.dims[-1] == ("pitch", 5, "freq")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_feature_spec_subset_equals_columns_of_full(random_responses):
    r = random_responses
    f0 = _f0(n_frames(r.shape[1]))
    full = extract(r, f0)
    for spec in (FeatureSpec.select(families=["mfcc"], deltas=["none"]),
                 FeatureSpec.select(families=["ams", "pitch"], deltas=["time", "freq"]),
                 FeatureSpec.select(indices={"rasta_plp": [0, 12], "mfcc": [3]}, families=["rasta_plp", "mfcc"])):
        sub = extract(r, f0 if "pitch" in spec.families else None, spec=spec)
        np.testing.assert_array_equal(sub, full[:, :, spec.full_indices])
    assert FeatureSpec.select(families=["mfcc"], deltas=["none"]).names[:2] == ["mfcc[0]", "mfcc[1]"]


# ------------------------------------------------------------------ Normalizer


def test_normalizer_statistics_and_streaming():
    rng = np.random.default_rng(4)
    parts = [rng.normal(3.0, 2.0, (n, 4, 6)) for n in (10, 1, 25)]
    parts[0][:, :, 5] = 7.0
    for p in parts:
        p[:, :, 5] = 7.0  # a constant dimension
    allx = np.concatenate(parts)
    nz = Normalizer().fit(parts)
    np.testing.assert_allclose(nz.mean_, allx.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(nz.std_[:, :5], allx.std(axis=0)[:, :5], rtol=1e-12)
    assert np.all(nz.std_[:, 5] == 1.0)
    z = nz.transform(allx)
    np.testing.assert_allclose(z[:, :, :5].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, :, :5].std(axis=0), 1, atol=1e-12)
    nz2 = Normalizer.from_arrays(**nz.to_arrays())
    np.testing.assert_array_equal(nz2.transform(allx), z)
    with pytest.raises(InputError):
        nz.transform(allx[:, :3])
    with pytest.raises(InputError):
        Normalizer().transform(allx)


def test_assembled_features_match_extract(rng):
    """``assemble`` of a base whose pitch family was computed on its own (as the experiment does
    for each pitch setting) equals ``extract``."""
    from fastifkl import features

    x = rng.standard_normal(6400)
    R = gammatone.filterbank(x, 16000, gammatone.erb_space(80, 5000, 8))
    f0 = np.where(rng.random(1 + (6400 - 320) // 160) > 0.5, 120.0, 0.0)
    base = features.base_features(R, None, 16000, ["ams", "rasta_plp", "mfcc"])
    base["pitch"] = features.base_features(R, f0, 16000, ["pitch"])["pitch"]
    np.testing.assert_array_equal(features.assemble(base), features.extract(R, f0))


def test_zc_frequency_matches_twin_with_silence_and_exact_zeros():
    rng = np.random.default_rng(21)
    n = 4000
    x = rng.standard_normal((3, n))
    x[0, 1000:1700] = 0.0  # silence: no crossing (0 counts as positive)
    x[1, ::7] = 0.0  # exact zeros between signs
    x[2] = np.sin(2 * np.pi * 0.01 * np.arange(n))  # one crossing per 50 samples
    m = 1 + (n - 320) // 160
    got = pitch_features.zc_frequency(x, m)
    for c in range(3):
        for j in range(m):
            assert got[c, j] == pytest.approx(naive.zc_freq(x[c], 160 * j), rel=1e-12, abs=1e-15)
    ref = np.empty_like(got)
    pitch_features._zc_freq_kernel(x, m, 320, 160, ref)
    np.testing.assert_array_equal(got, ref)


def test_floored_log_matches_numpy_formula_including_nan_rows():
    from fastifkl.features import _common

    rng = np.random.default_rng(2)
    for e in (rng.random((50, 64)) ** 12, rng.random((7, 90))[:, :21], np.array([[1.0, np.nan, 2.0], [0, 0, 0]])):
        with np.errstate(invalid="ignore"):
            ref = np.log(np.maximum(e, np.maximum(1e-10 * e.max(axis=-1, keepdims=True), 1e-12)))
        np.testing.assert_array_equal(_common.floored_log(e), ref)
