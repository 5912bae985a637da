"""Gammatone filterbank, cochleagram and phase-aligned resynthesis.

The 4th-order gammatone filter of channel ``c`` (centre frequency ``cf``, bandwidth
``b = 1.019 ERB(cf)``) is realised by complex demodulation: shift the band to DC by
``exp(-j 2 pi cf t)``, low-pass with four cascaded one-pole sections with pole
``a = exp(-2 pi b / fs)``, shift back, take the real part.  Modulation commutes with the
recursion, so the same filter is four cascaded *complex* one-pole sections with pole
``a exp(j 2 pi cf / fs)`` applied directly to the real input -- no per-sample phasors
(4 complex multiply-adds, ~30 flops per sample and channel).  The real part of the output is
scaled so that the gain at ``cf`` is exactly 1 (0 dB).

The recursion is serial in time but independent across channels, so the Numba kernel keeps
the channel index innermost (contiguous, SIMD-vectorised) and the time index outermost.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import get_num_threads, njit, prange  # noqa: F401

from . import FMAX, FMIN, FRAME_LEN, HOP, N_CHANNELS, SAMPLE_RATE
from .errors import InputError
from .framing import check_length, n_frames

# ---------------------------------------------------------------------------------------------
# ERB scale (Glasberg & Moore 1990)


def erb(f: np.ndarray | float) -> np.ndarray | float:
    """Equivalent rectangular bandwidth in Hz: ``24.7 (4.37 f / 1000 + 1)``."""
    return 24.7 * (4.37 * np.asarray(f, dtype=np.float64) / 1000.0 + 1.0)


def hz_to_erb_rate(f: np.ndarray | float) -> np.ndarray | float:
    """ERB-rate ``E(f) = 21.4 log10(1 + 0.00437 f)`` (in ERBs)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, dtype=np.float64))


