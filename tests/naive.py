"""Plain NumPy/SciPy reference twins of fastifkl's algorithms, for the tests only.

One file for every twin (stumpy's convention, ``tests/naive.py``); nothing in ``fastifkl/`` or
``bench/`` imports it.  Sections:

* gammatone: the filterbank as an explicit Python loop, and channel by channel with
  ``scipy.signal.lfilter``;
* features: loop references written from REFERENCE.md section 4 and the documented choices in
  fastifkl/features/*.py, one unit at a time (no Numba, no shared code; slow on purpose: use a
  few channels and short signals), and NumPy/SciPy twins of single Numba kernels;
* learned pitch tracker: brute-force twins of the Numba kernels of fastifkl/periodicity.py
  (``pitch_*``) and of the Viterbi decoder of fastifkl/pitch_net.py;
* kernel ITML: the algorithm (Davis et al. 2007, Alg. 1 with slack) from the formulas in
  REFERENCE.md section 6 with full n x n matrices, and one-sweep twins of the Numba sweeps.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.signal

# ================================================================================== gammatone


def filterbank_loop(x, cfs, sr=16000):
    """Brute-force reference: per channel, demodulate, four first-order low-passes written as
    an explicit Python loop (no scipy, no Numba), remodulate, real part, unit gain at cf
    measured numerically on a long tone."""
    out = np.empty((len(cfs), x.size))
    for c, cf in enumerate(cfs):
        b = 1.019 * 24.7 * (4.37 * cf / 1000 + 1)
        a = np.exp(-2 * np.pi * b / sr)
        ph = np.exp(-2j * np.pi * cf * np.arange(x.size) / sr)
        y = x * ph
        for _ in range(4):
            z = np.empty_like(y)
            prev = 0j
            for n in range(y.size):
                prev = (1 - a) * y[n] + a * prev
                z[n] = prev
            y = z
        out[c] = np.real(y * np.conj(ph))
    return out


def filterbank_lfilter(x, sr=16000, cfs=None):
    """Channel-by-channel reference of ``gammatone.filterbank``: demodulate, 4 one-pole low-passes
    (scipy.signal.lfilter), remodulate, real part, unit gain at cf (the design's gains)."""
    from fastifkl import gammatone

    x = np.asarray(x, dtype=np.float64)
    cfs = gammatone.erb_space() if cfs is None else np.asarray(cfs, dtype=np.float64)
    a, _pole, gain = gammatone.design(cfs, sr)
    t = np.arange(x.size)
    out = np.empty((len(cfs), x.size))
    for c, cf in enumerate(cfs):
        ph = np.exp(-1j * 2 * np.pi * cf * t / sr)
        y = x * ph
        for _ in range(4):
            y = scipy.signal.lfilter([1.0 - a[c]], [1.0, -a[c]], y)
        out[c] = gain[c] * np.real(y * np.conj(ph))
    return out


# ================================================================================== features

SR = 16000
FL = 320
HOP = 160


def n_frames(n):
    return 1 + (n - FL) // HOP


def unit_power(frame):
    """Hamming (symmetric) window, 512-point power spectrum of one 320-sample frame."""
    w = np.array([0.54 - 0.46 * math.cos(2 * math.pi * i / (FL - 1)) for i in range(FL)])
    return np.abs(np.fft.rfft(frame * w, 512)) ** 2


def floored_log(e):
    floor = max(1e-10 * max(e), 1e-12)
    return np.array([math.log(max(v, floor)) for v in e])


# ---------------------------------------------------------------------------------- MFCC


def mel_weights():
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    top = mel(8000.0)
    edges = [imel(top * i / 65) for i in range(66)]
    w = np.zeros((64, 257))
    for j in range(64):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        for k in range(257):
            f = k * SR / 512
            if lo < f <= mid:
                w[j, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                w[j, k] = (hi - f) / (hi - mid)
    return w


def mfcc(r):
    """r: (C, N) -> (C, M, 31)."""
    w = mel_weights()
    c_, n = r.shape
    m_ = n_frames(n)
    out = np.zeros((c_, m_, 31))
    for c in range(c_):
        for m in range(m_):
            p = unit_power(r[c, m * HOP: m * HOP + FL])
            e = [float(np.sum(w[j] * p)) for j in range(64)]
            out[c, m] = scipy.fft.dct(floored_log(e), type=2, norm="ortho")[:31]
    return out


# ---------------------------------------------------------------------------------- RASTA-PLP


def bark(f):
    return 6 * math.asinh(f / 600)


def bark_weights():
    nyq = bark(SR / 2)
    nb = int(math.ceil(nyq)) + 1
    step = nyq / (nb - 1)
    w = np.zeros((nb, 257))
    for i in range(nb):
        for k in range(257):
            z = bark(k * SR / 512) - i * step
            w[i, k] = 10 ** min(0.0, z + 0.5, -2.5 * (z - 0.5))
    return w, step


def levinson(r, p):
    a = np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[:p], -r[1: p + 1])])
    return a, float(np.dot(r[: p + 1], a))


