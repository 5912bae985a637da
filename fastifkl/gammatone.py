"""Gammatone filterbank, cochleagram and phase-aligned resynthesis.

The 4th-order gammatone filter of channel ``c`` (centre frequency ``cf``, bandwidth
``b = 1.019 ERB(cf)``) is realised by complex demodulation: shift the band to DC by
``exp(-j 2 pi cf t)``, low-pass with four cascaded one-pole sections with pole
``a = exp(-2 pi b / fs)``, shift back, take the real part.  Modulation commutes with the
recursion, so the same filter is four cascaded *complex* one-pole sections with pole
``a exp(j 2 pi cf / fs)`` applied directly to the real input -- no per-sample phasors
(4 complex multiply-adds, ~30 flops per sample and channel).  The real part of the output is
scaled so that the gain at ``cf`` is exactly 1 (0 dB).

The recursion is serial in time but independent across channels; its Numba kernels (SIMD
tiles of 8 channels written in LLVM IR, and their scalar twin) are in the private module
:mod:`fastifkl._gammatone_kernels`.

Resynthesis runs every channel forwards and then backwards in time (:func:`zero_phase`),
weights it per sample with the mask spread by 20 ms Hann windows (:func:`frame_weights`),
and sums over channels (:func:`resynthesize`).
"""
from __future__ import annotations

import sys
import threading
from functools import lru_cache

import numpy as np

from . import FMAX, FMIN, FRAME_LEN, HOP, N_CHANNELS, SAMPLE_RATE
from ._gammatone_kernels import bank_backward_inplace, filter_forward
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
# Output buffers


class _BufferPool:
    """Recycles the memory of ``filterbank`` outputs that the caller has dropped.

    A fresh 64-channel float64 output is 8 MB per second of audio, and writing it for the first
    time costs the kernel's page faults (zeroing every page), about as long as the filtering
    itself.  Outputs are therefore views of pooled raw buffers.  A buffer is handed out again
    only when nothing but the pool references it: every view of a result keeps its buffer
    referenced (``arr.base``; so does a memoryview or any other buffer export), so a result,
    or any slice of it, that is still alive is never overwritten.  "Nothing but the pool" is
    the buffer's reference count right after it was created, measured by the same expression
    (no assumption about how the interpreter counts).  At most ``max_buffers`` buffers, each
    at most ``max_bytes``, are kept; when none is free a new one is allocated.
    :func:`free_buffers` empties the pool.
    """

    def __init__(self, max_buffers: int = 2, max_bytes: int = 1 << 30):
        self.max_buffers = max_buffers
        self.max_bytes = max_bytes
        self._bufs: list[list] = []  # [raw uint8 buffer, its reference count when unused]
        self._lock = threading.Lock()

    def _free(self, entry: list) -> bool:
        return sys.getrefcount(entry[0]) == entry[1]

    def empty(self, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        if need == 0 or need > self.max_bytes:
            return np.empty(shape, dtype)
        with self._lock:
            fits = [e for e in self._bufs if e[0].nbytes >= need and self._free(e)]
            if fits:
                entry = min(fits, key=lambda e: e[0].nbytes)
            else:
                if len(self._bufs) >= self.max_buffers:
                    free = [i for i, e in enumerate(self._bufs) if self._free(e)]
                    if not free:
                        return np.empty(shape, dtype)
                    del self._bufs[free[0]]  # drop a free (too small) buffer
                entry = [np.empty(need, np.uint8), 0]
                self._bufs.append(entry)
                entry[1] = sys.getrefcount(entry[0])  # unused: referenced by the pool only
            return entry[0][:need].view(dtype).reshape(shape)  # .base is the raw buffer

    def clear(self) -> None:
        with self._lock:
            self._bufs.clear()


_POOL = _BufferPool()


def free_buffers() -> None:
    """Release the memory :func:`filterbank` keeps for recycling (results stay valid)."""
    _POOL.clear()


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
               out: np.ndarray | None = None, dtype=None) -> np.ndarray:
    """Filter ``x`` through the 4th-order gammatone filterbank.

    Parameters
    ----------
    x : ndarray, shape (N,)
        Mono signal.
    sr : int
        Sample rate in Hz.
    cfs : ndarray, shape (C,), optional
        Centre frequencies in Hz; default ``erb_space(80, 5000, 64)``.
    out : ndarray, shape (C, N), float64 or float32, C-contiguous, optional
        Buffer to write into (and return).
    dtype : {np.float64, np.float32}, optional
        Output type; default float64 (or ``out.dtype``).  float32 also computes in float32
        (16 channels per 512-bit vector instead of 8): about 1.5x less compute and half the
        memory written; it agrees with float64 to ~1e-5 of each channel's peak.

    Returns
    -------
    responses : ndarray, shape (C, N), float64 (or ``dtype``)
        Real filter outputs, unit gain at each centre frequency, no delay compensation.

    Notes
    -----
    Without ``out`` the result is a view of a recycled buffer: the memory of an earlier result
    is reused once the caller holds no reference to it (or to any slice of it), which saves the
    page faults of fresh memory.  :func:`free_buffers` releases the memory kept for this.
    """
    x = _check_signal(x)
    cfs = erb_space() if cfs is None else cfs
    pr, pi, g = _coeffs(cfs, sr)
    if dtype is None:
        dtype = np.float64 if out is None else out.dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise InputError(f"dtype must be float64 or float32, got {dtype}")
    if out is None:
        out = _POOL.empty((pr.size, x.size), dtype)
    elif (not isinstance(out, np.ndarray) or out.shape != (pr.size, x.size) or out.dtype != dtype
          or not out.flags.c_contiguous or not out.flags.writeable):
        raise InputError(f"out must be a writeable C-contiguous {dtype} array of shape ({pr.size}, {x.size})")
    filter_forward(x, pr, pi, g, out)
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
        blocks = r[:, : k * hop].reshape(r.shape[0], k, hop)
        h = np.einsum("ckt,ckt->ck", blocks, blocks)
        return h[:, :-1] + h[:, 1:]
    c2 = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r * r, axis=1)], axis=1)
    starts = np.arange(m) * hop
    return c2[:, starts + frame_len] - c2[:, starts]


