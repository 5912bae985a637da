"""Plain NumPy / SciPy twins of the Numba kernels of the learned pitch tracker
(fastifkl.periodicity, fastifkl.pitch_net), written from their docstrings, loop by loop."""
from __future__ import annotations

import numpy as np

SR_DEC = 8000


def signals(responses, raw, env):
    """Raw: mean of pairs; envelope: rectify, mean of pairs, scipy.signal.butter(2, (50, 550),
    fs=8000) band-pass, causal (sosfilt)."""
    import scipy.signal

    r = np.asarray(responses, dtype=np.float64)
    n2 = r.shape[1] // 2
    pair = lambda v: 0.5 * (v[..., 0: 2 * n2: 2] + v[..., 1: 2 * n2: 2])  # noqa: E731
    sos = scipy.signal.butter(2, (50, 550), "bandpass", fs=SR_DEC, output="sos")
    env_sig = scipy.signal.sosfilt(sos, pair(np.maximum(r[env], 0.0)), axis=-1)
    return np.concatenate([pair(r[raw]), env_sig])


def correlogram(y, n_fr, lag_lo, lag_hi, n_win):
    """A(c, m, tau) by direct sums over the window of frame m (start 80 m + 40 - 40 n_win)."""
    y = np.asarray(y, dtype=np.float64)
    c_, n = y.shape
    pad = 1000
    yp = np.concatenate([np.zeros((c_, pad)), y, np.zeros((c_, pad + n_win * 80 + lag_hi))], axis=1)
    W = 80 * n_win
    out = np.zeros((c_, n_fr, lag_hi - lag_lo + 1))
    for c in range(c_):
        for m in range(n_fr):
            s = pad + 80 * m + 40 - 40 * n_win
            a = yp[c, s: s + W]
            for j, tau in enumerate(range(lag_lo, lag_hi + 1)):
                b = yp[c, s + tau: s + tau + W]
                d = np.sum(a * a) * np.sum(b * b)
                out[c, m, j] = np.sum(a * b) / np.sqrt(d) if d > 1e-20 else 0.0
    return out


def bin_pool(A, lag_lo, lag_edges):
    """Max of A over each bin: integer lags within [lo, hi] and the interpolated edge values.
    ``lag_edges`` (K + 1,) decreasing lags of the bin edges."""
    c_, m_, L = A.shape
    K = lag_edges.size - 1
    lags = lag_lo + np.arange(L)
    out = np.zeros((m_, c_, K))
    for k in range(K):
        lo, hi = lag_edges[k + 1], lag_edges[k]
        inside = (lags >= lo) & (lags <= hi)
        for c in range(c_):
            for m in range(m_):
                vals = [np.interp(lo, lags, A[c, m]), np.interp(hi, lags, A[c, m])]
                vals += list(A[c, m, inside])
                out[m, c, k] = max(vals)
    return out


def running_min(B, w):
    from scipy.ndimage import minimum_filter1d

    return minimum_filter1d(B, 2 * w + 1, axis=0, mode="nearest")


def cross_stats(B, n_raw, thresholds, top):
    """[mean, share > t for t in thresholds, mean of top largest] per bin, raw block then envelope."""
    parts = []
    for blk in (B[:, :n_raw], B[:, n_raw:]):
        parts.append(blk.mean(axis=1))
        for t in thresholds:
            parts.append((blk > t).mean(axis=1))
        parts.append(np.sort(blk, axis=1)[:, -top:].mean(axis=1))
    return np.concatenate(parts, axis=1)


def viterbi(logp, log_trans):
    """Log-domain Viterbi with NumPy argmax (first maximum on ties)."""
    m, s = logp.shape
    d = logp[0].copy()
    back = np.zeros((m, s), dtype=np.int64)
    for t in range(1, m):
        tot = d[:, None] + log_trans
        back[t] = np.argmax(tot, axis=0)
        d = tot[back[t], np.arange(s)] + logp[t]
    path = np.empty(m, dtype=np.int64)
    path[-1] = int(np.argmax(d))
    for t in range(m - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