def erb_rate_to_hz(e: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`hz_to_erb_rate`."""
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def erb_space(fmin: float = FMIN, fmax: float = FMAX, n: int = N_CHANNELS) -> np.ndarray:
    """Centre frequencies uniformly spaced on the ERB-rate scale, ascending.

    Parameters
    ----------
    fmin, fmax : float
        Lowest and highest centre frequency in Hz (both included).
    n : int
        Number of channels (>= 1).

    Returns
    -------
    cfs : ndarray, shape (n,), Hz
    """
    if n < 1:
        raise InputError(f"number of channels must be >= 1, got {n}")
    if not (0 < fmin <= fmax):
        raise InputError(f"need 0 < fmin <= fmax, got fmin={fmin}, fmax={fmax}")
    if n == 1:
        return np.array([float(fmin)])
    return erb_rate_to_hz(np.linspace(hz_to_erb_rate(fmin), hz_to_erb_rate(fmax), n))


def bandwidth(cfs: np.ndarray) -> np.ndarray:
    """Gammatone bandwidth parameter ``b = 1.019 ERB(cf)`` in Hz."""
    return 1.019 * erb(cfs)


# ---------------------------------------------------------------------------------------------
# Filter design


def _check_cfs(cfs, sr: int) -> np.ndarray:
    cfs = np.atleast_1d(np.asarray(cfs, dtype=np.float64))
    if cfs.ndim != 1 or cfs.size == 0:
        raise InputError("centre frequencies must be a non-empty 1-D array")
    if not np.all(np.isfinite(cfs)) or np.any(cfs <= 0) or np.any(cfs >= sr / 2):
        raise InputError(f"centre frequencies must lie in (0, {sr / 2}) Hz")
    return cfs


@lru_cache(maxsize=32)
def _design_cached(cfs_key: tuple, sr: int):
    cfs = np.array(cfs_key)
    b = bandwidth(cfs)
    a = np.exp(-2.0 * np.pi * b / sr)
    w = 2.0 * np.pi * cfs / sr
    pole = a * np.exp(1j * w)
    # complex response of the cascade at cf: ((1-a)/(1 - pole e^{-jw}))^4 = 1 exactly; the real
    # part adds the image term at -cf.  Normalise the real filter's gain at cf to exactly 1.
    gain = 1.0 / np.abs(_real_response(cfs, a, pole, cfs, sr, 1.0))
    return a, pole, gain


def _real_response(cfs, a, pole, freqs, sr, gain):
    """Frequency response (complex) of the real filters at ``freqs`` (one per channel or grid)."""
    z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs) / sr)
    hp = ((1.0 - a) / (1.0 - pole * z)) ** 4  # complex filter at +f
    hn = ((1.0 - a) / (1.0 - np.conj(pole) * z)) ** 4  # its conjugate twin (image)
    return gain * 0.5 * (hp + hn)


def design(cfs: np.ndarray, sr: int = SAMPLE_RATE):
    """Filter coefficients: (a, complex pole, output gain), each shape (C,)."""
    cfs = _check_cfs(cfs, sr)
    return _design_cached(tuple(cfs.tolist()), int(sr))


def frequency_response(cfs: np.ndarray, freqs: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Complex frequency response of each channel of :func:`filterbank`.

    Parameters
    ----------
    cfs : ndarray, shape (C,), Hz
    freqs : ndarray, shape (F,), Hz

    Returns
    -------
    H : ndarray, shape (C, F), complex
    """
    a, pole, gain = design(cfs, sr)
    f = np.asarray(freqs, dtype=np.float64)[None, :]
    return _real_response(None, a[:, None], pole[:, None], f, sr, gain[:, None])


# ---------------------------------------------------------------------------------------------
# Numba kernels


_BLOCK = 128  # samples per block: the (block, group) scratch stays in L1
_GROUP = 16  # fewest channels per parallel task (the SIMD inner loop runs over a group)


@njit(cache=True)
def _group(x, x_per_channel, pr, pi, g, reverse, out, c0, c1):
    """Filter channels ``c0 .. c1-1``: time outer, channel inner (independent lanes -> SIMD).

    Each channel is four cascaded complex one-pole sections with pole ``pr + j pi``; the state
    of section k is ``(sr_k, si_k)``.  Section 1 gets the real input; the output is
    ``g * Re(section 4)``.  Blocks of ``_BLOCK`` samples are gathered/scattered through a small
    time-major scratch so that ``out`` (channels first) is written in contiguous runs.
    """
    n_samp = out.shape[1]
    w = c1 - c0
    s0r = np.zeros(w)
    s0i = np.zeros(w)
    s1r = np.zeros(w)
    s1i = np.zeros(w)
    s2r = np.zeros(w)
    s2i = np.zeros(w)
    s3r = np.zeros(w)
    s3i = np.zeros(w)
    p_r = pr[c0:c1].copy()
    p_i = pi[c0:c1].copy()
    gg = g[c0:c1].copy()
    buf = np.zeros((_BLOCK, w))
    for b0 in range(0, n_samp, _BLOCK):
        nb = min(_BLOCK, n_samp - b0)
        if x_per_channel:
            for c in range(w):
                for t in range(nb):
                    n = n_samp - 1 - (b0 + t) if reverse else b0 + t
                    buf[t, c] = out[c0 + c, n]
        else:
            for t in range(nb):
                xn = x[n_samp - 1 - (b0 + t)] if reverse else x[b0 + t]
                for c in range(w):
                    buf[t, c] = xn
        for t in range(nb):
            row = buf[t]
            for c in range(w):
                a = s0r[c]
                b = s0i[c]
                r0 = row[c] + p_r[c] * a - p_i[c] * b
                i0 = p_r[c] * b + p_i[c] * a
                a = s1r[c]
                b = s1i[c]
                r1 = r0 + p_r[c] * a - p_i[c] * b
                i1 = i0 + p_r[c] * b + p_i[c] * a
                a = s2r[c]
                b = s2i[c]
                r2 = r1 + p_r[c] * a - p_i[c] * b
                i2 = i1 + p_r[c] * b + p_i[c] * a
                a = s3r[c]
                b = s3i[c]
                r3 = r2 + p_r[c] * a - p_i[c] * b
                i3 = i2 + p_r[c] * b + p_i[c] * a
                s0r[c] = r0
                s0i[c] = i0
                s1r[c] = r1
                s1i[c] = i1
                s2r[c] = r2
                s2i[c] = i2
                s3r[c] = r3
                s3i[c] = i3
                row[c] = gg[c] * r3
        for c in range(w):
            for t in range(nb):
                n = n_samp - 1 - (b0 + t) if reverse else b0 + t
                out[c0 + c, n] = buf[t, c]


@njit(cache=True, parallel=True)
def _kernel(x, x_per_channel, pr, pi, g, reverse, out, per):
    """Gammatone cascade for all channels; channel groups run in parallel (prange).

    Parameters
    ----------
    x : (N,) shared real input, used when ``x_per_channel`` is False
    x_per_channel : bool; if True the input of channel c is ``out[c]`` itself (filtered in place)
    pr, pi : (C,) real / imaginary parts of the poles
    g : (C,) gain per channel ((1-a)^4 times the unit-gain-at-cf factor)
    reverse : bool; run backwards in time (time-reversed filtering without copies)
    out : (C, N) output, channels first
    per : channels per parallel task (see :func:`_per_task`)
    """
    n_ch = out.shape[0]
    n_grp = (n_ch + per - 1) // per
    for k in prange(n_grp):
        _group(x, x_per_channel, pr, pi, g, reverse, out, k * per, min(n_ch, (k + 1) * per))


def _per_task(n_ch: int) -> int:
    """Channels per prange task: one group per Numba thread, in multiples of 8 lanes, so the
    SIMD inner loop over channels stays long and no thread idles."""
    import numba

    nt = max(1, numba.get_num_threads())
    per = (n_ch + nt - 1) // nt
    return max(_GROUP, ((per + 7) // 8) * 8)


def _coeffs(cfs, sr):
    a, pole, gain = design(cfs, sr)
    g = np.ascontiguousarray(gain * (1.0 - a) ** 4)
    return np.ascontiguousarray(pole.real), np.ascontiguousarray(pole.imag), g


def _check_signal(x, what="signal") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"{what} must be 1-D (mono), got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"{what} is empty")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contains NaN or infinite samples")
    return np.ascontiguousarray(x)


# ---------------------------------------------------------------------------------------------
# Public functions


def filterbank(x: np.ndarray, sr: int = SAMPLE_RATE, cfs: np.ndarray | None = None, *,
               out: np.ndarray | None = None) -> np.ndarray:
    """Filter ``x`` through the 4th-order gammatone filterbank.

    Parameters
    ----------
    x : ndarray, shape (N,)
        Mono signal.
    sr : int
        Sample rate in Hz.
    cfs : ndarray, shape (C,), optional
        Centre frequencies in Hz; default ``erb_space(80, 5000, 64)``.
    out : ndarray, shape (C, N), float64, C-contiguous, optional
        Buffer to write into.  A fresh 64-channel output costs 8 MB per second of audio, and
        the kernel's page faults on a new buffer take about as long as the filtering itself;
        scripts that filter many signals can reuse one buffer.

    Returns
    -------
    responses : ndarray, shape (C, N), float64
        Real filter outputs, unit gain at each centre frequency, no delay compensation.
    """
    x = _check_signal(x)
    cfs = erb_space() if cfs is None else cfs
    pr, pi, g = _coeffs(cfs, sr)
    if out is None:
        out = np.empty((pr.size, x.size))
    elif out.shape != (pr.size, x.size) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise InputError(f"out must be a C-contiguous float64 array of shape ({pr.size}, {x.size})")
    _kernel(x, False, pr, pi, g, False, out, _per_task(pr.size))
    return out


def cochleagram(responses: np.ndarray, frame_len: int = FRAME_LEN, hop: int = HOP) -> np.ndarray:
    """Energy of each time-frequency unit: sum of squares over a 20 ms rectangular window.

    Parameters
    ----------
    responses : ndarray, shape (C, N)
        Filterbank outputs.

    Returns
    -------
    E : ndarray, shape (C, M)
        ``E[c, m] = sum(responses[c, m*hop : m*hop + frame_len] ** 2)``.
    """
    r = np.asarray(responses, dtype=np.float64)
    if r.ndim != 2:
        raise InputError(f"responses must be (channels, samples), got shape {r.shape}")
    m = check_length(r.shape[1])
    if frame_len == 2 * hop:
        # a frame is two hops: sum the hop energies pairwise
        k = m + 1
        h = np.einsum("ckt,ckt->ck", r[:, : k * hop].reshape(r.shape[0], k, hop), r[:, : k * hop].reshape(r.shape[0], k, hop))
        return h[:, :-1] + h[:, 1:]
    c2 = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r * r, axis=1)], axis=1)
    starts = np.arange(m) * hop
    return c2[:, starts + frame_len] - c2[:, starts]


