"""Per-unit amplitude modulation spectrum (AMS, 15 dimensions).

Definition (REFERENCE.md section 4, Kim, Lu, Hu & Loizou 2009 style), our exact choices:
1. envelope = full-wave rectified channel response ``|r_c|``;
2. anti-alias low-pass and decimation by 4 (16 kHz -> 4 kHz): linear-phase FIR
   ``h = scipy.signal.firwin(33, 1000 Hz, fs=16000)`` (Hamming design; stop band from ~1.8 kHz,
   so nothing folds into the 0-400 Hz modulation range), aligned to zero phase:
   ``e[k] = sum_j h[j] |r|[4k + 16 - j]`` with zeros outside the signal;
3. frame m of the envelope = ``e[40 m : 40 m + 80]`` (the same 20 ms / 10 ms grid);
4. per frame: subtract the frame mean, multiply by a periodic Hann window of 80 points,
   256-point FFT magnitude (bins ``k * 4000 / 256`` Hz, k = 0..128);
5. 15 triangular windows of peak 1 with centres ``linspace(15.625, 400, 15)`` Hz and half-width
   equal to the centre spacing (27.5 Hz); feature i = sum over bins of weight * magnitude.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .. import SAMPLE_RATE
from ._common import check_responses

DECIM = 4
N_TAPS = 33
CUTOFF_HZ = 1000.0
ENV_FRAME = 80
ENV_HOP = 40
N_FFT_AMS = 256
N_BANDS = 15
F_LO = 15.625
F_HI = 400.0


@lru_cache(maxsize=2)
def antialias_fir(sr: int = SAMPLE_RATE) -> np.ndarray:
    """Windowed-sinc (Hamming) low-pass, unit DC gain; equals ``scipy.signal.firwin(33, 1000, fs=sr)``."""
    n = np.arange(N_TAPS) - (N_TAPS - 1) / 2
    h = np.sinc(2.0 * CUTOFF_HZ / sr * n) * np.hamming(N_TAPS)
    h /= h.sum()
    h.flags.writeable = False
    return h


@lru_cache(maxsize=2)
def hann_periodic(n: int = ENV_FRAME) -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.flags.writeable = False
    return w


@lru_cache(maxsize=2)
def modulation_filterbank(sr: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular modulation-frequency windows, shape (15, 129), read-only."""
    fs_env = sr / DECIM
    f = np.arange(N_FFT_AMS // 2 + 1) * (fs_env / N_FFT_AMS)
    centres = np.linspace(F_LO, F_HI, N_BANDS)
    half = centres[1] - centres[0]
    w = np.maximum(0.0, 1.0 - np.abs(f[None, :] - centres[:, None]) / half)
    w.flags.writeable = False
    return w


def envelope(responses: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decimated (4 kHz) full-wave-rectified envelope of each channel.

    Parameters
    ----------
    responses : ndarray, shape (C, N), validated

    Returns
    -------
    e : ndarray, shape (C, K) with ``K >= 40 (M + 1)``
    """
    h = np.array(antialias_fir(sr))
    n = responses.shape[1]
    out = np.empty((responses.shape[0], (n + DECIM - 1) // DECIM))
    _decimate_abs_kernel(np.ascontiguousarray(responses), h, DECIM, (N_TAPS - 1) // 2, out)
    return out


@njit(cache=True, fastmath={"reassoc", "contract"})
def _decimate_abs_kernel(r, h, decim, delay, out):
    """out[c, k] = sum_j h[j] |r[c, decim*k + delay - j]| (zeros outside the signal).

    Polyphase: the rectified signal is split into its ``decim`` phases, so that each tap adds a
    contiguous stretch of one phase to a block of outputs (SIMD over outputs, blocks of 512 stay
    in L1).  fastmath: only re-association / FMA contraction of the 33-tap sum; no finite-math
    assumptions.  Checked against scipy.signal.upfirdn to 1e-12 in the tests."""
    n_ch, n = r.shape
    n_out = out.shape[1]
    n_taps = h.shape[0]
    pad = n_taps
    base = pad + delay  # tmp index of tap j for output k: decim k + base - j
    n_ph = (n + 2 * pad + decim * n_out) // decim + 2
    ph = np.empty((decim, n_ph))
    tmp = np.zeros(decim * n_ph + decim)
    pj = np.empty(n_taps, dtype=np.int64)
    qj = np.empty(n_taps, dtype=np.int64)
    for j in range(n_taps):
        pj[j] = (base - j) % decim
        qj[j] = (base - j) // decim
    B = 512
    acc = np.empty(B)
    for c in range(n_ch):
        rc = r[c]
        for i in range(n):
            tmp[pad + i] = abs(rc[i])
        for p in range(decim):  # phase p: ph[p, q] = tmp[decim q + p]
            php = ph[p]
            for q in range(n_ph):
                php[q] = tmp[decim * q + p]
        for k0 in range(0, n_out, B):
            nb = min(B, n_out - k0)
            acc[:nb] = 0.0
            for j in range(n_taps):
                hj = h[j]
                src = ph[pj[j], k0 + qj[j]: k0 + qj[j] + nb]
                for k in range(nb):
                    acc[k] += hj * src[k]
            out[c, k0: k0 + nb] = acc[:nb]


@lru_cache(maxsize=2)
def _dft_plan(sr: int = SAMPLE_RATE):
    """The bins the modulation filterbank uses, the windowed DFT matrix of those bins split into
    the frame's two halves, the DFT of the window, and the filterbank on those bins."""
    fb = modulation_filterbank(sr)
    used = np.flatnonzero(np.any(fb != 0, axis=0))
    nb = int(used.max()) + 1  # bins 0 .. nb - 1
    i = np.arange(ENV_FRAME)[:, None]
    k = np.arange(nb)[None, :]
    ang = 2.0 * np.pi * i * k / N_FFT_AMS
    win = np.array(hann_periodic(ENV_FRAME))[:, None]
    wm = np.concatenate([win * np.cos(ang), -win * np.sin(ang)], axis=1)  # (80, 2 nb): re | im
    plan = (np.ascontiguousarray(wm[:ENV_HOP]), np.ascontiguousarray(wm[ENV_HOP:]), wm.sum(axis=0),
            np.ascontiguousarray(fb[:, :nb].T), nb)
    for a in plan[:4]:
        a.flags.writeable = False
    return plan


def from_envelope(e: np.ndarray, n_frames: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """AMS of every unit from the decimated envelope (C, K).

    The 256-point FFT of step 4 is evaluated only at the bins the modulation filterbank uses
    (0-421.9 Hz, 28 of 129) as a matrix product: frame m is the envelope's 40-sample blocks m
    and m + 1, so ``DFT(win (f - mean f)) = B_m W_1 + B_{m+1} W_2 - mean(f) DFT(win)`` for
    every unit with two GEMMs over the blocks.

    Returns
    -------
    ndarray, shape (n_frames, C, 15), frames first
    """
    c = e.shape[0]
    if e.shape[1] < (n_frames - 1) * ENV_HOP + ENV_FRAME:
        raise ValueError("envelope too short for the frame count")
    w1, w2, dc, fbt, nb = _dft_plan(sr)
    blocks = np.ascontiguousarray(np.asarray(e, dtype=np.float64)[:, : (n_frames + 1) * ENV_HOP]
                                  .reshape(c, n_frames + 1, ENV_HOP).transpose(1, 0, 2))  # (M + 1, C, 40)
    bs = blocks.sum(axis=2)  # (M + 1, C)
    mu = (bs[:-1] + bs[1:]) * (1.0 / ENV_FRAME)  # (M, C) frame means
    flat = blocks.reshape(-1, ENV_HOP)
    spec = (flat[: n_frames * c] @ w1).reshape(n_frames, c, 2 * nb)
    spec += (flat[c:] @ w2).reshape(n_frames, c, 2 * nb)
    spec -= mu[:, :, None] * dc
    spec *= spec
    mag = np.sqrt(spec[:, :, :nb] + spec[:, :, nb:])
    return mag @ fbt


def ams(responses: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Per-unit AMS features.

    Parameters
    ----------
    responses : ndarray, shape (C, N)

    Returns
    -------
    ndarray, shape (M, C, 15), frames first
    """
    r = check_responses(responses, sr)
    from ..framing import n_frames

    return from_envelope(envelope(r, sr), n_frames(r.shape[1]), sr)
