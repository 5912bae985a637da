"""Per-unit pitch-based features (6 dimensions; Hu & Wang 2004, Jin & Wang 2009).

For a voiced frame m with pitch f0 (Hz) the lag is ``tau = round(16000 / f0)`` samples.
For the channel response r_c and for its envelope (definitions below):

- ``A(c, m, tau)``: normalised autocorrelation over the frame, Hu & Wang style (the window and
  its copy ``tau`` samples earlier; samples before the signal start are 0)::

      A = sum_n r[n] r[n - tau] / sqrt(sum_n r[n]^2 * sum_n r[n - tau]^2),
      n = 160 m .. 160 m + 319;       A = 0 if the denominator is 0.

- ``f(c, m)``: average instantaneous frequency over the frame in cycles/sample, from zero
  crossings (Hu & Wang 2004): crossing times ``t_k`` are located by linear interpolation
  between the samples of the frame whose signs differ (0 counts as positive);
  ``f = (K - 1) / (2 (t_K - t_1))`` for K >= 2 crossings, else 0.

- features ``[A, f tau - round(f tau), |f tau - round(f tau)|]`` with ``round(v) = floor(v + 0.5)``.

Envelope (Hu & Wang 2004): the half-wave rectified response, band-passed 50-550 Hz by a
2nd-order Butterworth band-pass (``scipy.signal.butter(2, (50, 550), "bandpass", output="sos")``)
run forward and then backward in time (zero phase, zero initial states, no padding).  The
same three quantities on it give ``A_E``, ``f_E tau - round(f_E tau)`` and its absolute value.
Unvoiced frames (f0 <= 0): all six are 0.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .. import FRAME_LEN, HOP, SAMPLE_RATE
from ..errors import InputError
from ._common import check_responses

ENV_BAND = (50.0, 550.0)
_ENV_SOS_16K = (
    (0.008442692929079952, 0.016885385858159904, 0.008442692929079952, 1.0, -1.7426440724764314, 0.778041978299457),
    (1.0, -2.0, 1.0, 1.0, -1.9732134550967944, 0.973658190184772),
)


@lru_cache(maxsize=2)
def envelope_sos(sr: int = SAMPLE_RATE) -> np.ndarray:
    """``scipy.signal.butter(2, (50, 550), "bandpass", fs=16000, output="sos")``, stored as
    constants so that importing the feature module does not import scipy.signal (~1 s);
    tests/test_features.py checks them against scipy."""
    if sr != SAMPLE_RATE:
        raise InputError(f"pitch envelope filter is defined at {SAMPLE_RATE} Hz")
    sos = np.array(_ENV_SOS_16K)
    sos.flags.writeable = False
    return sos


@njit(cache=True)
def _envelope_kernel(x, sos, out):
    """Half-wave rectify x (C, N), run the 2-section SOS cascade forward and then backward in
    time (transposed direct form II, zero initial states, no padding).

    Four channels at a time with their states in local scalars, so that the four independent
    recursions run side by side in one SIMD register (their latency chains overlap).  When C is
    not a multiple of 4 the last lanes repeat the last channel (same values written twice).
    """
    n_ch, n = x.shape
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    for g0 in range(0, n_ch, 4):
        xa = x[g0]
        xb = x[min(g0 + 1, n_ch - 1)]
        xc = x[min(g0 + 2, n_ch - 1)]
        xd = x[min(g0 + 3, n_ch - 1)]
        oa = out[g0]
        ob = out[min(g0 + 1, n_ch - 1)]
        oc = out[min(g0 + 2, n_ch - 1)]
        od = out[min(g0 + 3, n_ch - 1)]
        for direction in range(2):
            p0 = p1 = p2 = p3 = 0.0
            q0 = q1 = q2 = q3 = 0.0
            r0 = r1 = r2 = r3 = 0.0
            s0 = s1 = s2 = s3 = 0.0
            for ii in range(n):
                if direction == 0:
                    t = ii
                    v0 = max(xa[t], 0.0)
                    v1 = max(xb[t], 0.0)
                    v2 = max(xc[t], 0.0)
                    v3 = max(xd[t], 0.0)
                else:
                    t = n - 1 - ii
                    v0 = oa[t]
                    v1 = ob[t]
                    v2 = oc[t]
                    v3 = od[t]
                o0 = b00 * v0 + p0
                o1 = b00 * v1 + p1
                o2 = b00 * v2 + p2
                o3 = b00 * v3 + p3
                p0 = b01 * v0 - a01 * o0 + q0
                p1 = b01 * v1 - a01 * o1 + q1
                p2 = b01 * v2 - a01 * o2 + q2
                p3 = b01 * v3 - a01 * o3 + q3
                q0 = b02 * v0 - a02 * o0
                q1 = b02 * v1 - a02 * o1
                q2 = b02 * v2 - a02 * o2
                q3 = b02 * v3 - a02 * o3
                u0 = b10 * o0 + r0
                u1 = b10 * o1 + r1
                u2 = b10 * o2 + r2
                u3 = b10 * o3 + r3
                r0 = b11 * o0 - a11 * u0 + s0
                r1 = b11 * o1 - a11 * u1 + s1
                r2 = b11 * o2 - a11 * u2 + s2
                r3 = b11 * o3 - a11 * u3 + s3
                s0 = b12 * o0 - a12 * u0
                s1 = b12 * o1 - a12 * u1
                s2 = b12 * o2 - a12 * u2
                s3 = b12 * o3 - a12 * u3
                oa[t] = u0
                ob[t] = u1
                oc[t] = u2
                od[t] = u3


def pitch_envelope(responses: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Half-wave rectified, 50-550 Hz zero-phase band-passed envelope of each channel, (C, N)."""
    x = np.ascontiguousarray(responses, dtype=np.float64)
    out = np.empty_like(x)
    _envelope_kernel(x, np.array(envelope_sos(sr)), out)
    return out


