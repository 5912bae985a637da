"""Pitch tracker: synthetic signals with known f0, input validation, and the corpus check
against Praat (praat-parselmouth): GPE <= 5 %, VDE <= 10 % on the clean real utterances."""
from __future__ import annotations

import numpy as np
import pytest

from fastifkl import pitch
from fastifkl.errors import InputError
from fastifkl.framing import n_frames

SR = 16000


def gpe_vde(est, ref):
    """Gross pitch error (>20 % off, on frames both call voiced) and voicing decision error."""
    both = (est > 0) & (ref > 0)
    gpe = np.mean(np.abs(est[both] - ref[both]) > 0.2 * ref[both]) if both.any() else 1.0
    return float(gpe), float(np.mean((est > 0) != (ref > 0)))


def harmonic(f0_track_hz, n_harm=12, amp_decay=0.8):
    """Harmonic complex with a sample-level f0 track (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0_track_hz) / SR
    return sum(amp_decay ** k * np.sin((k + 1) * phase) for k in range(n_harm))


def test_harmonic_glide_is_tracked():
    n = 2 * SR
    f_inst = np.linspace(100.0, 220.0, n)
    x = np.concatenate([np.zeros(4000), 0.3 * harmonic(f_inst), np.zeros(4000)])
    f0 = pitch.track(x)
    m = n_frames(x.size)
    assert f0.shape == (m,)
    centres = np.arange(m) * 160 + 160 - 4000
    ref = np.where((centres >= 400) & (centres < n - 400), np.interp(centres, np.arange(n), f_inst), 0.0)
    voiced = ref > 0
    assert np.mean(f0[voiced] > 0) > 0.97
    assert np.all(np.abs(f0[voiced & (f0 > 0)] - ref[voiced & (f0 > 0)]) < 0.03 * ref[voiced & (f0 > 0)])
    silent = (centres < -400) | (centres > n + 400)
    assert np.all(f0[silent] == 0)


def test_missing_fundamental_is_found():
    """Harmonics 3..10 of 150 Hz only: the period is still 150 Hz (the summary correlogram)."""
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * 150 * k * t) for k in range(3, 11))
    f0 = pitch.track(x)[10:-10]
    assert np.mean(np.abs(f0 - 150) < 3) > 0.95


def test_noise_and_silence_are_unvoiced():
    assert np.all(pitch.track(np.zeros(8000)) == 0)
    x = np.random.default_rng(0).standard_normal(16000)
    assert np.mean(pitch.track(x) > 0) < 0.05


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


def test_viterbi_matches_exhaustive_search():
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


def test_bad_input():
    with pytest.raises(InputError):
        pitch.track(np.zeros(100))
    with pytest.raises(InputError):
        pitch.track(np.zeros((2, 4000)))
    with pytest.raises(InputError):
        pitch.track(np.full(4000, np.nan))
    with pytest.raises(InputError):
        pitch.track(np.zeros(4000), sr=8000)


def praat_f0(x):
    """Praat's AC pitch (70-400 Hz, 10 ms step) at our frame centres, 0 = unvoiced."""
    parselmouth = pytest.importorskip("parselmouth")
    p = parselmouth.Sound(x, sampling_frequency=SR).to_pitch_ac(time_step=0.01, pitch_floor=70.0, pitch_ceiling=400.0)
    f, xs = p.selected_array["frequency"], p.xs()
    m = n_frames(x.size)
    idx = np.rint(((np.arange(m) * 160 + 160) / SR - xs[0]) / 0.01).astype(int)
    out = np.zeros(m)
    ok = (idx >= 0) & (idx < f.size)
    out[ok] = f[idx[ok]]
    return out


def _utterances(corpus_dir):
    import soundfile as sf

    files = sorted((corpus_dir / "speech" / "ieee_real").glob("*.flac"))
    assert len(files) == 20
    return [sf.read(f)[0] for f in files]


@pytest.mark.corpus
def test_clean_speech_agrees_with_praat(corpus_dir):
    both = gross = vd = total = 0
    for x in _utterances(corpus_dir):
        ref = praat_f0(x)
        est = pitch.track(x)
        b = (est > 0) & (ref > 0)
        both += b.sum()
        gross += np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b])
        vd += np.sum((est > 0) != (ref > 0))
        total += ref.size
    gpe, vde = gross / both, vd / total
    assert gpe <= 0.05, f"GPE {gpe:.3f}"
    assert vde <= 0.10, f"VDE {vde:.3f}"


@pytest.mark.corpus
def test_white_noise_mixture_at_minus_5_db(corpus_dir):
    """Regression guard at -5 dB (no acceptance threshold yet; measured ~4 % GPE, ~33 % VDE
    on all 20 utterances): loose bounds on 4 utterances."""
    import soundfile as sf

    noise, _ = sf.read(corpus_dir / "noise" / "white.flac")
    both = gross = vd = total = 0
    for i, x in enumerate(_utterances(corpus_dir)[:4]):
        n = noise[i * 50000: i * 50000 + x.size]
        n = n * np.sqrt(np.sum(x ** 2) / np.sum(n ** 2) / 10 ** (-5 / 10))
        ref = praat_f0(x)
        est = pitch.track(x + n)
        b = (est > 0) & (ref > 0)
        both += b.sum()
        gross += np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b])
        vd += np.sum((est > 0) != (ref > 0))
        total += ref.size
    assert gross / both <= 0.15
    assert vd / total <= 0.45
