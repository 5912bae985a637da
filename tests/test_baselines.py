"""Baselines: Hendriks et al. (2010) MMSE noise-PSD tracker / enhancement, and SVM rethresholding."""
import numpy as np
import pytest
from scipy import integrate
from scipy.special import i0e

from fastifkl.baselines import gammatone_power_response, mmse_enhance, mmse_mask, noise_frames, rethreshold
from fastifkl.baselines import mmse as M
from fastifkl.baselines.rethreshold import channel_thresholds
from fastifkl.errors import InputError

SR = 16000
HANN_POWER = np.sum((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)) ** 2)  # sum w^2


def _erb_space(fmin=80.0, fmax=5000.0, n=64):
    try:
        from fastifkl.gammatone import erb_space

        return erb_space(fmin, fmax, n)
    except ImportError:  # the gammatone module is written by another engineer
        e = np.linspace(21.4 * np.log10(1 + 0.00437 * fmin), 21.4 * np.log10(1 + 0.00437 * fmax), n)
        return (10 ** (e / 21.4) - 1) / 0.00437


def speechlike(n, rng, lead_s=0.3):
    """Harmonic complex (f0 ~ 120-160 Hz with vibrato, 25 harmonics) under syllable-like
    on/off envelopes, silent for the first ``lead_s`` seconds."""
    t = np.arange(n) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / SR
    s = sum(np.sin(k * ph + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 26))
    env = np.zeros(n)
    pos = int(lead_s * SR)
    while pos < n:
        on, off = int(rng.uniform(0.15, 0.3) * SR), int(rng.uniform(0.08, 0.2) * SR)
        seg = min(on, n - pos)
        if seg > 2:
            env[pos : pos + seg] = np.hanning(seg)
        pos += on + off
    return s * env


