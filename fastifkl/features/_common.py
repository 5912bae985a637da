"""Shared pieces of the per-unit feature families: validation, the framed power spectrum.

MFCC and RASTA-PLP share one definition of the short-time power spectrum of a unit: the 320
samples of frame ``m`` of channel ``c``, Hamming-windowed (symmetric, ``np.hamming``),
zero-padded to 512 points, ``|rfft|**2`` (257 bins, no 1/N scaling).  It is computed once per
call of :func:`fastifkl.features.extract` and handed to both families.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .. import FRAME_LEN, HOP, SAMPLE_RATE
from ..errors import InputError
from ..framing import check_length

N_FFT = 512
N_BINS = N_FFT // 2 + 1
ABS_FLOOR = 1e-12  # absolute floor of band energies before the log (about -120 dB re unit power)
REL_FLOOR = 1e-10  # floor relative to the unit's largest band energy


def check_responses(responses, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Validate filterbank responses; return a C-contiguous float64 (C, N) array."""
    r = np.asarray(responses)
    if r.ndim != 2:
        raise InputError(f"responses must be a 2-D (channels, samples) array, got shape {r.shape}")
    if r.shape[0] < 1:
        raise InputError("responses have no channels")
    if int(sr) != SAMPLE_RATE:
        raise InputError(f"features are defined at {SAMPLE_RATE} Hz; got sr={sr} (resample first)")
    check_length(r.shape[1], "responses")
    r = np.ascontiguousarray(r, dtype=np.float64)
    # max / min propagate NaN and expose +-inf, without a (C, N) boolean temporary
    if not (np.isfinite(r.max()) and np.isfinite(r.min())):
        raise InputError("responses contain NaN or infinite values")
    return r


@lru_cache(maxsize=4)
def hamming(n: int = FRAME_LEN) -> np.ndarray:
    w = np.hamming(n)
    w.flags.writeable = False
    return w


@njit(cache=True)
def _window_pad_kernel(r, win, hop, out):
    """out[m, c, :L] = win * r[c, m*hop : m*hop+L]; out[m, c, L:] = 0.  out: (M, C, n_fft)."""
    n_fr, n_ch, n_fft = out.shape
    L = win.shape[0]
    for c in range(n_ch):
        for m in range(n_fr):
            s0 = m * hop
            for i in range(L):
                out[m, c, i] = win[i] * r[c, s0 + i]
            for i in range(L, n_fft):
                out[m, c, i] = 0.0


@njit(cache=True)
def _abs2_kernel(spec, out):
    """out = |spec|**2 elementwise (flat)."""
    a = spec.reshape(-1)
    o = out.reshape(-1)
    for i in range(a.size):
        v = a[i]
        o[i] = v.real * v.real + v.imag * v.imag


def power_spectrum(responses: np.ndarray) -> np.ndarray:
    """Power spectrum of every unit.

    Parameters
    ----------
    responses : ndarray, shape (C, N), validated, C-contiguous float64

    Returns
    -------
    P : ndarray, shape (M, C, 257), frames first
        ``|rfft(hamming(320) * frame, 512)|**2`` for every frame and channel.
    """
    c = responses.shape[0]
    m = check_length(responses.shape[1])
    buf = np.empty((m, c, N_FFT))
    _window_pad_kernel(responses, np.asarray(hamming(FRAME_LEN)), HOP, buf)
    spec = np.fft.rfft(buf, axis=-1)
    del buf
    p = np.empty(spec.shape)
    _abs2_kernel(spec, p)
    return p


CHUNK = 16  # frames per batch: the (CHUNK, C, 512) FFT buffers stay in cache


def _sparse_by_bin(w: np.ndarray):
    """(idx, val) with the <= 2 non-zero rows of each column of w, or None if a column has more."""
    w = np.asarray(w, dtype=np.float64)
    nz = w != 0
    if nz.sum(axis=0).max() > 2:
        return None
    idx = np.full((w.shape[1], 2), -1, dtype=np.int64)
    val = np.zeros((w.shape[1], 2))
    for k in range(w.shape[1]):
        rows = np.flatnonzero(nz[:, k])
        idx[k, : rows.size] = rows
        val[k, : rows.size] = w[rows, k]
    return idx, val


