"""Reading, writing and mixing audio.

Everything inside the package works on float64 mono signals at 16 kHz.  :func:`load` turns
any file soundfile can read into that form (resampling with ``scipy.signal.resample_poly``),
and refuses what it cannot use with one clear line naming the file and the problem.
"""
from __future__ import annotations

import os
import tempfile
from math import gcd
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import FRAME_LEN, SAMPLE_RATE
from .errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3", ".caf", ".w64")


def load(
    path: str | os.PathLike,
    sr: int = SAMPLE_RATE,
    *,
    downmix: bool = False,
    min_samples: int = FRAME_LEN,
) -> np.ndarray:
    """Read an audio file as float64 mono at ``sr`` Hz.

    Parameters
    ----------
    path : path-like
        Any file libsndfile can read (WAV, FLAC, OGG, ...).
    sr : int
        Target sample rate; other rates are resampled with a polyphase filter.
    downmix : bool
        Average the channels of a multi-channel file; without it such files are refused.
    min_samples : int
        Refuse signals shorter than this after resampling (default: one 20 ms frame).

    Returns
    -------
    x : ndarray, shape (N,), float64

    Raises
    ------
    InputError
        Missing, unreadable, empty, multi-channel (without ``downmix``), non-finite or too-short
        audio.  The message is one line and names the file.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an audio file")
    try:
        data, file_sr = sf.read(str(p), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several types; all mean "not readable audio"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: not a readable audio file ({msg})") from None
    if data.size == 0:
        raise InputError(f"{p}: audio file is empty (0 samples)")
    if data.shape[1] > 1:
        if not downmix:
            raise InputError(
                f"{p}: has {data.shape[1]} channels; fastifkl separates mono recordings "
                "(pass --downmix to average the channels)"
            )
        data = data.mean(axis=1, keepdims=True)
    x = np.ascontiguousarray(data[:, 0])
    if not np.all(np.isfinite(x)):
        raise InputError(f"{p}: contains NaN or infinite samples")
    if file_sr != sr:
        x = resample(x, int(file_sr), sr)
    if x.size < min_samples:
        raise InputError(
            f"{p}: too short ({x.size} samples at {sr} Hz, need at least {min_samples})"
        )
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from ``sr_in`` to ``sr_out`` Hz."""
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"invalid sample rates {sr_in} -> {sr_out}")
    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(np.asarray(x, dtype=np.float64), sr_out // g, sr_in // g)


def atomic_path(path: str | os.PathLike):
    """Context manager yielding a temporary path beside ``path``; renamed over it on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a crash
    or an interrupt never leaves a half-written output.
    """
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
            os.replace(self.tmp, self.path)
        else:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass
        return False


def save(path: str | os.PathLike, x: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "FLOAT") -> Path:
    """Write a mono signal atomically (temporary file + rename).

    Parameters
    ----------
    path : path-like
        Output file; the format follows the suffix (``.wav`` -> WAV, ``.flac`` -> FLAC).
    x : ndarray, shape (N,)
    sr : int
    subtype : str
        soundfile subtype; 32-bit float WAV by default (no clipping of separated speech).
        FLAC files are written as 24-bit PCM.
    """
    import soundfile as sf

    p = Path(path)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"{p}: can only write mono signals, got shape {x.shape}")
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(p.suffix.lower(), "WAV")
    if fmt != "WAV" and subtype == "FLOAT":
        subtype = "PCM_24" if fmt == "FLAC" else "VORBIS"
    with atomic_path(p) as tmp:
        if fmt == "WAV" and subtype == "FLOAT":
            # libsndfile adds a PEAK chunk with a timestamp to float WAVs, which would make
            # identical runs write different bytes; scipy writes a plain IEEE-float WAV.
            from scipy.io import wavfile

            wavfile.write(str(tmp), sr, x.astype(np.float32))
        else:
            sf.write(str(tmp), x, sr, subtype=subtype, format=fmt)
    return p


class Mixture(NamedTuple):
    """A mixture and its premixed parts (all shape (N,)), and the noise offset used."""

    mixture: np.ndarray
    speech: np.ndarray
    noise: np.ndarray
    offset: int


def noise_segment(noise: np.ndarray, n: int, offset: int) -> np.ndarray:
    """``n`` samples of ``noise`` starting at ``offset``, looping the file if it is too short."""
    noise = np.asarray(noise, dtype=np.float64)
    if noise.size == 0:
        raise InputError("noise signal is empty")
    idx = (offset + np.arange(n)) % noise.size
    return noise[idx]


def mix_at_snr(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    rng: np.random.Generator | None = None,
    *,
    offset: int | None = None,
) -> Mixture:
    """Mix speech with a random segment of noise at an exact SNR over the whole utterance.

    Parameters
    ----------
    speech : ndarray, shape (N,)
    noise : ndarray, shape (L,)
        Noise recording; a segment of length N is cut at a random offset (files shorter than
        the speech are looped).
    snr_db : float
        ``10 log10(sum(speech**2) / sum(noise_scaled**2))`` of the result.
    rng : numpy Generator, optional
        Source of the offset (ignored when ``offset`` is given).
    offset : int, optional
        Fixed start of the noise segment (to regenerate a mixture bit-for-bit).

    Returns
    -------
    Mixture
        ``(mixture, speech, noise_scaled, offset)`` with ``mixture = speech + noise_scaled``.
    """
    s = np.asarray(speech, dtype=np.float64)
    v = np.asarray(noise, dtype=np.float64)
    if s.ndim != 1 or v.ndim != 1:
        raise InputError("speech and noise must be 1-D signals")
    n = s.size
    if offset is None:
        rng = np.random.default_rng() if rng is None else rng
        offset = int(rng.integers(0, max(1, v.size - n + 1))) if v.size >= n else int(rng.integers(0, v.size))
    seg = noise_segment(v, n, offset)
    es = float(np.dot(s, s))
    en = float(np.dot(seg, seg))
    if es <= 0:
        raise InputError("speech signal is silent (zero energy); cannot set an SNR")
    if en <= 0:
        raise InputError("noise segment is silent (zero energy); cannot set an SNR")
    seg = seg * np.sqrt(es / (en * 10.0 ** (snr_db / 10.0)))
    return Mixture(s + seg, s, seg, int(offset))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SNR of ``estimate`` against ``reference`` in dB: ``10 log10(sum r^2 / sum (r - e)^2)``."""
    r = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    err = float(np.sum((r - e) ** 2))
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(np.sum(r * r) / err))