def lags_from_f0(f0: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Integer pitch lags in samples (0 for unvoiced frames)."""
    f0 = np.asarray(f0, dtype=np.float64)
    tau = np.zeros(f0.shape, dtype=np.int64)
    v = f0 > 0
    tau[v] = np.floor(sr / f0[v] + 0.5).astype(np.int64)
    return tau


@njit(cache=True, fastmath={"reassoc", "contract"})
def _acf_kernel(x, tau, frame_len, hop, out):
    """Normalised autocorrelation of each channel of x (C, N) at lag tau[m] over frame m.

    fastmath: only re-association / FMA contraction of the three frame sums (SIMD); checked
    against the loop reference to 1e-6 relative in the tests."""
    n_ch, n = x.shape
    n_fr = tau.shape[0]
    for c in range(n_ch):
        for m in range(n_fr):
            t = tau[m]
            if t <= 0:
                out[c, m] = 0.0
                continue
            s0 = m * hop
            sxy = 0.0
            sxx = 0.0
            syy = 0.0
            for i in range(frame_len):
                a = x[c, s0 + i]
                j = s0 + i - t
                b = x[c, j] if j >= 0 else 0.0
                sxy += a * b
                sxx += a * a
                syy += b * b
            d = np.sqrt(sxx * syy)
            out[c, m] = sxy / d if d > 0.0 else 0.0


def acf_at_lag(x: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation A(c, m, tau_m), shape (C, M)."""
    out = np.empty((x.shape[0], tau.shape[0]))
    _acf_kernel(np.ascontiguousarray(x), np.ascontiguousarray(tau, dtype=np.int64), FRAME_LEN, HOP, out)
    return out


@njit(cache=True)
def _zc_freq_kernel(x, n_fr, frame_len, hop, out):
    """Zero-crossing frequency (cycles/sample) of each channel of x (C, N) per frame.

    One pass per channel marks the crossings at each sample boundary k (between k-1 and k)
    with their interpolated times; every frame then needs O(1) work (count by prefix sums,
    first / last crossing by next / previous-crossing indices), since frames overlap.
    """
    n_ch, n = x.shape
    cnt = np.zeros(n + 1, dtype=np.int64)  # crossings at boundaries < k
    tpos = np.zeros(n)
    nxt = np.empty(n + 1, dtype=np.int64)
    prv = np.empty(n + 1, dtype=np.int64)
    for c in range(n_ch):
        last = -1
        cnt[0] = 0
        cnt[1] = 0
        prv[0] = -1
        for k in range(1, n):
            a = x[c, k - 1]
            b = x[c, k]
            hit = (a < 0.0) != (b < 0.0)
            if hit:
                tpos[k] = (k - 1) + a / (a - b)
                last = k
            prv[k] = last
            cnt[k + 1] = cnt[k] + (1 if hit else 0)
        nx = n
        nxt[n] = n
        for k in range(n - 1, 0, -1):
            if prv[k] == k:
                nx = k
            nxt[k] = nx
        for m in range(n_fr):
            s0 = m * hop
            k_lo = s0 + 1
            k_hi = s0 + frame_len - 1  # boundaries k_lo .. k_hi lie inside the frame
            cross = cnt[k_hi + 1] - cnt[k_lo]
            if cross >= 2:
                t_first = tpos[nxt[k_lo]]
                t_last = tpos[prv[k_hi]]
                if t_last > t_first:
                    out[c, m] = (cross - 1) / (2.0 * (t_last - t_first))
                    continue
            out[c, m] = 0.0


@njit(cache=True)
def _zc_block_stats(x, b0, b1, cnt, first, last):
    """Crossings at the boundaries k = b0 .. b1 - 1 of x (boundary k lies between samples k - 1
    and k): their number (a branch-free count) and the first / last interpolated crossing time
    (a scan from each end that stops at the first crossing)."""
    c = 0
    for k in range(b0, b1):
        c += 1 if (x[k - 1] < 0.0) != (x[k] < 0.0) else 0
    cnt[0] = c
    first[0] = 0.0
    last[0] = 0.0
    if c == 0:
        return
    for k in range(b0, b1):
        a = x[k - 1]
        b = x[k]
        if (a < 0.0) != (b < 0.0):
            first[0] = (k - 1) + a / (a - b)
            break
    for k in range(b1 - 1, b0 - 1, -1):
        a = x[k - 1]
        b = x[k]
        if (a < 0.0) != (b < 0.0):
            last[0] = (k - 1) + a / (a - b)
            break


@njit(cache=True)
def _zc_freq_halves_kernel(x, n_fr, hop, out):
    """:func:`_zc_freq_kernel` for frames of two hops (frame_len = 2 hop): frame m's boundaries
    are hop m + 1 .. hop m + 2 hop - 1, i.e. the inside of hop-block m, the junction hop (m + 1)
    and the inside of block m + 1; each block's crossing count and first / last crossing are
    computed once and shared by its two frames.  Same crossing times, same formula."""
    n_ch = x.shape[0]
    nb = n_fr + 1
    bc = np.empty(nb, dtype=np.int64)
    bf = np.empty(nb)
    bl = np.empty(nb)
    one_c = np.empty(1, dtype=np.int64)
    one_f = np.empty(1)
    one_l = np.empty(1)
    for c in range(n_ch):
        xc = x[c]
        for b in range(nb):
            _zc_block_stats(xc, hop * b + 1, hop * b + hop, one_c, one_f, one_l)
            bc[b] = one_c[0]
            bf[b] = one_f[0]
            bl[b] = one_l[0]
        for m in range(n_fr):
            k = hop * (m + 1)  # the junction boundary
            a = xc[k - 1]
            b = xc[k]
            hj = (a < 0.0) != (b < 0.0)
            tj = (k - 1) + a / (a - b) if hj else 0.0
            cross = bc[m] + bc[m + 1] + (1 if hj else 0)
            if cross >= 2:
                t_first = bf[m] if bc[m] > 0 else (tj if hj else bf[m + 1])
                t_last = bl[m + 1] if bc[m + 1] > 0 else (tj if hj else bl[m])
                if t_last > t_first:
                    out[c, m] = (cross - 1) / (2.0 * (t_last - t_first))
                    continue
            out[c, m] = 0.0


def zc_frequency(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Average frequency from zero crossings, cycles/sample, shape (C, n_frames)."""
    out = np.empty((x.shape[0], n_frames))
    x = np.ascontiguousarray(x)
    if FRAME_LEN == 2 * HOP and n_frames > 0:
        _zc_freq_halves_kernel(x, n_frames, HOP, out)
    else:
        _zc_freq_kernel(x, n_frames, FRAME_LEN, HOP, out)
    return out


def _three(a: np.ndarray, f: np.ndarray, tau: np.ndarray) -> list[np.ndarray]:
    ft = f * tau[None, :]
    d = ft - np.floor(ft + 0.5)
    return [a, d, np.abs(d)]


def pitch_features(responses: np.ndarray, f0: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Per-unit pitch-based features.

    Parameters
    ----------
    responses : ndarray, shape (C, N)
    f0 : ndarray, shape (M,)
        Pitch in Hz per frame, 0 for unvoiced.

    Returns
    -------
    ndarray, shape (M, C, 6), frames first
    """
    return from_checked(check_responses(responses, sr), f0, sr)


def from_checked(r: np.ndarray, f0: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`pitch_features` of responses already validated by
    :func:`fastifkl.features._common.check_responses` (float64, C-contiguous, finite): (M, C, 6)."""
    from ..framing import n_frames

    m = n_frames(r.shape[1])
    f0 = np.asarray(f0, dtype=np.float64)
    if f0.shape != (m,):
        raise InputError(f"f0 has shape {f0.shape}, expected ({m},) frames for {r.shape[1]} samples")
    if not np.all(np.isfinite(f0)):
        raise InputError("f0 contains NaN or infinite values")
    tau = lags_from_f0(f0, sr)
    out = np.zeros((m, r.shape[0], 6))
    if not np.any(tau > 0):
        return out
    env = pitch_envelope(r, sr)
    feats = _three(acf_at_lag(r, tau), zc_frequency(r, m), tau)
    feats += _three(acf_at_lag(env, tau), zc_frequency(env, m), tau)
    for k, f in enumerate(feats):
        out[:, :, k] = f.T
    out[tau <= 0] = 0.0
    return out
