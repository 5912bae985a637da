"""Periodicity front end of the learned pitch tracker: a pooled correlogram per frame.

From the gammatone responses (C, N) at 16 kHz (the separator's 64-channel filterbank):

1. Signals at 8 kHz.  Channels with centre frequency below ``raw_max_hz`` are used as they
   are (their harmonics are resolved), decimated by the mean of sample pairs (a channel below
   2 kHz has nothing left near 4 kHz after its gammatone filter).  Channels at or above
   ``env_min_hz`` are replaced by their envelope, which carries the pitch of unresolved
   harmonics: half-wave rectified, mean of sample pairs, then a causal 2nd-order Butterworth
   band-pass 50-550 Hz at 8 kHz (:func:`envelope_8k`).  Channels in the overlap give both.
2. Correlogram.  For frame m (16 kHz samples [160 m, 160 m + 320), centre 160 m + 160) the
   window is ``n_win`` hops of 80 samples at 8 kHz starting at ``80 m + 40 - 40 n_win``, and
   for lags tau = lag_lo .. lag_hi (8 kHz samples)::

       A(c, m, tau) = sum_n y[n] y[n + tau] / sqrt(sum_n y[n]^2 * sum_n y[n + tau]^2)

   (sums over the window; 0 when the denominator is below 1e-20; samples outside the signal
   are 0).  The products are summed per hop once and shared by the ``n_win`` frames that
   contain the hop (:func:`correlogram`).
3. Pooling.  The pitch range 70-400 Hz is cut into ``n_bins`` log-spaced bins
   (:func:`bin_centres`).  A channel's value in bin k is the largest A over the lags of the
   bin: the integer lags inside the bin's lag interval and the linearly interpolated values
   at its two edges (:func:`bin_pool`).  A peak anywhere in the bin counts, so the many
   oscillations of a high channel's correlogram neither alias nor fall between samples.
4. Novelty.  ``N = B - (running minimum of B over frames m - novelty .. m + novelty)``, per
   signal and bin: periodicity that is there all the time (hum, a steady tone, a motor) is
   removed, a voice's changing pitch is not.
5. Statistics across signals (:func:`frame_features`), separately for the raw and the envelope
   signals, for B and for N, per bin: the mean, the share of signals above each of three
   thresholds, and the mean of the three largest.  They do not depend on *which* channels
   carry the evidence, so they do not learn the spectral shape of the training noises.  Plus
   the log energy of groups of ``group`` adjacent raw channels relative to the largest total
   energy within ``energy_window`` frames.

Everything is local: a frame depends on the signal within ``max(novelty, energy_window)``
frames of it (plus ~60 ms and the envelope filter's decaying tail).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from . import SAMPLE_RATE
from .errors import InputError

SR_DEC = SAMPLE_RATE // 2  # 8 kHz
HOP_DEC = 80  # 10 ms at 8 kHz
# scipy.signal.butter(2, (50, 550), "bandpass", fs=8000, output="sos"), stored so that importing
# this module does not import scipy.signal; tests/test_pitch.py checks them against scipy.
ENV_SOS_8K = np.array([
    [0.029954582208092467, 0.059909164416184935, 0.029954582208092467, 1.0, -1.4783940942229903, 0.6055733512694984],
    [1.0, -2.0, 1.0, 1.0, -1.946211299137657, 0.9479642951271139],
])


@dataclass(frozen=True)
class FrontEnd:
    """Settings of the periodicity front end (stored with the network weights)."""

    fmin: float = 70.0
    fmax: float = 400.0
    n_bins: int = 60
    n_win: int = 3
    raw_max_hz: float = 2000.0
    env_min_hz: float = 800.0
    group: int = 4
    novelty: int = 50
    energy_window: int = 100
    thresholds: tuple = (0.95, 0.85, 0.7)
    novelty_thresholds: tuple = (0.6, 0.4, 0.2)
    top: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FrontEnd:
        d = dict(d)
        for k in ("thresholds", "novelty_thresholds"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    def n_features(self, n_raw_groups: int) -> int:
        per = 1 + len(self.thresholds) + 1 + 1 + len(self.novelty_thresholds) + 1
        return 2 * per * self.n_bins + n_raw_groups

    def lag_range(self) -> tuple[int, int]:
        """Integer lags (8 kHz samples) covering every bin, with a sample to spare each side."""
        e = bin_edges(self.fmin, self.fmax, self.n_bins)
        return int(np.floor(SR_DEC / e[-1])) - 1, int(np.ceil(SR_DEC / e[0])) + 1


def bin_centres(fmin: float = 70.0, fmax: float = 400.0, n_bins: int = 60) -> np.ndarray:
    """Log-spaced bin centres in Hz, ``fmin`` .. ``fmax`` inclusive, shape (n_bins,)."""
    return fmin * (fmax / fmin) ** (np.arange(n_bins) / (n_bins - 1))


def bin_edges(fmin: float = 70.0, fmax: float = 400.0, n_bins: int = 60) -> np.ndarray:
    """Geometric mid-points between centres, plus half a step outside the end ones: (n_bins + 1,)."""
    lc = np.log(bin_centres(fmin, fmax, n_bins))
    h = 0.5 * (lc[1] - lc[0])
    return np.exp(np.concatenate([[lc[0] - h], lc[:-1] + h, [lc[-1] + h]]))


@njit(cache=True, fastmath={"reassoc", "contract"})
def _hop_products(y, n_hops, hop, lag_lo, n_lags, P):
    """P[h, l] = sum_{i < hop} y[h hop + i] y[h hop + i + lag_lo + l] (float32, SIMD over l).

    fastmath: re-association / FMA of these sums only (checked against the float64 NumPy twin
    in the tests).  Slices keep the indices non-negative so no wrap-around test blocks SIMD."""
    acc = np.empty(n_lags, dtype=np.float32)
    for h in range(n_hops):
        s0 = h * hop
        acc[:] = 0.0
        for i in range(0, hop, 4):
            a0 = y[s0 + i]
            a1 = y[s0 + i + 1]
            a2 = y[s0 + i + 2]
            a3 = y[s0 + i + 3]
            yb = y[s0 + lag_lo + i: s0 + lag_lo + i + n_lags + 3]
            for l in range(n_lags):
                acc[l] += a0 * yb[l] + a1 * yb[l + 1] + a2 * yb[l + 2] + a3 * yb[l + 3]
        P[h, :] = acc


@njit(cache=True)
def _nccf_from_products(y, P, n_fr, n_win, hop, lag_lo, n_lags, sq, A):
    """A[m, l] from the hop products and the running energy of y (float64)."""
    s = 0.0
    sq[0] = 0.0
    for i in range(y.shape[0]):
        s += np.float64(y[i]) * np.float64(y[i])
        sq[i + 1] = s
    W = n_win * hop
    num = np.empty(n_lags, dtype=np.float64)
    for m in range(n_fr):
        num[:] = 0.0
        for j in range(n_win):
            pj = P[m + j]
            for l in range(n_lags):
                num[l] += pj[l]
        st = m * hop
        e0 = sq[st + W] - sq[st]
        lo = sq[st + lag_lo: st + lag_lo + n_lags]
        hi = sq[st + lag_lo + W: st + lag_lo + W + n_lags]
        am = A[m]
        for l in range(n_lags):
            d = e0 * (hi[l] - lo[l])
            am[l] = num[l] / np.sqrt(d) if d > 1e-20 else 0.0


@njit(cache=True)
def _correlogram_kernel(yp, n_fr, n_win, hop, lag_lo, n_lags, out):
    n_hops = n_fr + n_win - 1
    P = np.empty((n_hops, n_lags), dtype=np.float32)
    sq = np.empty(yp.shape[1] + 1)
    for c in range(yp.shape[0]):
        _hop_products(yp[c], n_hops, hop, lag_lo, n_lags, P)
        _nccf_from_products(yp[c], P, n_fr, n_win, hop, lag_lo, n_lags, sq, out[c])


def correlogram(y: np.ndarray, n_fr: int, lag_lo: int, lag_hi: int, n_win: int = 3) -> np.ndarray:
    """Normalised autocorrelation of 8 kHz signals per 10 ms frame (see the module docstring).

    Parameters
    ----------
    y : ndarray, shape (C, n)
        Signals at 8 kHz.
    n_fr : int
        Frames (frame m is centred on 8 kHz sample ``80 m + 80``).
    lag_lo, lag_hi : int
        Lag range in 8 kHz samples, inclusive.
    n_win : int
        Window length in 10 ms hops.

    Returns
    -------
    A : ndarray, shape (C, n_fr, lag_hi - lag_lo + 1), float32
    """
    y = np.asarray(y, dtype=np.float32)
    n_lags = lag_hi - lag_lo + 1
    pad_l = 40 * n_win - 40
    n_hops = n_fr + n_win - 1
    total = pad_l + n_hops * HOP_DEC + lag_hi + 4 + HOP_DEC
    yp = np.zeros((y.shape[0], max(total, pad_l + y.shape[1])), dtype=np.float32)
    yp[:, pad_l: pad_l + y.shape[1]] = y
    out = np.empty((y.shape[0], n_fr, n_lags), dtype=np.float32)
    _correlogram_kernel(yp, n_fr, n_win, HOP_DEC, lag_lo, n_lags, out)
    return out


def _pool_plan(fe: FrontEnd, lag_lo: int, n_lags: int):
    """Per bin: its two interpolated edge points (index, weight) and its integer-lag span."""
    e = SR_DEC / bin_edges(fe.fmin, fe.fmax, fe.n_bins)  # lag edges, decreasing
    k = fe.n_bins
    i0 = np.empty((k, 2), dtype=np.int64)
    w = np.empty((k, 2))
    span = np.empty((k, 2), dtype=np.int64)
    for b in range(k):
        lo, hi = e[b + 1], e[b]
        for j, p in enumerate((lo, hi)):
            fl = int(np.floor(p))
            i0[b, j] = fl - lag_lo
            w[b, j] = p - fl
        span[b, 0] = int(np.ceil(lo)) - lag_lo
        span[b, 1] = int(np.floor(hi)) - lag_lo + 1  # exclusive
    if i0.min() < 0 or i0.max() + 1 >= n_lags or span.min() < 0 or span.max() > n_lags:
        raise InputError("internal: pitch bins fall outside the correlogram's lag range")
    return i0, w, span


@njit(cache=True)
def _pool_groups_kernel(A, i0, w, span, group_of, inv_size, out):
    """out[m, g, k] += inv_size[g] * max over bin k of A[c, m, :], for each signal c of group g."""
    n_c, n_fr, _ = A.shape
    n_b = i0.shape[0]
    for c in range(n_c):
        g = group_of[c]
        s = inv_size[g]
        for m in range(n_fr):
            a = A[c, m]
            o = out[m, g]
            for b in range(n_b):
                j = i0[b, 0]
                v = (1.0 - w[b, 0]) * a[j] + w[b, 0] * a[j + 1]
                j = i0[b, 1]
                v2 = (1.0 - w[b, 1]) * a[j] + w[b, 1] * a[j + 1]
                if v2 > v:
                    v = v2
                for t in range(span[b, 0], span[b, 1]):
                    if a[t] > v:
                        v = a[t]
                o[b] += s * v


def bin_pool(A: np.ndarray, fe: FrontEnd, lag_lo: int, group_of: np.ndarray) -> np.ndarray:
    """Pooled correlogram averaged over groups: (M, n_groups, n_bins) float32.

    ``A`` is (C, M, L) from :func:`correlogram` with lags starting at ``lag_lo``; ``group_of``
    (C,) gives each signal's group."""
    group_of = np.asarray(group_of, dtype=np.int64)
    n_g = int(group_of.max()) + 1
    sizes = np.bincount(group_of, minlength=n_g).astype(np.float32)
    i0, w, span = _pool_plan(fe, lag_lo, A.shape[2])
    out = np.zeros((A.shape[1], n_g, fe.n_bins), dtype=np.float32)
    _pool_groups_kernel(A, i0, w.astype(np.float32), span, group_of, (1.0 / sizes).astype(np.float32), out)
    return out