def rasta_plp(r):
    """r: (C, N) -> (C, M, 13)."""
    w, step = bark_weights()
    nb = w.shape[0]
    c_, n = r.shape
    m_ = n_frames(n)
    out = np.zeros((c_, m_, 13))
    fc = [600 * math.sinh(i * step / 6) for i in range(nb)]
    eql = [((f * f) / (f * f + 1.6e5)) ** 2 * (f * f + 1.44e6) / (f * f + 9.61e6) for f in fc]
    for c in range(c_):
        loge = np.zeros((m_, nb))
        for m in range(m_):
            p = unit_power(r[c, m * HOP: m * HOP + FL])
            loge[m] = floored_log([float(np.dot(w[i], p)) for i in range(nb)])
        filt = np.zeros_like(loge)
        for i in range(nb):
            x = loge[:, i] - loge[0, i]
            filt[:, i] = scipy.signal.lfilter([0.2, 0.1, 0.0, -0.1, -0.2], [1.0, -0.94], x)
        for m in range(m_):
            s = [(eql[i] * math.exp(filt[m, i])) ** (1.0 / 3.0) for i in range(nb)]
            s[0] = s[1]
            s[-1] = s[-2]
            mirrored = np.concatenate([s, s[-2:0:-1]])  # 40 points
            ac = np.real(np.fft.ifft(mirrored))[:13]
            a, err = levinson(ac, 12)
            cep = np.zeros(13)
            cep[0] = math.log(err)
            for k in range(1, 13):
                acc = sum((k - j) * a[j] * cep[k - j] for j in range(1, k))
                cep[k] = -(a[k] + acc / k)
            out[c, m] = cep
    return out


# ---------------------------------------------------------------------------------- AMS


def ams(r):
    """r: (C, N) -> (C, M, 15)."""
    h = scipy.signal.firwin(33, 1000.0, fs=SR)
    c_, n = r.shape
    m_ = n_frames(n)
    fs_env = SR / 4
    centres = [15.625 + i * (400 - 15.625) / 14 for i in range(15)]
    half = centres[1] - centres[0]
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / 80) for i in range(80)])
    out = np.zeros((c_, m_, 15))
    for c in range(c_):
        full = np.convolve(np.abs(r[c]), h)  # full[n] = sum_j h[j] |r|[n - j]
        env = full[16::4]  # env[k] = full[4k + 16]
        for m in range(m_):
            seg = env[40 * m: 40 * m + 80]
            seg = (seg - seg.mean()) * hann
            mag = np.abs(np.fft.rfft(seg, 256))
            for i in range(15):
                acc = 0.0
                for k in range(129):
                    wk = max(0.0, 1 - abs(k * fs_env / 256 - centres[i]) / half)
                    acc += wk * mag[k]
                out[c, m, i] = acc
    return out