@njit(cache=True)
def _abs2_sparse_kernel(spec, p, idx, val, out, row0):
    """p = |spec|**2 and, for every unit u, out[row0 + u, j] = sum_k W[j, k] p[u, k] for a
    filterbank W with at most two non-zeros per bin (idx / val: (bins, 2), -1 = none)."""
    n, c, nb = spec.shape
    n_f = out.shape[1]
    for a in range(n):
        for b in range(c):
            row = row0 + a * c + b
            for j in range(n_f):
                out[row, j] = 0.0
            for k in range(nb):
                v = spec[a, b, k]
                pw = v.real * v.real + v.imag * v.imag
                p[a, b, k] = pw
                j0 = idx[k, 0]
                if j0 >= 0:
                    out[row, j0] += val[k, 0] * pw
                j1 = idx[k, 1]
                if j1 >= 0:
                    out[row, j1] += val[k, 1] * pw


def band_energies(responses: np.ndarray, mats: list[np.ndarray]) -> list[np.ndarray]:
    """Filterbank energies ``P @ W.T`` of every unit for several filterbanks at once.

    The power spectra are made and consumed in batches of :data:`CHUNK` frames, so the big
    (M, C, 512) spectrum array is never formed.  A filterbank with at most two non-zero
    weights per bin (the triangular mel bank) is applied sparsely inside the ``|X|**2``
    kernel (one filterbank at most); the others with one BLAS product.

    Parameters
    ----------
    responses : ndarray, shape (C, N), validated
    mats : list of ndarray, each (F_i, 257)

    Returns
    -------
    list of ndarray, each (M, C, F_i), frames first
    """
    c = responses.shape[0]
    m = check_length(responses.shape[1])
    sparse_i, sp = None, None
    for i, w in enumerate(mats):
        sp = _sparse_by_bin(w)
        if sp is not None:
            sparse_i = i
            break
    dense = [i for i in range(len(mats)) if i != sparse_i]
    wt = np.ascontiguousarray(np.concatenate([np.asarray(mats[i]) for i in dense], axis=0).T) if dense else None
    out_d = np.empty((m * c, wt.shape[1])) if dense else None
    out_s = np.empty((m * c, np.asarray(mats[sparse_i]).shape[0])) if sparse_i is not None else None
    buf = np.empty((CHUNK, c, N_FFT))
    p = np.empty((CHUNK, c, N_BINS))
    win = np.asarray(hamming(FRAME_LEN))
    for m0 in range(0, m, CHUNK):
        n = min(CHUNK, m - m0)
        _window_pad_kernel(responses[:, m0 * HOP:], win, HOP, buf[:n])
        spec = np.fft.rfft(buf[:n], axis=-1)
        if sparse_i is not None:
            _abs2_sparse_kernel(spec, p[:n], sp[0], sp[1], out_s, m0 * c)
        else:
            _abs2_kernel(spec, p[:n])
        if dense:
            np.matmul(p[:n].reshape(-1, N_BINS), wt, out=out_d[m0 * c:(m0 + n) * c])
    res = []
    o = 0
    for i, w in enumerate(mats):
        k = np.asarray(w).shape[0]
        if i == sparse_i:
            res.append(out_s.reshape(m, c, k))
        else:
            res.append(out_d[:, o:o + k].reshape(m, c, k))
            o += k
    return res


@njit(cache=True)
def _floor_rows_kernel(e, out):
    """out[i, :] = max(e[i, :], max(REL_FLOOR * max(e[i, :]), ABS_FLOOR)) for a 2-D e; returns
    False (out incomplete) if e holds a NaN."""
    n, k = e.shape
    for i in range(n):
        row = e[i]
        mx = row[0]
        nan = 0
        for j in range(k):
            v = row[j]
            mx = max(mx, v)
            nan += 1 if v != v else 0
        if nan:
            return False
        fl = max(REL_FLOOR * mx, ABS_FLOOR)
        o = out[i]
        for j in range(k):
            o[j] = max(row[j], fl)
    return True


def floored_log(e: np.ndarray) -> np.ndarray:
    """``log(max(e, REL_FLOOR * max(e over the last axis), ABS_FLOOR))``, elementwise.

    The floor is applied in one pass (:func:`_floor_rows_kernel`), the log in place."""
    e = np.asarray(e, dtype=np.float64)
    if e.ndim > 0 and e.shape[-1] > 0:
        e2 = e.reshape(-1, e.shape[-1])
        out = np.empty(e2.shape)
        if _floor_rows_kernel(e2, out):
            np.log(out, out=out)
            return out.reshape(e.shape)
    floor = np.maximum(REL_FLOOR * e.max(axis=-1, keepdims=True), ABS_FLOOR)  # NaN (or empty) input
    return np.log(np.maximum(e, floor))
