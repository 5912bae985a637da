"""Generated noises of distinct kinds for the embedded demo (no recordings needed).

Every generator has the signature ``fn(n, rng, sr=16000) -> ndarray (n,)`` and is deterministic
under ``rng`` (a ``numpy.random.Generator``); the result has unit RMS.  :func:`generate` is the
public entry point::

    x = generate("pink", seconds=8.0, seed=3)

Kinds (``KINDS``):

========== ==============================================================================
white      flat spectrum
pink       power ~ 1/f  (-3 dB per octave)
brown      power ~ 1/f^2 (-6 dB per octave), high-passed at 20 Hz
speech     speech-shaped noise: flat to ~500 Hz, then -9 dB per octave (long-term speech
           spectrum), rolled off below 100 Hz
babble     several talkers of synthesised speech summed (needs ``voices=[...]``), each
           resampled to a different pitch/tempo
hum        50 Hz mains hum: harmonics with odd emphasis, a little broadband hiss
alarm      two-tone beeper (950 / 1400 Hz square-ish tones, 4 beeps per second)
rain       rain-like crackle: a Poisson stream of short decaying band-limited drops over a
           soft high-passed hiss
wind       low-pass noise (~300 Hz) with slow gusts (0.1-1 Hz amplitude modulation)
siren      wailing siren: a 600-1500 Hz tone swept sinusoidally every 4 s, with harmonics
machine    machinery: a 120 Hz motor tone with harmonics, band noise and periodic impacts
========== ==============================================================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import SAMPLE_RATE
from .errors import InputError

__all__ = ["KINDS", "generate", "shaped_noise", "spectral_slope_db_per_octave", "spectral_centroid"]


def _unit_rms(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    r = np.sqrt(np.mean(x * x))
    if not np.isfinite(r) or r <= 0:
        raise InputError("generated noise is silent")
    return x / r


def shaped_noise(n: int, rng: np.random.Generator, power: Callable[[np.ndarray], np.ndarray],
                 sr: int = SAMPLE_RATE) -> np.ndarray:
    """Gaussian noise of length ``n`` whose power spectrum follows ``power(f)`` (f in Hz).

    White noise is shaped in the frequency domain (one real FFT over the whole signal), so the
    expected periodogram is exactly ``power(f)`` up to a constant.
    """
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    g = np.sqrt(np.maximum(power(f), 0.0))
    return _unit_rms(np.fft.irfft(spec * g, n))


def _white(n, rng, sr=SAMPLE_RATE):
    return _unit_rms(rng.standard_normal(n))


def _pink(n, rng, sr=SAMPLE_RATE):
    return shaped_noise(n, rng, lambda f: 1.0 / np.maximum(f, 10.0), sr)


def _brown(n, rng, sr=SAMPLE_RATE):
    return shaped_noise(n, rng, lambda f: 1.0 / np.maximum(f, 1.0) ** 2 / (1.0 + (20.0 / np.maximum(f, 1e-3)) ** 4), sr)


def _speech_shaped(n, rng, sr=SAMPLE_RATE):
    def ltass(f):
        hp = (f / 100.0) ** 4 / (1.0 + (f / 100.0) ** 4)  # roll-off below 100 Hz
        return hp / (1.0 + (f / 500.0) ** 3)  # -9 dB/octave above 500 Hz

    return shaped_noise(n, rng, ltass, sr)


def _babble(n, rng, sr=SAMPLE_RATE, voices: Sequence[np.ndarray] | None = None, talkers: int = 6):
    from .audio import resample

    if not voices:
        raise InputError("babble noise needs voices=[speech signals] to mix")
    out = np.zeros(n)
    rates = [13600, 14400, 15200, 16000, 16800, 17600, 18400]
    for t in range(talkers):
        order = rng.permutation(len(voices))
        parts = []
        total = 0
        while total < n + sr:  # sentences back to back with short pauses, until long enough
            for i in order:
                v = np.asarray(voices[i], dtype=np.float64)
                v = v / (np.sqrt(np.mean(v * v)) + 1e-12)
                pause = np.zeros(int(rng.uniform(0.05, 0.4) * sr))
                parts += [v, pause]
                total += v.size + pause.size
        talk = np.concatenate(parts)
        # a different playback rate per talker shifts pitch and formants (a different "speaker")
        talk = resample(talk, sr, rates[(t * 3) % len(rates)])
        start = int(rng.integers(0, max(1, talk.size - n)))
        seg = talk[start:start + n]
        if seg.size < n:
            seg = np.resize(seg, n)
        out += seg * rng.uniform(0.7, 1.0)
    return _unit_rms(out)


def _hum(n, rng, sr=SAMPLE_RATE):
    t = np.arange(n) / sr
    f0 = 50.0 * (1.0 + 0.002 * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi)))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = np.zeros(n)
    for k in range(1, 30):
        amp = (1.0 if k % 2 else 0.4) / k
        x += amp * np.sin(k * ph + rng.uniform(0, 2 * np.pi))
    hiss = shaped_noise(n, rng, lambda f: 1.0 / (1.0 + (f / 2000.0) ** 2), sr)
    return _unit_rms(_unit_rms(x) + 0.03 * hiss)


def _alarm(n, rng, sr=SAMPLE_RATE):
    t = np.arange(n) / sr
    period = 0.25
    phase0 = rng.uniform(0, period)
    k = np.floor((t + phase0) / period).astype(np.int64)
    pos = (t + phase0) - k * period
    on = pos < 0.17
    f = np.where(k % 2 == 0, 950.0, 1400.0)
    ph = 2 * np.pi * np.cumsum(f) / sr
    tone = np.tanh(3.0 * np.sin(ph))  # square-ish: odd harmonics
    ramp = np.clip(np.minimum(pos, 0.17 - pos) / 0.005, 0, 1)  # 5 ms ramps, no clicks
    x = tone * on * ramp
    return _unit_rms(x + 0.01 * rng.standard_normal(n))


def _rain(n, rng, sr=SAMPLE_RATE):
    from scipy.signal import butter, sosfilt

    x = np.zeros(n)
    n_drops = rng.poisson(300.0 * n / sr)
    pos = rng.integers(0, n, n_drops)
    amp = rng.lognormal(0.0, 0.8, n_drops) * rng.choice([-1.0, 1.0], n_drops)
    np.add.at(x, pos, amp)
    # each drop: a short burst of band-limited noise decaying in ~2 ms
    L = int(0.008 * sr)
    kern = rng.standard_normal(L) * np.exp(-np.arange(L) / (0.002 * sr))
    x = np.convolve(x, kern)[:n]
    x = sosfilt(butter(2, [1000.0, 7000.0], "band", fs=sr, output="sos"), x)
    hiss = sosfilt(butter(2, 2000.0, "high", fs=sr, output="sos"), rng.standard_normal(n))
    return _unit_rms(_unit_rms(x) + 0.15 * hiss)


def _slow_envelope(n, rng, sr, fmax_hz: float, depth: float) -> np.ndarray:
    """A positive random envelope band-limited to ``fmax_hz``: 1 + depth * (smooth noise)."""
    m = max(4, int(n / sr * fmax_hz * 4) + 4)
    knots = rng.standard_normal(m)
    xs = np.linspace(0, n - 1, m)
    from scipy.interpolate import CubicSpline

    e = CubicSpline(xs, knots)(np.arange(n))
    e = e / (np.max(np.abs(e)) + 1e-12)
    return np.exp(depth * e)


def _wind(n, rng, sr=SAMPLE_RATE):
    from scipy.signal import butter, sosfilt

    base = sosfilt(butter(2, 300.0, "low", fs=sr, output="sos"), rng.standard_normal(n))
    rumble = sosfilt(butter(2, [300.0, 900.0], "band", fs=sr, output="sos"), rng.standard_normal(n))
    g1 = _slow_envelope(n, rng, sr, 0.5, 1.2)
    g2 = _slow_envelope(n, rng, sr, 1.0, 1.5)
    return _unit_rms(_unit_rms(base) * g1 + 0.3 * _unit_rms(rumble) * g2 * g1)


def _siren(n, rng, sr=SAMPLE_RATE):
    t = np.arange(n) / sr
    f = 1050.0 + 450.0 * np.sin(2 * np.pi * t / 4.0 + rng.uniform(0, 2 * np.pi))
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * ph) / k**1.5 for k in range(1, 5))
    return _unit_rms(x + 0.01 * rng.standard_normal(n))


def _machine(n, rng, sr=SAMPLE_RATE):
    from scipy.signal import butter, sosfilt

    t = np.arange(n) / sr
    motor = sum(np.sin(2 * np.pi * 120.0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
    band = sosfilt(butter(2, [600.0, 2500.0], "band", fs=sr, output="sos"), rng.standard_normal(n))
    hits = np.zeros(n)
    period = int(sr / 5.0)
    for p in range(int(rng.integers(0, period)), n, period):
        hits[p] = rng.uniform(0.7, 1.0)
    L = int(0.05 * sr)
    tl = np.arange(L) / sr
    ring = np.exp(-tl / 0.01) * (np.sin(2 * np.pi * 2200.0 * tl) + 0.6 * np.sin(2 * np.pi * 3400.0 * tl))
    impacts = np.convolve(hits, ring)[:n]
    return _unit_rms(0.6 * _unit_rms(motor) + 0.5 * _unit_rms(band) + 0.8 * _unit_rms(impacts))


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "white": _white,
    "pink": _pink,
    "brown": _brown,
    "speech": _speech_shaped,
    "babble": _babble,
    "hum": _hum,
    "alarm": _alarm,
    "rain": _rain,
    "wind": _wind,
    "siren": _siren,
    "machine": _machine,
}


def generate(kind: str, seconds: float = 10.0, seed: int = 0, sr: int = SAMPLE_RATE,
             voices: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """One generated noise of ``kind``: float64 (N,), unit RMS, deterministic in ``seed``.

    Parameters
    ----------
    kind : one of ``KINDS``
    seconds : duration (s)
    seed : int
        Seeds ``numpy.random.default_rng([seed, index of kind])``: the kinds draw independent
        streams, and the same seed always gives the same samples.
    voices : list of 1-D arrays at ``sr``, needed by ``babble`` only (the talkers' speech).
    """
    if kind not in KINDS:
        raise InputError(f"unknown noise kind {kind!r}; available: {', '.join(KINDS)}")
    n = int(round(seconds * sr))
    if n < 2 * 320:
        raise InputError(f"noise must be at least 40 ms long, got {seconds} s")
    rng = np.random.default_rng([int(seed), list(KINDS).index(kind)])
    if kind == "babble":
        return _babble(n, rng, sr, voices=voices)
    return KINDS[kind](n, rng, sr)


# ---------------------------------------------------------------------------------------------
# Measurements (used by the tests and handy for describing a noise)


def _psd(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import welch

    return welch(x, fs=sr, nperseg=4096)


def spectral_slope_db_per_octave(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 100.0,
                                 fmax: float = 4000.0) -> float:
    """Least-squares slope of the Welch PSD (dB) against log2 frequency over [fmin, fmax]."""
    f, p = _psd(x, sr)
    sel = (f >= fmin) & (f <= fmax)
    return float(np.polyfit(np.log2(f[sel]), 10 * np.log10(p[sel]), 1)[0])


def spectral_centroid(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Power-weighted mean frequency (Hz) of the Welch PSD."""
    f, p = _psd(x, sr)
    return float(np.sum(f * p) / np.sum(p))