# ---------------------------------------------------------------------------------- pitch-based


def acf(x, s0, tau):
    num = sxx = syy = 0.0
    for n in range(s0, s0 + FL):
        a = x[n]
        b = x[n - tau] if n - tau >= 0 else 0.0
        num += a * b
        sxx += a * a
        syy += b * b
    d = math.sqrt(sxx * syy)
    return num / d if d > 0 else 0.0


def zc_freq(x, s0):
    times = []
    for n in range(s0 + 1, s0 + FL):
        a, b = x[n - 1], x[n]
        if (a < 0) != (b < 0):
            times.append((n - 1 - s0) + a / (a - b))
    if len(times) >= 2 and times[-1] > times[0]:
        return (len(times) - 1) / (2 * (times[-1] - times[0]))
    return 0.0


def pitch_envelope(x):
    sos = scipy.signal.butter(2, (50.0, 550.0), btype="bandpass", fs=SR, output="sos")
    y = scipy.signal.sosfilt(sos, np.maximum(x, 0.0))
    return scipy.signal.sosfilt(sos, y[::-1])[::-1]


def pitch_features(r, f0):
    """r: (C, N), f0: (M,) Hz -> (C, M, 6)."""
    c_, n = r.shape
    m_ = n_frames(n)
    out = np.zeros((c_, m_, 6))
    for c in range(c_):
        env = pitch_envelope(r[c])
        for m in range(m_):
            if f0[m] <= 0:
                continue
            tau = int(math.floor(SR / f0[m] + 0.5))
            vals = []
            for x in (r[c], env):
                a = acf(x, m * HOP, tau)
                ft = zc_freq(x, m * HOP) * tau
                d = ft - math.floor(ft + 0.5)
                vals += [a, d, abs(d)]
            out[c, m] = vals
    return out


# ---------------------------------------------------------------------------------- deltas


def deltas(x):
    """x: (M, C, D) -> (time delta, freq delta), first index replicated."""
    m_, c_, _ = x.shape
    dt = np.zeros_like(x)
    df = np.zeros_like(x)
    for m in range(m_):
        for c in range(c_):
            dt[m, c] = x[m, c] - x[max(m - 1, 0), c]
            df[m, c] = x[m, c] - x[m, max(c - 1, 0)]
    return dt, df

# ---------------------------------------------------------------------------------- twins of single Numba kernels


def power_spectrum(responses):
    """NumPy twin of ``features._common.power_spectrum``, (M, C, 257)."""
    from fastifkl.features._common import N_FFT, hamming
    from fastifkl.framing import frames

    fr = frames(responses, FL, HOP).transpose(1, 0, 2)
    return np.abs(np.fft.rfft(fr * hamming(FL), n=N_FFT, axis=-1)) ** 2


def rasta_filter(x):
    """SciPy twin of ``features.rasta_plp.rasta_filter``."""
    from fastifkl.features.rasta_plp import RASTA_A, RASTA_B

    return scipy.signal.lfilter(RASTA_B, RASTA_A, x - x[:1], axis=0)


def lpc_cepstrum(r):
    """SciPy twin of ``features.rasta_plp.lpc_cepstrum`` (Toeplitz solve instead of Levinson)."""
    r = np.asarray(r, dtype=np.float64)
    p = r.shape[1] - 1
    out = np.empty_like(r)
    for u in range(r.shape[0]):
        a = np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[u, :p], -r[u, 1:])])
        err = float(r[u] @ a)
        out[u, 0] = np.log(err)
        for n in range(1, p + 1):
            out[u, n] = -(a[n] + sum((n - k) * a[k] * out[u, n - k] for k in range(1, n)) / n)
    return out


