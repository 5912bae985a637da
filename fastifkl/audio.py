"""Reading, writing and mixing audio.

Everything inside the package works on float64 mono signals at 16 kHz.  :func:`load` turns
any file soundfile can read into that form (resampling with ``scipy.signal.resample_poly``),
and refuses what it cannot use with one clear line naming the file and the problem.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from math import gcd
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import FRAME_LEN, SAMPLE_RATE
from .errors import InputError, OutputError

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

    On any exception the temporary file is removed and ``path`` is left untouched, so a failed
    write never leaves a half-written output.  An :class:`OSError` of the write (the directory
    cannot be made, no permission, a read-only file system, a directory in the way of ``path``,
    a full disk) becomes an :class:`~fastifkl.errors.OutputError` naming ``path`` (one line).

    The temporary file is ``.<name>.<pid>-<random>.tmp``: the writer's process id lets
    :func:`remove_stale_temps` delete what a killed process left behind.
    """
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        parent = _make_dir(self.path.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.{os.getpid()}-", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise output_error(self.path, exc) from None
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
                os.replace(self.tmp, self.path)
            except OSError as err:
                error = output_error(self.path, err)
                self._discard()
                raise error from None
            return False
        error = None
        if isinstance(exc, OSError) and exc.filename in (None, str(self.tmp), str(self.path)):
            # the write itself failed (an OSError about another file is not ours to rename);
            # judged before the temporary file is removed (a full disk is full only until then)
            error = output_error(self.path, exc)
        self._discard()
        if error is not None:
            raise error from None
        return False

    def _discard(self) -> None:
        try:
            self.tmp.unlink()
        except OSError:
            pass


def output_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line :class:`OutputError` for an :class:`OSError` met while writing ``path``."""
    why = exc.strerror or str(exc) or type(exc).__name__
    code = exc.errno
    if isinstance(exc, IsADirectoryError) or Path(path).is_dir():
        why = "a directory is in the way"
    elif code is None and _disk_full(Path(path).parent):  # e.g. numpy's "N requested and M written"
        code = errno.ENOSPC
        why = os.strerror(code)
    return OutputError(f"{path}: cannot write ({why})", code)


def _disk_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _make_dir(path: Path) -> Path:
    """``path`` made with its parents (it may exist); an OSError becomes one OutputError line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _dir_error(path, exc) from None
    return path


def _dir_error(path: Path, exc: OSError) -> OutputError:
    where = exc.filename if exc.filename else path
    why = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        why = "a file is in the way"
    return OutputError(f"{where}: cannot create the output directory ({why})", exc.errno)


def output_dir(path: str | os.PathLike) -> Path:
    """Create the output directory ``path`` (with parents) and check that files can be made in it.

    Raises
    ------
    OutputError
        One line naming the directory: it cannot be made (e.g. under ``/proc``, a file in the
        way, no permission) or it is not writable (permission, read-only file system).
    """
    p = _make_dir(Path(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=f".fastifkl-probe.{os.getpid()}-", suffix=".tmp", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"{p}: cannot write in the output directory ({why})", exc.errno) from None
    return p


_TEMP = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp$")


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` in ``directory`` whose writer is dead.

    A writer killed mid-write (``kill -9``, the out-of-memory killer) cannot remove its
    temporary file; this does, once its process id names no live process on this machine.
    Returns the files removed.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    try:  # a zombie (dead, not yet reaped) is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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
            try:
                sf.write(str(tmp), x, sr, subtype=subtype, format=fmt)
            except getattr(sf, "SoundFileRuntimeError", OSError) as exc:  # libsndfile's failed write (disk full)
                if _disk_full(p.parent):  # libsndfile says only "System error."
                    raise OutputError(f"{p}: cannot write ({os.strerror(errno.ENOSPC)})", errno.ENOSPC) from None
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise OutputError(f"{p}: cannot write ({msg})") from None
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