def frame_weights(mask: np.ndarray, n_samples: int, frame_len: int = FRAME_LEN, hop: int = HOP) -> np.ndarray:
    """Sample-level weights: sum over frames of mask(c, m) times a Hann window at frame m.

    The periodic Hann window of length ``frame_len`` at 50 % overlap sums to exactly 1, so an
    all-ones mask gives weight 1 everywhere except the first and last half frame.

    Returns
    -------
    w : ndarray, shape (C, n_samples)
    """
    mask = np.asarray(mask, dtype=np.float64)
    c, m = mask.shape
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_len) / frame_len)
    w = np.zeros((c, max(n_samples, (m - 1) * hop + frame_len)))
    if frame_len == 2 * hop:
        # frame m contributes its first half to hop-block m and its second half to block m+1
        blocks = w[:, : (m + 1) * hop].reshape(c, m + 1, hop)
        blocks[:, :m, :] += mask[:, :, None] * win[None, None, :hop]
        blocks[:, 1:, :] += mask[:, :, None] * win[None, None, hop:]
    else:
        for k in range(m):
            w[:, k * hop : k * hop + frame_len] += mask[:, k, None] * win[None, :]
    return w[:, :n_samples]


@lru_cache(maxsize=32)
def _resynth_gain_cached(cfs_key: tuple, sr: int, lo: float, hi: float) -> float:
    cfs = np.array(cfs_key)
    f = np.linspace(lo, hi, 2000)
    power = np.sum(np.abs(frequency_response(cfs, f, sr)) ** 2, axis=0)
    # least-squares scalar fit of the summed zero-phase power response to 1 over [lo, hi]
    return float(np.sum(power) / np.sum(power * power))