def _mixture(seed, snr_db, seconds=4.0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    s = speechlike(n, rng)
    noise = rng.normal(size=n)
    noise *= np.sqrt(np.sum(s**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return s, noise


# ------------------------------------------------------------------------------------------
# building blocks against independent references
# ------------------------------------------------------------------------------------------
def test_stft_frames_match_direct_dft(rng):
    x = rng.normal(size=5000)
    spec, freqs = M.stft_frames(x)
    m = 1 + (5000 - 320) // 160
    assert spec.shape == (257, m) and freqs[1] == pytest.approx(31.25)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)
    for j in (0, 7, m - 1):
        seg = x[160 * j : 160 * j + 320] * w
        k = np.arange(257)[:, None]
        direct = (seg[None, :] * np.exp(-2j * np.pi * k * np.arange(320)[None, :] / 512)).sum(1)
        np.testing.assert_allclose(spec[:, j], direct, atol=1e-9)


def test_unit_gain_reconstructs_exactly(rng):
    for n in (320, 4801, 16000, 16123):  # tails of every length
        x = rng.normal(size=n)
        m = 1 + (n - 320) // 160
        y = M._overlap_add(x, np.ones((257, m)), 320, 160, 512)
        np.testing.assert_allclose(y, x, atol=1e-12)
    # a gain of 0.5 everywhere halves the signal
    x = rng.normal(size=8000)
    np.testing.assert_allclose(M._overlap_add(x, np.full((257, 49), 0.5), 320, 160, 512), 0.5 * x, atol=1e-12)


@pytest.mark.parametrize("xi,gamma", [(0.1, 0.5), (1.0, 2.0), (3.0, 8.0), (0.01, 1.5), (10.0, 0.3)])
def test_stsa_gain_is_posterior_mean_amplitude(xi, gamma):
    """Ephraim-Malah gain == E[A | Y] / |Y| by numerical integration of the Rician posterior."""
    lam_n, lam_s = 1.0, xi
    r = np.sqrt(gamma * lam_n)

    def log_joint(a):  # log p(Y | a) p(a) up to a constant, with scaled Bessel for stability
        z = 2 * a * r / lam_n
        return np.log(a + 1e-300) - a * a / lam_s - a * a / lam_n + np.log(i0e(z)) + z

    amax = r + 20 * np.sqrt(lam_s + lam_n)
    peak = max(log_joint(a) for a in np.linspace(1e-6, amax, 2000))
    num = integrate.quad(lambda a: a * np.exp(log_joint(a) - peak), 0, amax, limit=200)[0]
    den = integrate.quad(lambda a: np.exp(log_joint(a) - peak), 0, amax, limit=200)[0]
    assert M._stsa_gain(np.array([xi]), np.array([gamma]))[0] == pytest.approx(num / den / r, rel=1e-6)


@pytest.mark.parametrize("cf", [500.0, 1000.0, 3000.0])
def test_power_response_matches_gammatone_impulse_response(cf):
    """(1 + ((f-cf)/b)^2)^-4 against the FFT of t^3 exp(-2 pi b t) cos(2 pi cf t)."""
    b = 1.019 * 24.7 * (4.37 * cf / 1000 + 1)
    t = np.arange(int(0.25 * SR)) / SR
    h = t**3 * np.exp(-2 * np.pi * b * t) * np.cos(2 * np.pi * cf * t)
    nfft = 1 << 16
    freqs = np.fft.rfftfreq(nfft, 1 / SR)
    p = np.abs(np.fft.rfft(h, nfft)) ** 2
    p /= p[np.argmin(np.abs(freqs - cf))]
    band = np.abs(freqs - cf) < 1.5 * b
    ours = gammatone_power_response(np.array([cf]), freqs[band])[0]
    np.testing.assert_allclose(ours, p[band], atol=0.03)
    assert gammatone_power_response(np.array([cf]), np.array([cf]))[0, 0] == 1.0


# ------------------------------------------------------------------------------------------
# the tracker on synthetic speech in white noise
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db", [0.0, -5.0])
def test_noise_psd_converges_to_true_psd(snr_db):
    s, noise = _mixture(1, snr_db)
    _, _, noise_psd = mmse_enhance(s + noise)
    true = np.var(noise) * HANN_POWER  # periodogram level of white noise with the Hann window
    est = noise_psd[1:-1, 50:]  # skip DC/Nyquist bins and a 0.5 s warm-up
    err_db = 10 * np.log10(est / true)
    assert abs(err_db.mean()) < 1.0  # unbiased on average (measured about -0.3 / -0.5 dB)
    assert np.abs(err_db).mean() < 2.0  # per unit within ~2 dB (measured about 1.2 dB)
    per_bin = np.abs(10 * np.log10(est.mean(axis=1) / true))  # time-averaged, per bin
    assert per_bin.mean() < 1.0 and np.percentile(per_bin, 95) < 2.0  # measured 0.5 / 1.2-1.6 dB


def test_bias_compensation_is_what_keeps_it_unbiased():
    """Control: the same tracker without the bias compensation drifts far below the truth."""
    s, noise = _mixture(1, 0.0)
    spec, _ = M.stft_frames(s + noise)
    true = np.var(noise) * HANN_POWER
    _, _, with_bc = M._track(spec, 0.01, 10**-2.5)
    _, _, without = M._track(spec, 0.01, 10**-2.5, bias_compensation=False)
    assert abs(np.mean(10 * np.log10(with_bc[1:-1, 50:] / true))) < 1.0
    assert np.mean(10 * np.log10(without[1:-1, 50:] / true)) < -5.0


@pytest.mark.parametrize("snr_db", [0.0, -5.0])
def test_enhancement_raises_snr(snr_db):
    s, noise = _mixture(2, snr_db)
    y, speech_psd, noise_psd = mmse_enhance(s + noise)
    assert y.shape == s.shape and speech_psd.shape == noise_psd.shape == (257, 1 + (s.size - 320) // 160)
    snr_in = 10 * np.log10(np.sum(s**2) / np.sum(noise**2))
    snr_out = 10 * np.log10(np.sum(s**2) / np.sum((y - s) ** 2))
    assert snr_out > snr_in + 4.0  # measured gains: about +9 dB at 0 dB, +10 dB at -5 dB


def _level_after_step(step_db, seed=0, **track_kw):
    """Median-over-bins noise estimate relative to the new level, per frame after the step."""
    rng = np.random.default_rng(seed)
    n = 5 * SR
    s = speechlike(n, rng)
    noise = rng.normal(size=n)
    noise *= np.sqrt(np.sum(s**2) / np.sum(noise**2))  # 0 dB before the step
    step = 2 * SR
    new_level = np.var(noise[:step]) * HANN_POWER * 10 ** (step_db / 10)
    noise[step:] *= 10 ** (step_db / 20)
    spec, _ = M.stft_frames(s + noise)
    _, _, noise_psd = M._track(spec, 0.01, 10**-2.5, **track_kw)
    return 10 * np.log10(np.median(noise_psd[1:-1] / new_level, axis=0))[step // 160 :]


def test_tracks_a_step_up_in_noise_level():
    lvl = _level_after_step(6.0)
    assert lvl[0] < -4.0  # it starts from the old level: the step is real
    first = np.flatnonzero(lvl > -2.0)[0]
    assert first * 10 <= 500  # within 2 dB of the new level in <= 0.5 s (measured 340-370 ms)
    assert np.all(np.abs(lvl[100:]) < 1.5)  # and stays there
    # a larger step takes longer (the tracker rises ~10 dB/s) but gets there too
    lvl = _level_after_step(10.0, seed=1)
    assert np.flatnonzero(lvl > -3.0)[0] * 10 <= 1200  # measured 780-840 ms
    assert np.all(np.abs(lvl[200:]) < 1.5)


# ------------------------------------------------------------------------------------------
# the MMSE mask on the gammatone channels
# ------------------------------------------------------------------------------------------
def test_mmse_mask_against_ideal_mask():
    cfs = _erb_space()
    s, noise = _mixture(3, -5.0, seconds=3.0)
    mask = mmse_mask(s + noise, cfs, lc_db=-10.0)
    m = 1 + (s.size - 320) // 160
    assert mask.shape == (64, m) and mask.dtype == np.int8
    # ideal mask from the premixed signals through the same channel power responses
    # (agrees ~97% with the gammatone-filterbank IBM)
    ss, freqs = M.stft_frames(s)
    sn, _ = M.stft_frames(noise)
    h2 = gammatone_power_response(cfs, freqs)
    ibm = ((h2 @ np.abs(ss) ** 2) > 0.1 * (h2 @ np.abs(sn) ** 2)).astype(np.int8)
    hit = (mask & ibm).sum() / ibm.sum()
    fa = (mask & (1 - ibm)).sum() / (1 - ibm).sum()
    assert hit - fa > 0.35 and np.mean(mask == ibm) > 0.75  # measured HIT-FA 0.47, accuracy 0.80
    # pure noise: little is kept (measured 6 % of the units at LC = -10 dB)
    pure = mmse_mask(np.random.default_rng(4).normal(size=3 * SR), cfs)
    assert pure.mean() < 0.1
    # a stronger criterion keeps fewer units
    assert mmse_mask(s + noise, cfs, lc_db=0.0).sum() < mask.sum()


def test_bad_input():
    with pytest.raises(InputError):
        mmse_enhance(np.zeros(100))
    with pytest.raises(InputError):
        mmse_enhance(np.zeros((2, 1000)))
    with pytest.raises(InputError):
        mmse_enhance(np.r_[np.zeros(999), np.nan])
    with pytest.raises(InputError):
        mmse_mask(np.zeros(1000), np.array([]))
    y, sp, nz = mmse_enhance(np.zeros(1000))  # digital silence is not an error
    assert np.all(y == 0) and np.all(np.isfinite(sp)) and np.all(np.isfinite(nz))


# ------------------------------------------------------------------------------------------
# rethresholding
# ------------------------------------------------------------------------------------------
def test_rethreshold_hits_target_fa_on_pure_noise_channels():
    rng = np.random.default_rng(5)
    c, m = 12, 4000
    # decision values of a fooled SVM: most noise units come out positive, at channel-
    # dependent offsets and scales
    decision = rng.normal(loc=rng.uniform(-1, 2, c)[:, None], scale=rng.uniform(0.3, 2, c)[:, None], size=(c, m))
    energy = rng.chisquare(200, size=(c, m))  # stationary noise energies
    assert np.mean(decision > 0) > 0.5
    for target in (0.05, 0.1, 0.01):
        mask = rethreshold(decision, energy, target_fa=target)
        fa = mask.mean(axis=1)
        assert np.all(np.abs(fa - target) < 0.01), fa
    # exactly floor(target * n) units per channel above the threshold on the selected frames
    frames = noise_frames(energy)
    thr = channel_thresholds(decision, frames, 0.05)
    k = int(np.floor(0.05 * frames.sum()))
    np.testing.assert_array_equal((decision[:, frames] > thr[:, None]).sum(axis=1), k)


def test_rethreshold_with_speech_frames():
    rng = np.random.default_rng(6)
    c, m = 8, 3000
    speech = np.zeros(m, bool)
    speech[10:] = (np.arange(m - 10) // 150) % 2 == 1  # alternating 1.5 s speech / pauses
    energy = rng.chisquare(200, size=(c, m))
    energy[:, speech] *= 10 ** (8 / 10)  # +8 dB where speech is present
    quiet = noise_frames(energy, n_lead=10)
    assert np.mean(quiet[~speech]) > 0.95 and np.mean(quiet[speech]) < 0.01
    decision = rng.normal(loc=1.0, size=(c, m))  # shifted noise decisions
    decision[:, speech] += 4.0  # speech units score higher
    mask = rethreshold(decision, energy, 0.05)
    assert abs(mask[:, ~speech].mean() - 0.05) < 0.015  # FA on the noise frames at target
    assert mask[:, speech].mean() > 0.9  # speech mostly kept
    assert np.mean(decision[:, ~speech] > 0) > 0.8  # while threshold 0 would have FA > 80 %


def test_rethreshold_bad_input():
    d = np.zeros((4, 50))
    with pytest.raises(InputError):
        rethreshold(d, np.zeros((4, 49)))
    with pytest.raises(InputError):
        rethreshold(d, -np.ones((4, 50)))
    with pytest.raises(InputError):
        rethreshold(d, np.ones((4, 50)), target_fa=1.0)
    with pytest.raises(InputError):
        rethreshold(d, np.ones((4, 50)), n_lead=0)
    with pytest.raises(InputError):
        rethreshold(np.zeros(50), np.ones(50))
