"""MMSE-based noise PSD tracking and speech enhancement (Hendriks, Heusdens & Jensen, ICASSP 2010).

The comparison baseline of REFERENCE.md section 8. Per STFT frame ``l`` and frequency bin ``k``
(``P = |Y|^2`` the noisy periodogram, ``s2n`` the noise PSD of the previous frame):

1. Decision-directed a-priori SNR, used for the bias compensation::

       xi_dd = alpha |S_hat(l-1)|^2 / s2n + (1 - alpha) max(P / s2n - 1, 0),   alpha = 0.98

2. MMSE estimate of the noise periodogram under the Gaussian model, with the limited
   maximum-likelihood a-priori SNR ``xi_ml = max(P / s2n - 1, xi_ml_min)``::

       E[|N|^2 | Y] = P / (1 + xi_ml)^2 + xi_ml / (1 + xi_ml) s2n

3. Bias compensation (the paper's Eq. for B, with the regularised lower incomplete gamma
   function ``P(2, .)``; ``B(0) = 1 / (1 - 1/e)`` undoes the bias of ``E[min(P, s2n)]``)::

       B = 1 / ((1 + xi_dd) P(2, 1 / (1 + xi_dd)) + exp(-1 / (1 + xi_dd)))

4. Recursive smoothing ``s2n <- 0.8 s2n + 0.2 B E[|N|^2 | Y]``, then the "safety net" of the
   authors' reference implementation: the estimate is never below the minimum periodogram
   of the last 0.8 s (this only prevents the estimate from getting stuck far too low).

5. Speech: a-priori SNR again by decision-directed estimation with the updated noise PSD
   (floored at ``xi_min_db``), the Ephraim-Malah MMSE short-time spectral amplitude gain, and
   the MMSE speech periodogram ``E[|S|^2 | Y] = (xi/(1+xi))^2 P + xi/(1+xi) s2n`` as the
   speech PSD estimate.

Choices the paper leaves open (ours, documented here): periodic Hann analysis window of 20 ms
(320 samples at 16 kHz) with a 10 ms hop on the project's frame grid (frame ``m`` covers
samples ``[160 m, 160 m + 320)``), zero-padded FFT of 512 points (257 bins, 31.25 Hz apart),
initial noise PSD = mean periodogram of the first 5 frames (assumed noise-only, as in the
authors' code), synthesis by overlap-add (the Hann window is COLA at 50 % overlap, so the
analysis window alone gives exact reconstruction with unit gains).

:func:`mmse_mask` turns the two PSD estimates into a binary mask on the 64 gammatone channels:
each channel's speech and noise energies are the PSDs weighted by the channel's power response
``|H_c(f)|^2 = (1 + ((f - cf) / b)^2)^-4`` with ``b = 1.019 ERB(cf)`` (the 4th-order gammatone's
magnitude approximation, 1 at ``cf``), and a unit is 1 where their ratio exceeds LC.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammainc, i0e, i1e

from ..errors import InputError

__all__ = ["mmse_enhance", "mmse_mask", "gammatone_power_response", "stft_frames"]

ALPHA_DD = 0.98  # decision-directed smoothing (paper)
ALPHA_NOISE = 0.8  # noise PSD smoothing (paper)
SAFETY_NET_S = 0.8  # minimum-tracking window of the safety net, seconds
N_INIT = 5  # frames assumed noise-only at the start
NFFT_16K = 512


def _validate(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"the signal must be one-dimensional (mono), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InputError("the signal must hold real numbers")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise InputError(f"the sample rate must be a positive integer, got {sr!r}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError("the signal holds NaN or infinite samples")
    frame_len = int(round(0.02 * sr))
    if x.size < frame_len:
        raise InputError(f"the signal is too short: {x.size} samples, need at least {frame_len} (one 20 ms frame)")
    return x


def _grid(sr: int) -> tuple[int, int, int]:
    frame_len = int(round(0.02 * sr))
    hop = frame_len // 2
    nfft = 1 << int(np.ceil(np.log2(frame_len * 1.5)))  # 512 at 16 kHz
    return frame_len, hop, nfft


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (sums to exactly 1 at 50 % overlap)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def stft_frames(x: np.ndarray, sr: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed spectra of the project's frames.

    Returns
    -------
    spec : ndarray, complex, shape (F, M)
        ``F = nfft // 2 + 1`` bins (257 at 16 kHz), ``M = 1 + (N - 320) // 160`` frames.
    freqs : ndarray, shape (F,), Hz
    """
    x = _validate(x, sr)
    frame_len, hop, nfft = _grid(sr)
    m = 1 + (x.size - frame_len) // hop
    fr = np.lib.stride_tricks.sliding_window_view(x, frame_len)[: (m - 1) * hop + 1 : hop]
    spec = np.fft.rfft(fr * _hann(frame_len), n=nfft, axis=1).T
    return spec, np.fft.rfftfreq(nfft, 1.0 / sr)


