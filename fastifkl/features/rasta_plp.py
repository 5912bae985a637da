"""Per-unit RASTA-PLP (13 cepstral coefficients including c0).

Definition (REFERENCE.md section 4, following Hermansky & Morgan 1994 and Ellis' rastamat):
1. the unit's Hamming-windowed 512-point power spectrum (shared with MFCC, see :mod:`._common`);
2. critical-band integration with the 21 Hermansky Bark filters over 0-8000 Hz (rastamat's
   ``fft2barkmx``: band centres equally spaced in Bark, ``bark(f) = 6 asinh(f / 600)``, weights
   ``10 ** min(0, z - c + 0.5, -2.5 (z - c - 0.5))`` on power);
3. log (floored like MFCC: ``1e-10`` of the unit's largest band, absolute ``1e-12``);
4. RASTA band-pass along frames, ``H(z) = 0.1 (2 + z^-1 - z^-3 - 2 z^-4) / (1 - 0.94 z^-1)``
   applied causally (the ``z^4`` advance of the textbook form is dropped, i.e. a 2-frame
   group delay at the centre of the derivative).  Initial state: the log spectrum is taken as
   constant (equal to frame 0) before the signal starts, for which the filter's output is 0;
   equivalently ``y = lfilter(b, a, x - x[0])`` per channel and band;
5. exp; equal-loudness weighting ``((w/(w + 1.6e5))**2) (w + 1.44e6)/(w + 9.61e6)``,
   ``w = f_c**2`` at each band centre; cube-root compression (exponent 1/3); the first and last
   bands are copied from their neighbours (as rastamat's ``postaud``);
6. autocorrelation ``r_k`` = inverse DFT of the band spectrum mirrored to 40 points
   (``r_k = (1/40) sum_j s_j cos(2 pi j k / 40)``); all-pole model of order 12 by
   Levinson-Durbin; the gain ``e`` (prediction error power) normalises the model;
7. cepstrum of the all-pole model ``e / A(z)``: ``c0 = log(e)``,
   ``c_n = -(a_n + (1/n) sum_{k=1}^{n-1} (n-k) a_k c_{n-k})``, n = 1..12. No liftering.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .. import SAMPLE_RATE
from ..errors import InputError
from ._common import N_FFT, band_energies, check_responses, floored_log

ORDER = 12
N_CEPS = 13
RASTA_B = np.array([0.2, 0.1, 0.0, -0.1, -0.2])
RASTA_A = np.array([1.0, -0.94])


def hz_to_bark(f):
    return 6.0 * np.arcsinh(np.asarray(f, dtype=np.float64) / 600.0)


def bark_to_hz(z):
    return 600.0 * np.sinh(np.asarray(z, dtype=np.float64) / 6.0)


@lru_cache(maxsize=4)
def bark_filterbank(n_fft: int = N_FFT, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Hermansky critical-band filters on the FFT bins, shape (n_bands, n_fft//2 + 1), read-only."""
    nyq_bark = float(hz_to_bark(sr / 2))
    n_bands = int(np.ceil(nyq_bark)) + 1
    step = nyq_bark / (n_bands - 1)
    z = hz_to_bark(np.arange(n_fft // 2 + 1) * (sr / n_fft))
    mid = (np.arange(n_bands) * step)[:, None]
    lof = z[None, :] - mid - 0.5
    hif = z[None, :] - mid + 0.5
    w = 10.0 ** np.minimum(0.0, np.minimum(hif, -2.5 * lof))
    w.flags.writeable = False
    return w


@lru_cache(maxsize=4)
def equal_loudness(n_bands: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Equal-loudness weights at the Bark band centres, shape (n_bands,)."""
    fc = bark_to_hz(np.linspace(0.0, float(hz_to_bark(sr / 2)), n_bands))
    fsq = fc * fc
    w = (fsq / (fsq + 1.6e5)) ** 2 * ((fsq + 1.44e6) / (fsq + 9.61e6))
    w.flags.writeable = False
    return w


@lru_cache(maxsize=4)
def _acf_matrix(n_bands: int, order: int = ORDER) -> np.ndarray:
    """``r = s @ A``: autocorrelation lags 0..order of the band spectrum mirrored to 2(B-1) points."""
    L = 2 * (n_bands - 1)
    j = np.arange(L)
    src = np.where(j < n_bands, j, L - j)  # mirrored band index
    cos = np.cos(2.0 * np.pi * np.outer(j, np.arange(order + 1)) / L) / L
    a = np.zeros((n_bands, order + 1))
    np.add.at(a, src, cos)
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------------
# Numba kernels (their NumPy/SciPy twins are in tests/naive.py)


@njit(cache=True)
def _rasta_kernel(x, x0, hist, out):
    """Causal RASTA filter along axis 0 of x (M, K), input taken relative to ``x0`` (K,).

    ``hist`` (5, K) is the filter state, updated in place: the last four (offset) inputs
    ``x[m-1] - x0 .. x[m-4] - x0`` and the last output; all zero for a constant past equal to
    ``x0`` (the whole-signal start).  Frames are the outer loop and the K = C * B columns the
    inner, contiguous one.
    """
    n_fr, n_k = x.shape
    x1 = hist[0]
    x2 = hist[1]
    x3 = hist[2]
    x4 = hist[3]
    y = hist[4]
    for m in range(n_fr):
        for k in range(n_k):
            xn = x[m, k] - x0[k]
            yn = 0.2 * xn + 0.1 * x1[k] - 0.1 * x3[k] - 0.2 * x4[k] + 0.94 * y[k]
            out[m, k] = yn
            y[k] = yn
            x4[k] = x3[k]
            x3[k] = x2[k]
            x2[k] = x1[k]
            x1[k] = xn


class RastaState:
    """The RASTA filter's state between consecutive blocks of frames of one signal.

    A new state means "the signal starts at the next frame": the first frame given becomes the
    constant past (``x0``) and the history is zero, which is the whole-signal definition.
    :func:`rasta_filter` and :func:`from_energies` update it in place, so filtering a signal's
    frames block by block with one state gives the whole-signal result.
    """

    def __init__(self):
        self.x0: np.ndarray | None = None  # (K,) log energies of the signal's first frame
        self.hist: np.ndarray | None = None  # (5, K): last four inputs (minus x0), last output


def rasta_filter(x: np.ndarray, state: RastaState | None = None) -> np.ndarray:
    """RASTA-filter log band energies ``x`` (M, ...) along frames (axis 0).

    ``state`` (optional): continue from the previous block of the same signal (updated in place).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    if x.shape[0] == 0:
        return out
    flat = x.reshape(x.shape[0], -1)
    state = RastaState() if state is None else state
    if state.x0 is None:
        state.x0 = flat[0].copy()
        state.hist = np.zeros((5, flat.shape[1]))
    elif state.x0.shape != (flat.shape[1],):
        raise InputError(f"RASTA state has {state.x0.size} columns, the frames have {flat.shape[1]}")
    _rasta_kernel(flat, state.x0, state.hist, out.reshape(x.shape[0], -1))
    return out


@njit(cache=True)
def _lpc_cep_kernel(r, out):
    """Levinson-Durbin (order p = r.shape[1]-1) and LPC cepstrum for every row of r (U, p+1).

    out (U, p+1): c0 = log(err), c1..cp.
    """
    n_u, p1 = r.shape
    for u in range(n_u):
        a = np.zeros(p1)
        tmp = np.zeros(p1)
        a[0] = 1.0
        err = r[u, 0]
        tiny = 1e-300 + 1e-15 * abs(r[u, 0])
        for i in range(1, p1):
            if err <= tiny:
                break
            acc = r[u, i]
            for j in range(1, i):
                acc += a[j] * r[u, i - j]
            k = -acc / err
            for j in range(1, i):
                tmp[j] = a[j] + k * a[i - j]
            for j in range(1, i):
                a[j] = tmp[j]
            a[i] = k
            err *= 1.0 - k * k
        out[u, 0] = np.log(max(err, 1e-300))
        for n in range(1, p1):
            s = 0.0
            for k in range(1, n):
                s += (n - k) * a[k] * out[u, n - k]
            out[u, n] = -(a[n] + s / n)


def lpc_cepstrum(r: np.ndarray) -> np.ndarray:
    """LPC cepstra (c0 = log prediction error, c1..cp) from autocorrelations r (U, p+1)."""
    r = np.ascontiguousarray(r, dtype=np.float64)
    out = np.empty_like(r)
    _lpc_cep_kernel(r, out)
    return out


# ---------------------------------------------------------------------------------------------


def from_power(p: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """RASTA-PLP cepstra of every unit from the unit power spectra.

    Parameters
    ----------
    p : ndarray, shape (M, C, 257), frames first

    Returns
    -------
    ndarray, shape (M, C, 13)
    """
    m, c, nb = p.shape
    w = bark_filterbank(2 * (nb - 1), sr)
    e = (p.reshape(-1, nb) @ w.T).reshape(m, c, w.shape[0])
    return from_energies(e, sr)


def from_energies(e: np.ndarray, sr: int = SAMPLE_RATE, state: RastaState | None = None) -> np.ndarray:
    """RASTA-PLP cepstra from critical-band energies e (M, C, B), frames first; (M, C, 13).

    ``state``: the RASTA filter state when ``e`` is a block of a longer signal's frames
    (see :class:`RastaState`); default: ``e`` starts the signal."""
    m, c, n_b = e.shape
    y = rasta_filter(floored_log(e), state)
    s = np.exp(y)
    s *= equal_loudness(n_b, sr)
    np.cbrt(s, out=s)
    s[..., 0] = s[..., 1]
    s[..., -1] = s[..., -2]
    r = s.reshape(-1, n_b) @ _acf_matrix(n_b)
    return lpc_cepstrum(r).reshape(m, c, N_CEPS)


def rasta_plp(responses: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Per-unit RASTA-PLP cepstra.

    Parameters
    ----------
    responses : ndarray, shape (C, N)

    Returns
    -------
    ndarray, shape (M, C, 13), frames first
    """
    r = check_responses(responses, sr)
    (e,) = band_energies(r, [bark_filterbank(N_FFT, sr)])
    return from_energies(e, sr)