def _hann(frame_len: int) -> np.ndarray:
    """Periodic Hann window of ``frame_len`` samples."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_len) / frame_len)


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
    win = _hann(frame_len)
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


def weighted_sum(r: np.ndarray, mask: np.ndarray, frame_len: int = FRAME_LEN, hop: int = HOP) -> np.ndarray:
    """``sum_c r[c, n] * frame_weights(mask, N)[c, n]``: (N,), the mask-weighted channel sum of
    :func:`resynthesize` before its gain (frame m of ``mask`` starts at sample ``m * hop`` of ``r``;
    frames beyond the mask weigh 0, so a block of a signal is resynthesised from the mask
    columns of the frames that overlap it, see :mod:`fastifkl.blocks`).

    When a frame is two hops, frame m weights hop-block m with the first half of the Hann
    window and block m+1 with the second half: two (C x blocks) contractions instead of a
    (C x N) weight array.

    Parameters
    ----------
    r : ndarray, shape (C, N)
        Zero-phase filtered channels (:func:`zero_phase`).
    mask : ndarray, shape (C, M)

    Returns
    -------
    y : ndarray, shape (N,)
    """
    mask = np.asarray(mask, dtype=np.float64)
    c, m = mask.shape
    n = r.shape[1]
    if frame_len != 2 * hop or (m + 1) * hop > n:
        return np.einsum("cn,cn->n", r, frame_weights(mask, n, frame_len, hop))
    win = _hann(frame_len)
    blocks = r[:, : (m + 1) * hop].reshape(c, m + 1, hop)
    y = np.zeros(n)
    yb = y[: (m + 1) * hop].reshape(m + 1, hop)
    yb[:m] += np.einsum("ck,ckt->kt", mask, blocks[:, :m]) * win[:hop]
    yb[1:] += np.einsum("ck,ckt->kt", mask, blocks[:, 1:]) * win[hop:]
    return y


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
    key = tuple(np.asarray(cfs, dtype=np.float64).tolist())
    return _resynth_gain_cached(key, int(sr), float(band[0]), float(band[1]))


def zero_phase(x: np.ndarray, sr: int = SAMPLE_RATE, cfs: np.ndarray | None = None, *,
               responses: np.ndarray | None = None, overwrite_responses: bool = False) -> np.ndarray:
    """Every channel's response filtered again backwards in time: the mask-independent part of
    :func:`resynthesize` (zero phase, squared-magnitude response ``|H_c(f)|^2``).

    Parameters
    ----------
    x : ndarray, shape (N,)
    sr : int
    cfs : ndarray, shape (C,), optional
    responses : ndarray, shape (C, N), optional
        ``filterbank(x, sr, cfs)`` when the caller already has it (saves the forward pass; the
        result is the same to the bit); it is not modified unless ``overwrite_responses``.
    overwrite_responses : bool
        Filter ``responses`` (a C-contiguous float64 array) backwards in place and return it,
        instead of a copy: saves a (C, N) array when the caller needs the responses no more.

    Returns
    -------
    ndarray, shape (C, N), float64, a fresh array (or ``responses`` itself)
    """
    x = _check_signal(x)
    cfs = erb_space() if cfs is None else cfs
    pr, pi, g = _coeffs(cfs, sr)
    if responses is not None:
        if np.shape(responses) != (pr.size, x.size):
            raise InputError(f"responses have shape {np.shape(responses)}, expected ({pr.size}, {x.size})")
        if overwrite_responses and not (isinstance(responses, np.ndarray) and responses.dtype == np.float64
                                        and responses.flags.c_contiguous and responses.flags.writeable):
            raise InputError("overwrite_responses needs a writeable C-contiguous float64 responses array")
        # a copy unless overwrite_responses: filtered in place below
        r = responses if overwrite_responses else np.array(responses, dtype=np.float64, order="C")
    else:
        r = np.empty((pr.size, x.size))
        filter_forward(x, pr, pi, g, r)
    # second pass backwards in time, in place: time reversal without copies
    bank_backward_inplace(pr, pi, g, r)
    return r


def resynthesize(x: np.ndarray, mask: np.ndarray, sr: int = SAMPLE_RATE, cfs: np.ndarray | None = None,
                 *, responses: np.ndarray | None = None, filtered: np.ndarray | None = None) -> np.ndarray:
    """Resynthesise the target from a mixture and a (binary or soft) T-F mask.

    Each channel's response is time-reversed, filtered again and reversed back (zero phase,
    squared magnitude: Weintraub; Wang & Brown 2006; :func:`zero_phase`), weighted per sample by
    the mask spread with 20 ms Hann windows (:func:`frame_weights`), summed over channels, and
    scaled by :func:`resynthesis_gain`.

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
    filtered : ndarray, shape (C, N), optional
        ``zero_phase(x, sr, cfs)`` when the caller already has it: several masks of one
        mixture are resynthesised from one zero-phase pass (same result to the bit).

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
    if filtered is None:
        filtered = zero_phase(x, sr, cfs, responses=responses)
    elif np.shape(filtered) != (n_ch, x.size):
        raise InputError(f"filtered has shape {np.shape(filtered)}, expected ({n_ch}, {x.size})")
    return weighted_sum(filtered, mask) * resynthesis_gain(cfs, sr)
