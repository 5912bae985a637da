"""Per-unit MFCC (31 coefficients).

Definition (REFERENCE.md section 4): for every unit, the Hamming-windowed 512-point power
spectrum of the channel response (see :mod:`._common`); 64 triangular mel filters over
0-8000 Hz; log with a floor (``1e-10`` of the unit's largest band energy, and an absolute floor
``1e-12``); orthonormal DCT-II; keep ``c0 .. c30``.

Choices where the reference is silent (ours):
- mel scale of HTK/O'Shaughnessy, ``mel(f) = 2595 log10(1 + f / 700)``;
- filters are triangles of peak 1 on the continuous frequency axis, with 66 edge points equally
  spaced in mel from 0 to 8000 Hz, sampled at the FFT bin frequencies ``k * 16000 / 512`` (no
  area normalisation), so every filter covers at least one bin.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import SAMPLE_RATE
from ._common import N_FFT, band_energies, check_responses, floored_log

N_FILTERS = 64
N_CEPS = 31


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_filters: int = N_FILTERS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE,
                   fmin: float = 0.0, fmax: float = 8000.0) -> np.ndarray:
    """Triangular mel filters sampled at the FFT bins.

    Returns
    -------
    W : ndarray, shape (n_filters, n_fft // 2 + 1), read-only
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_filters + 2))
    f = np.arange(n_fft // 2 + 1) * (sr / n_fft)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    w.flags.writeable = False
    return w


@lru_cache(maxsize=8)
def dct_matrix(n_in: int = N_FILTERS, n_out: int = N_CEPS) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: ``c = logE @ D``, shape (n_in, n_out)."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    d[:, 0] /= np.sqrt(2.0)
    d.flags.writeable = False
    return d


def from_power(p: np.ndarray, melmat: np.ndarray | None = None, n_ceps: int = N_CEPS) -> np.ndarray:
    """MFCC of every unit from its power spectrum.

    Parameters
    ----------
    p : ndarray, shape (..., 257)
        Power spectra (see :func:`fastifkl.features._common.power_spectrum`).
    melmat : ndarray, shape (F, 257), optional
        Filterbank; default :func:`mel_filterbank` ().
    n_ceps : int

    Returns
    -------
    ndarray, shape (..., n_ceps)
    """
    w = mel_filterbank() if melmat is None else np.asarray(melmat, dtype=np.float64)
    lead = p.shape[:-1]
    e = p.reshape(-1, p.shape[-1]) @ w.T
    return from_energies(e, n_ceps).reshape(*lead, n_ceps)


def from_energies(e: np.ndarray, n_ceps: int = N_CEPS) -> np.ndarray:
    """MFCC from mel band energies e (..., F): floored log, orthonormal DCT-II, (..., n_ceps)."""
    lead = e.shape[:-1]
    e2 = e.reshape(-1, e.shape[-1])
    return (floored_log(e2) @ dct_matrix(e2.shape[1], n_ceps)).reshape(*lead, n_ceps)


def mfcc(responses: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Per-unit MFCC.

    Parameters
    ----------
    responses : ndarray, shape (C, N)
        Gammatone filterbank outputs at 16 kHz.

    Returns
    -------
    ndarray, shape (M, C, 31), frames first
    """
    r = check_responses(responses, sr)
    (e,) = band_energies(r, [mel_filterbank()])
    return from_energies(e)