def _groups(n: int, size: int, start: int = 0) -> np.ndarray:
    return start + np.arange(n) // size


def channel_layout(cfs: np.ndarray, fe: FrontEnd):
    """Indices of the raw and envelope channels and the group of every signal."""
    cfs = np.asarray(cfs, dtype=np.float64)
    raw = np.flatnonzero(cfs < fe.raw_max_hz)
    env = np.flatnonzero(cfs >= fe.env_min_hz)
    g_raw = _groups(raw.size, fe.group)
    n_raw_g = int(g_raw.max()) + 1 if raw.size else 0
    g_env = _groups(env.size, fe.group, n_raw_g)
    return raw, env, np.concatenate([g_raw, g_env]), n_raw_g


def decimate2(r: np.ndarray) -> np.ndarray:
    """Mean of sample pairs along the last axis: (..., N) -> (..., N // 2) float32."""
    n2 = r.shape[-1] // 2
    out = r[..., 0: 2 * n2: 2].astype(np.float32)
    out += r[..., 1: 2 * n2: 2]
    out *= 0.5
    return out


@njit(cache=True)
def _signals_kernel(r, raw, env, sos, out):
    """Raw channels: mean of sample pairs; envelope channels: half-wave rectify, mean of pairs,
    causal SOS cascade (zero initial state).  out (len(raw) + len(env), N // 2) float32."""
    n2 = r.shape[1] // 2
    for j in range(raw.shape[0]):
        x = r[raw[j]]
        o = out[j]
        for i in range(n2):
            o[i] = 0.5 * (x[2 * i] + x[2 * i + 1])
    ns = sos.shape[0]
    z1 = np.zeros(ns)
    z2 = np.zeros(ns)
    for j in range(env.shape[0]):
        x = r[env[j]]
        o = out[raw.shape[0] + j]
        z1[:] = 0.0
        z2[:] = 0.0
        for i in range(n2):
            a = x[2 * i]
            b = x[2 * i + 1]
            v = 0.5 * ((a if a > 0.0 else 0.0) + (b if b > 0.0 else 0.0))
            for s in range(ns):
                w = sos[s, 0] * v + z1[s]
                z1[s] = sos[s, 1] * v - sos[s, 4] * w + z2[s]
                z2[s] = sos[s, 2] * v - sos[s, 5] * w
                v = w
            o[i] = v


