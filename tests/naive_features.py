"""Plain NumPy/SciPy loop references for the per-unit features (no Numba, no shared code).

Written from REFERENCE.md section 4 and the documented choices in fastifkl/features/*.py,
one unit at a time.  Slow on purpose: use a few channels and short signals.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.signal

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