def _stsa_gain(xi: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Ephraim-Malah MMSE short-time spectral amplitude gain (exponentially scaled Bessels)."""
    v = xi * gamma / (1.0 + xi)
    return (np.sqrt(np.pi) / 2.0) * (np.sqrt(v) / gamma) * ((1.0 + v) * i0e(v / 2.0) + v * i1e(v / 2.0))


def _track(spec: np.ndarray, hop_s: float, xi_min: float, xi_ml_min: float = 1e-6, *,
           bias_compensation: bool = True, safety_net: bool = True):
    """The tracker's frame recursion (vectorised over bins). Returns (gain, speech, noise), F x M.

    ``bias_compensation`` / ``safety_net`` switch those two steps off (for tests and ablations).
    """
    f, m = spec.shape
    per = spec.real**2 + spec.imag**2
    floor = 1e-12 * max(float(per.mean()), 1e-300)
    s2n = np.maximum(per[:, : min(N_INIT, m)].mean(axis=1), floor)
    net = max(1, int(round(SAFETY_NET_S / hop_s)))
    s_prev = np.zeros(f)  # |S_hat(l-1)|^2
    gain = np.empty((f, m))
    speech = np.empty((f, m))
    noise = np.empty((f, m))
    for l in range(m):
        p = per[:, l]
        # --- noise PSD update (uses the previous frame's noise PSD) ---
        gam = p / s2n
        xi_dd = ALPHA_DD * s_prev / s2n + (1.0 - ALPHA_DD) * np.maximum(gam - 1.0, 0.0)
        xi_ml = np.maximum(gam - 1.0, xi_ml_min)
        e_noise = p / (1.0 + xi_ml) ** 2 + xi_ml / (1.0 + xi_ml) * s2n
        q = 1.0 / (1.0 + xi_dd)
        bias = 1.0 / ((1.0 + xi_dd) * gammainc(2.0, q) + np.exp(-q)) if bias_compensation else 1.0
        s2n = ALPHA_NOISE * s2n + (1.0 - ALPHA_NOISE) * bias * e_noise
        if safety_net:
            s2n = np.maximum(s2n, per[:, max(0, l - net + 1) : l + 1].min(axis=1))
        s2n = np.maximum(s2n, floor)
        # --- speech estimate with the updated noise PSD ---
        gam = np.maximum(p / s2n, 1e-12)
        xi = np.maximum(ALPHA_DD * s_prev / s2n + (1.0 - ALPHA_DD) * np.maximum(gam - 1.0, 0.0), xi_min)
        g = _stsa_gain(xi, gam)
        s_prev = g * g * p
        w = xi / (1.0 + xi)
        gain[:, l] = g
        speech[:, l] = w * w * p + w * s2n
        noise[:, l] = s2n
    return gain, speech, noise


def mmse_enhance(x: np.ndarray, sr: int = 16000, *, xi_min_db: float = -25.0):
    """Enhance noisy speech with the MMSE noise-PSD tracker of Hendriks et al. (2010).

    Parameters
    ----------
    x : ndarray, shape (N,)
        Noisy signal (N >= one 20 ms frame). The first 5 frames (50 ms) are taken as noise-only
        to initialise the noise PSD.
    sr : int
        Sample rate in Hz (frames are 20 ms with a 10 ms hop at any rate).
    xi_min_db : float
        Floor of the a-priori SNR used by the spectral gain (limits musical noise).

    Returns
    -------
    enhanced : ndarray, shape (N,)
        Time-domain speech estimate (overlap-add of the gained spectra).
    speech_psd : ndarray, shape (F, M)
        MMSE speech periodogram estimate per bin and frame (F = 257 at 16 kHz, M project frames).
    noise_psd : ndarray, shape (F, M)
        Tracked noise PSD per bin and frame, on the scale of the Hann-windowed periodogram
        ``|sum_n w[n] x[n] exp(-j 2 pi k n / nfft)|^2`` (white noise of variance s^2 gives
        ``s^2 sum w^2``).
    """
    x = _validate(x, sr)
    frame_len, hop, nfft = _grid(sr)
    spec, _ = stft_frames(x, sr)
    gain, speech, noise = _track(spec, hop / sr, 10.0 ** (xi_min_db / 10.0))
    enhanced = _overlap_add(x, gain, frame_len, hop, nfft)
    return enhanced, speech, noise


def _overlap_add(x: np.ndarray, gain: np.ndarray, frame_len: int, hop: int, nfft: int) -> np.ndarray:
    """Apply per-frame gains and resynthesise by overlap-add.

    The signal is zero-padded by one hop at the start and up to two hops at the end so that
    every sample lies under two windows (their sum is exactly 1); the padded edge frames use
    the gains of the nearest real frame.
    """
    n = x.size
    m = gain.shape[1]
    tail = n - (frame_len + (m - 1) * hop)  # samples after the last whole frame, 0 <= tail < hop
    xp = np.concatenate([np.zeros(hop), x, np.zeros(frame_len - tail)])
    mp = 1 + (xp.size - frame_len) // hop
    win = _hann(frame_len)
    fr = np.lib.stride_tricks.sliding_window_view(xp, frame_len)[: (mp - 1) * hop + 1 : hop]
    spec = np.fft.rfft(fr * win, n=nfft, axis=1)
    idx = np.clip(np.arange(mp) - 1, 0, m - 1)
    out_fr = np.fft.irfft(spec * gain[:, idx].T, n=nfft, axis=1)[:, :frame_len]
    out = np.zeros(xp.size)
    for j in range(mp):  # overlap-add: two frames per sample, cheap
        out[j * hop : j * hop + frame_len] += out_fr[j]
    return out[hop : hop + n]


def gammatone_power_response(cfs: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Power response ``|H_c(f)|^2`` of 4th-order gammatone filters, 1 at each centre frequency.

    ``|H_c(f)| = (1 + ((f - cf) / b)^2)^-2`` with ``b = 1.019 * 24.7 * (4.37 cf / 1000 + 1)``.

    Parameters
    ----------
    cfs : ndarray, shape (C,), Hz
    freqs : ndarray, shape (F,), Hz

    Returns
    -------
    ndarray, shape (C, F)
    """
    cfs = np.asarray(cfs, dtype=np.float64)
    b = 1.019 * 24.7 * (4.37 * cfs / 1000.0 + 1.0)
    u = (np.asarray(freqs, dtype=np.float64)[None, :] - cfs[:, None]) / b[:, None]
    return (1.0 + u * u) ** -4


def mmse_mask(x: np.ndarray, cfs: np.ndarray, lc_db: float = -10.0, sr: int = 16000, *,
              return_energies: bool = False):
    """Binary mask (C x M) of the MMSE baseline on the gammatone channels.

    Parameters
    ----------
    x : ndarray, shape (N,)
        Noisy mixture.
    cfs : ndarray, shape (C,)
        Channel centre frequencies in Hz (``gammatone.erb_space(80, 5000, 64)``).
    lc_db : float
        Local criterion: a unit is 1 where 10 log10(speech / noise energy) > lc_db.
    sr : int
        Sample rate in Hz.
    return_energies : bool
        Also return the channel speech and noise energies (C x M each).

    Returns
    -------
    mask : ndarray of int8, shape (C, M), M = 1 + (N - 320) // 160 at 16 kHz
    (speech_energy, noise_energy) : ndarrays, shape (C, M), only with ``return_energies``
    """
    cfs = np.asarray(cfs, dtype=np.float64)
    if cfs.ndim != 1 or cfs.size == 0 or not np.all(np.isfinite(cfs)) or np.any(cfs <= 0):
        raise InputError("centre frequencies must be a non-empty 1-d array of positive numbers")
    if not np.isfinite(lc_db):
        raise InputError(f"the local criterion must be a finite number of dB, got {lc_db!r}")
    _, speech, noise = mmse_enhance(x, sr)[0:3]
    _, freqs = stft_frames(np.zeros(int(round(0.02 * sr))), sr)
    h2 = gammatone_power_response(cfs, freqs)
    es = h2 @ speech
    en = h2 @ noise
    mask = (es > en * 10.0 ** (lc_db / 10.0)).astype(np.int8)
    if return_energies:
        return mask, es, en
    return mask