def envelope_8k(responses: np.ndarray) -> np.ndarray:
    """Envelope of each channel at 8 kHz, (C, N // 2) float32 (see the module docstring)."""
    r = np.ascontiguousarray(responses)
    out = np.empty((r.shape[0], r.shape[1] // 2), dtype=np.float32)
    _signals_kernel(r, np.zeros(0, dtype=np.int64), np.arange(r.shape[0]), ENV_SOS_8K, out)
    return out


def signals(responses: np.ndarray, cfs: np.ndarray, fe: FrontEnd):
    """The 8 kHz raw and envelope signals (S, N // 2) float32, their groups (S,), raw-group count."""
    raw, env, group_of, n_raw_g = channel_layout(cfs, fe)
    r = np.asarray(responses)
    if r.dtype not in (np.float32, np.float64) or not r.flags.c_contiguous:
        r = np.ascontiguousarray(r, dtype=np.float64)
    out = np.empty((raw.size + env.size, r.shape[1] // 2), dtype=np.float32)
    _signals_kernel(r, raw.astype(np.int64), env.astype(np.int64), ENV_SOS_8K, out)
    return out, group_of, n_raw_g


@njit(cache=True)
def running_min(B, w, out):
    """out[m] = min(B[max(0, m - w) : m + w + 1]) along axis 0 of B (M, F), van Herk / Gil-Werman
    (three passes, O(M F) whatever w)."""
    M, F = B.shape
    L = 2 * w + 1
    n_blk = (M + w + L - 1) // L + 1
    P = n_blk * L  # padded length: index i of the padded array is frame i - w
    g = np.empty((P, F), dtype=B.dtype)
    h = np.empty((P, F), dtype=B.dtype)
    big = np.inf
    for i in range(P):
        src = i - w
        for f in range(F):
            v = B[src, f] if 0 <= src < M else big
            if i % L == 0:
                g[i, f] = v
            else:
                g[i, f] = min(g[i - 1, f], v)
    for i in range(P - 1, -1, -1):
        src = i - w
        for f in range(F):
            v = B[src, f] if 0 <= src < M else big
            if i % L == L - 1 or i == P - 1:
                h[i, f] = v
            else:
                h[i, f] = min(h[i + 1, f], v)
    for m in range(M):
        # window [m - w, m + w] in frames = padded [m, m + 2w]
        for f in range(F):
            out[m, f] = min(h[m, f], g[m + 2 * w, f])


@njit(cache=True)
def _stats_kernel(B, s0, s1, thr, top, out, col):
    """Across signals s0..s1-1 of B (M, S, K): mean, share above each threshold, mean of the
    ``top`` largest; written to out[:, col + j * K + k].

    Per frame, the signals are visited in order with the K bins innermost (contiguous rows of
    B, per-bin accumulators), so every bin sees its values in the same order as a loop over
    signals per bin would (same sums); the top list is kept sorted by a min / max insertion
    (same values as an insertion sort)."""
    M, S, K = B.shape
    n = s1 - s0
    nt = thr.shape[0]
    best = np.empty((top, K), dtype=np.float32)
    tot = np.empty(K)
    cnt = np.empty((nt, K))
    kk = min(top, n)
    for m in range(M):
        tot[:] = 0.0
        cnt[:] = 0.0
        best[:] = -np.inf
        for s in range(s0, s1):
            row = B[m, s]
            for k in range(K):  # branch-free (SIMD over k)
                v = row[k]
                tot[k] += v
                for t in range(nt):
                    cnt[t, k] += 1.0 if v > thr[t] else 0.0
                # insert v into the descending list best[:, k] (min / max network)
                for j in range(top - 1, 0, -1):
                    best[j, k] = max(best[j, k], min(best[j - 1, k], v))
                best[0, k] = max(best[0, k], v)
        for k in range(K):
            out[m, col + k] = tot[k] / n
            for t in range(nt):
                out[m, col + (1 + t) * K + k] = cnt[t, k] / n
            q = 0.0
            for j in range(kk):
                q += best[j, k]
            out[m, col + (1 + nt) * K + k] = q / kk


def cross_stats(B: np.ndarray, n_raw: int, thresholds, top: int) -> np.ndarray:
    """Per-bin statistics across the raw (first ``n_raw``) and the envelope signals of B (M, S, K):
    (M, 2 (len(thresholds) + 2) K), raw block first; within a block the mean (K values), the
    share above each threshold (K each), the mean of the ``top`` largest (K)."""
    M, S, K = B.shape
    thr = np.asarray(thresholds, dtype=np.float64)
    per = (thr.size + 2) * K
    out = np.empty((M, 2 * per), dtype=np.float32)
    for j, (a, b) in enumerate(((0, n_raw), (n_raw, S))):
        if b <= a:
            raise InputError("internal: a signal family of the pitch front end is empty")
        _stats_kernel(np.ascontiguousarray(B, dtype=np.float32), a, b, thr, top, out, j * per)
    return out


def band_energy_db(y_raw: np.ndarray, group_of: np.ndarray, n_fr: int, window: int) -> np.ndarray:
    """Log energy of groups of raw signals per frame relative to the local maximum of their sum.

    ``y_raw`` (R, n) at 8 kHz; frame m covers samples [80 m, 80 m + 160).  Returns (M, G):
    ``max(10 log10(E_g + 1e-10) - max_{|j| <= window} 10 log10(E_tot(m + j) + 1e-10), -80) / 20``.
    """
    from .framing import n_frames  # noqa: F401  (frame grid documented there)

    n_g = int(group_of.max()) + 1
    need = (n_fr + 1) * HOP_DEC
    y = np.zeros((y_raw.shape[0], need), dtype=np.float64)
    k = min(need, y_raw.shape[1])
    y[:, :k] = y_raw[:, :k]
    e = np.einsum("rhi,rhi->rh", y.reshape(y.shape[0], n_fr + 1, HOP_DEC), y.reshape(y.shape[0], n_fr + 1, HOP_DEC))
    e = e[:, :n_fr] + e[:, 1:]
    eg = np.zeros((n_g, n_fr))
    np.add.at(eg, group_of, e)
    tot = 10.0 * np.log10(eg.sum(axis=0) + 1e-10)
    ref = -running_min_1d(-tot, window)
    return (np.maximum(10.0 * np.log10(eg + 1e-10) - ref[None, :], -80.0) / 20.0).T.astype(np.float32)


def running_min_1d(v: np.ndarray, w: int) -> np.ndarray:
    v = np.ascontiguousarray(v, dtype=np.float64)[:, None]
    out = np.empty_like(v)
    running_min(v, w, out)
    return out[:, 0]


def frame_features(responses: np.ndarray, cfs: np.ndarray, fe: FrontEnd, n_fr: int) -> tuple[np.ndarray, np.ndarray]:
    """Network input per frame (M, D) float32 and the raw signals' mean correlogram (M, L).

    See the module docstring for the definition; D = ``fe.n_features(n_raw_groups)``.
    """
    lo, hi = fe.lag_range()
    y, group_of, n_raw_g = signals(responses, cfs, fe)
    n_raw = int(np.sum(group_of < n_raw_g))
    A = correlogram(y, n_fr, lo, hi, fe.n_win)
    B = bin_pool(A, fe, lo, np.arange(A.shape[0]))  # (M, S, K): one "group" per signal
    M, S, K = B.shape
    Bf = B.reshape(M, S * K)
    N = np.empty_like(Bf)
    running_min(Bf, fe.novelty, N)
    np.subtract(Bf, N, out=N)
    N = N.reshape(M, S, K)
    parts = [cross_stats(B, n_raw, fe.thresholds, fe.top), cross_stats(N, n_raw, fe.novelty_thresholds, fe.top),
             band_energy_db(y[:n_raw], group_of[:n_raw], n_fr, fe.energy_window)]
    summary = A[:n_raw].mean(axis=0)
    return np.concatenate(parts, axis=1), summary