def pitch_envelope_bank(responses, sr=SR):
    """SciPy twin of ``features.pitch_features.pitch_envelope`` (all channels, (C, N))."""
    from fastifkl.features.pitch_features import envelope_sos

    sos = np.array(envelope_sos(sr))
    y = scipy.signal.sosfilt(sos, np.maximum(responses, 0.0), axis=-1)
    return scipy.signal.sosfilt(sos, y[:, ::-1], axis=-1)[:, ::-1]


# ================================================================================== kernel ITML


def kernel_itml(K0, i, j, similar, u, l, gamma, tol=1e-3, max_sweeps=100):
    """Returns (K, S, lambdas, n_sweeps) for constraints processed in the given order."""
    K = np.array(K0, dtype=float)
    K0 = np.array(K0, dtype=float)
    n = K.shape[0]
    S = np.zeros((n, n))
    m = len(i)
    lam = np.zeros(m)
    lam_prev = np.zeros(m)
    xi = np.array([u if s else l for s in similar], dtype=float)
    gp = 1.0 if np.isinf(gamma) else gamma / (gamma + 1.0)
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        for t in range(m):
            e = np.zeros(n)
            e[i[t]] = 1.0
            e[j[t]] = -1.0
            delta = 1.0 if similar[t] else -1.0
            Ke = K @ e
            p = e @ Ke
            alpha = min(lam[t], delta * gp * (1.0 / p - 1.0 / xi[t]))
            beta = delta * alpha / (1.0 - delta * alpha * p)
            xi[t] = 1.0 / (1.0 / xi[t] + delta * alpha / gamma)
            lam[t] -= alpha
            w = e + S @ (K0 @ e)  # K e = K0 w with K = K0 + K0 S K0
            S = S + beta * np.outer(w, w)
            K = K + beta * np.outer(Ke, Ke)
        ns = np.linalg.norm(lam) + np.linalg.norm(lam_prev)
        if ns == 0:
            break
        if np.abs(lam - lam_prev).sum() / ns < tol:
            break
        lam_prev = lam.copy()
    return K, S, lam, sweeps


def _projection(t, p, delta, xi, lam, gamma, gamma_proj):
    """Bregman projection t at current distance p: updates lam[t] and xi[t] and returns beta, or
    None when the projection is inactive (alpha == 0)."""
    alpha = min(lam[t], delta[t] * gamma_proj * (1.0 / p - 1.0 / xi[t]))
    if alpha == 0.0:
        return None
    lam[t] -= alpha
    beta = delta[t] * alpha / (1.0 - delta[t] * alpha * p)
    xi[t] = 1.0 / (1.0 / xi[t] + delta[t] * alpha / gamma)
    return beta


def lowrank_sweep(G, W, ci, cj, delta, xi, lam, gamma, gamma_proj):
    """One sweep of low-rank ITML, in place on W and the dual state: twin of
    ``fastifkl._itml_kernels.lowrank_sweep``.  Returns the number of active projections."""
    n_upd = 0
    for t in range(len(ci)):
        g = G[ci[t]] - G[cj[t]]
        y = W @ g
        beta = _projection(t, g @ y, delta, xi, lam, gamma, gamma_proj)
        if beta is None:
            continue
        n_upd += 1
        W += beta * np.outer(y, y)
    return n_upd


def exact_sweep(K, S, K0, ci, cj, delta, xi, lam, gamma, gamma_proj):
    """One sweep of exact ITML (one projection at a time, S carried along), in place: twin of the
    blocked ``fastifkl._itml_kernels.exact_block`` + ``flush``.  Returns the number of active projections."""
    n_upd = 0
    for t in range(len(ci)):
        i, j = ci[t], cj[t]
        u = K[:, i] - K[:, j]
        beta = _projection(t, u[i] - u[j], delta, xi, lam, gamma, gamma_proj)
        if beta is None:
            continue
        n_upd += 1
        if S is not None:
            w = S @ (K0[:, i] - K0[:, j])
            w[i] += 1.0
            w[j] -= 1.0
            S += beta * np.outer(w, w)
        K += beta * np.outer(u, u)
    return n_upd