def resynthesis_gain(cfs: np.ndarray | None = None, sr: int = SAMPLE_RATE, band=(150.0, 4000.0)) -> float:
    """Global gain that makes an all-ones-mask resynthesis return the input level.

    The forward-backward filtering of channel c has the zero-phase response ``|H_c(f)|^2``;
    summed over channels it is nearly flat in the passband.  The gain is the least-squares
    scalar that maps that sum to 1 over ``band`` (Hz).
    """
    cfs = erb_space() if cfs is None else _check_cfs(cfs, sr)
    return _resynth_gain_cached(tuple(np.asarray(cfs, dtype=np.float64).tolist()), int(sr), float(band[0]), float(band[1]))


def resynthesize(x: np.ndarray, mask: np.ndarray, sr: int = SAMPLE_RATE, cfs: np.ndarray | None = None,
                 *, responses: np.ndarray | None = None) -> np.ndarray:
    """Resynthesise the target from a mixture and a (binary or soft) T-F mask.

    Each channel's response is time-reversed, filtered again and reversed back (zero phase,
    squared magnitude: Weintraub; Wang & Brown 2006), weighted per sample by the mask spread
    with 20 ms Hann windows, summed over channels, and scaled by :func:`resynthesis_gain`.

    Parameters
    ----------
    x : ndarray, shape (N,)
        The mixture.
    mask : ndarray, shape (C, M)
        Mask on the frame grid, ``M = 1 + (N - 320) // 160``.
    sr : int
    cfs : ndarray, shape (C,), optional
    responses : ndarray, shape (C, N), optional
        ``filterbank(x, sr, cfs)`` when the caller already has it (saves the forward pass);
        it is not modified.

    Returns
    -------
    y : ndarray, shape (N,)
    """
    x = _check_signal(x)
    cfs = erb_space() if cfs is None else cfs
    mask = np.asarray(mask, dtype=np.float64)
    m = n_frames(x.size)
    n_ch = len(np.atleast_1d(cfs))
    if mask.shape != (n_ch, m):
        raise InputError(f"mask has shape {mask.shape}, expected (channels, frames) = ({n_ch}, {m})")
    if not np.all(np.isfinite(mask)):
        raise InputError("mask contains NaN or infinite values")
    pr, pi, g = _coeffs(cfs, sr)
    if responses is not None:
        if np.shape(responses) != (n_ch, x.size):
            raise InputError(f"responses have shape {np.shape(responses)}, expected ({n_ch}, {x.size})")
        r = np.array(responses, dtype=np.float64, order="C")  # a copy: filtered in place below
    else:
        r = np.empty((n_ch, x.size))
        _kernel(x, False, pr, pi, g, False, r, _per_task(pr.size))
    # second pass backwards in time, in place: time reversal without copies
    _kernel(x, True, pr, pi, g, True, r, _per_task(pr.size))
    w = frame_weights(mask, x.size)  # (C, N)
    y = np.einsum("cn,cn->n", r, w)
    return y * resynthesis_gain(cfs, sr)


# ---------------------------------------------------------------------------------------------
# Plain NumPy/SciPy twins (used by the tests and as a readable statement of the algorithm)


def filterbank_reference(x: np.ndarray, sr: int = SAMPLE_RATE, cfs: np.ndarray | None = None) -> np.ndarray:
    """Channel-by-channel reference: demodulate, 4 one-pole low-passes (scipy.signal.lfilter),
    remodulate, real part, unit gain at cf.  Same result as :func:`filterbank`."""
    from scipy.signal import lfilter

    x = _check_signal(x)
    cfs = erb_space() if cfs is None else _check_cfs(cfs, sr)
    a, _pole, gain = design(cfs, sr)
    t = np.arange(x.size)
    out = np.empty((len(cfs), x.size))
    for c, cf in enumerate(cfs):
        ph = np.exp(-1j * 2 * np.pi * cf * t / sr)
        y = x * ph
        for _ in range(4):
            y = lfilter([1.0 - a[c]], [1.0, -a[c]], y)
        out[c] = gain[c] * np.real(y * np.conj(ph))
    return out