# ================================================================================== learned pitch tracker

SR_DEC = 8000  # the periodicity front end works at 8 kHz


def pitch_signals(responses, raw, env):
    """Raw: mean of pairs; envelope: rectify, mean of pairs, scipy.signal.butter(2, (50, 550),
    fs=8000) band-pass, causal (sosfilt)."""
    import scipy.signal

    r = np.asarray(responses, dtype=np.float64)
    n2 = r.shape[1] // 2
    pair = lambda v: 0.5 * (v[..., 0: 2 * n2: 2] + v[..., 1: 2 * n2: 2])  # noqa: E731
    sos = scipy.signal.butter(2, (50, 550), "bandpass", fs=SR_DEC, output="sos")
    env_sig = scipy.signal.sosfilt(sos, pair(np.maximum(r[env], 0.0)), axis=-1)
    return np.concatenate([pair(r[raw]), env_sig])


def pitch_correlogram(y, n_fr, lag_lo, lag_hi, n_win):
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


def pitch_bin_pool(A, lag_lo, lag_edges):
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


def pitch_running_min(B, w):
    from scipy.ndimage import minimum_filter1d

    return minimum_filter1d(B, 2 * w + 1, axis=0, mode="nearest")


def pitch_cross_stats(B, n_raw, thresholds, top):
    """[mean, share > t for t in thresholds, mean of top largest] per bin, raw block then envelope."""
    parts = []
    for blk in (B[:, :n_raw], B[:, n_raw:]):
        parts.append(blk.mean(axis=1))
        for t in thresholds:
            parts.append((blk > t).mean(axis=1))
        parts.append(np.sort(blk, axis=1)[:, -top:].mean(axis=1))
    return np.concatenate(parts, axis=1)


def pitch_viterbi(logp, log_trans):
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


# ================================================================================== kernel maps


def nystroem_gram(A, B, Z, sigma, floor=0.0):
    """Nystroem approximation k(A, Z) W^+ k(Z, B) of the Gaussian kernel on landmarks Z, with
    explicit exp() for the kernel values and scipy's pinvh (relative cutoff ``floor``) for W^+."""
    def k(P, Q):
        return np.exp(-((P[:, None, :] - Q[None, :, :]) ** 2).sum(-1) / (2.0 * sigma**2))

    W = k(Z, Z)
    Wp = scipy.linalg.pinvh(W, atol=0.0, rtol=floor) if floor > 0 else np.linalg.inv(W)
    return k(A, Z) @ Wp @ k(Z, B)


def hann_nccf(s, n_fr, lag_lo, lag_hi, window):
    """Hann-tapered NCCF of the correlogram pitch tracker by direct sums, one frame and lag at a
    time (window of frame m starts at 160 m + 160 - window // 2; zeros outside the signal)."""
    s = np.asarray(s, dtype=np.float64)
    c_, n = s.shape
    pad = window + lag_hi + 400
    sp = np.concatenate([np.zeros((c_, pad)), s, np.zeros((c_, pad))], axis=1)
    w = np.hanning(window + 2)[1:-1]
    out = np.zeros((c_, n_fr, lag_hi - lag_lo + 1))
    for c in range(c_):
        e0max = max(float(np.sum(w * sp[c, pad + 160 * m + 160 - window // 2:][:window] ** 2)) for m in range(n_fr))
        for m in range(n_fr):
            t0 = pad + 160 * m + 160 - window // 2
            a = sp[c, t0: t0 + window]
            for j, tau in enumerate(range(lag_lo, lag_hi + 1)):
                b = sp[c, t0 + tau: t0 + tau + window]
                den = np.sqrt(max(np.sum(w * a * a) * np.sum(w * b * b), 0.0))
                out[c, m, j] = np.sum(w * a * b) / den if den > 1e-12 * max(e0max, 1e-300) else 0.0
    return out
