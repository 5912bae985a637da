"""Audio files in blocks: a streaming reader and progressive, atomic writers.

:class:`AudioReader` reads a file with soundfile's block reading and yields it as consecutive
chunks of float64 mono samples at 16 kHz, as :func:`fastifkl.audio.load` would return it whole:
the same checks (one line naming the file), the same down-mixing, and the same polyphase
resampling (``scipy.signal.resample_poly``) done on overlapping chunks.  A chunk of input whose
first sample is a multiple of the decimation factor is resampled with ``pad`` more input
samples on each side (more than the filter's half length), and the outputs the padding touched
are dropped: every kept output sample is computed from the same input samples and taps as in
the whole-signal call (the tests check it to 1e-12).

:class:`WavWriter` writes a float32 WAV progressively (the header first: its length is known
from the reader's pre-pass) and :class:`NpyWriter` writes a ``.npy`` array through a memory
map (:func:`numpy.lib.format.open_memmap`, the file's blocks allocated up front so that a full
disk is one clear error, not a SIGBUS); both write a temporary file beside the target and
rename it over the target only when the ``with`` block ends without an error
(:func:`fastifkl.audio.atomic_path`).  The bytes equal those of :func:`fastifkl.audio.save`
(scipy's float WAV) and :func:`numpy.save`.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np

from . import FRAME_LEN, SAMPLE_RATE
from .audio import atomic_path
from .errors import InputError

CHUNK_FRAMES = 1 << 16  # input frames per read (4 s at 16 kHz)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AudioReader:
    """A sound file read in chunks as float64 mono at ``sr`` Hz.

    Parameters
    ----------
    path : path-like
    sr : int
        Output sample rate (other rates are resampled with a polyphase filter).
    downmix : bool
        Average the channels of a multi-channel file; without it such files are refused.
    min_samples : int
        A file shorter than this (after resampling) is refused (by :meth:`chunks`, at its end).
    chunk_frames : int
        Input frames per read.

    Opening checks that the file exists, is readable audio, not empty, and mono (or
    ``downmix``); :meth:`chunks` checks every chunk for NaN / inf.  Every problem is an
    :class:`~fastifkl.errors.InputError` with one line naming the file, the same lines as
    :func:`fastifkl.audio.load`.
    """

    def __init__(self, path, sr: int = SAMPLE_RATE, *, downmix: bool = False, min_samples: int = FRAME_LEN,
                 chunk_frames: int = CHUNK_FRAMES):
        import soundfile as sf

        self.path = Path(path)
        self.sr = int(sr)
        self.downmix = downmix
        self.min_samples = int(min_samples)
        p = self.path
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if p.is_dir():
            raise InputError(f"{p}: is a directory, expected an audio file")
        try:
            info = sf.info(str(p))
        except Exception as exc:  # soundfile raises several types; all mean "not readable audio"
            raise InputError(f"{p}: not a readable audio file ({_first_line(exc)})") from None
        if info.frames == 0:
            raise InputError(f"{p}: audio file is empty (0 samples)")
        if info.channels > 1 and not downmix:
            raise InputError(f"{p}: has {info.channels} channels; fastifkl separates mono recordings "
                             "(pass --downmix to average the channels)")
        self.file_sr = int(info.samplerate)
        self.channels = int(info.channels)
        g = gcd(self.file_sr, self.sr)
        self.up, self.down = self.sr // g, self.file_sr // g
        # input samples each side of a resampled chunk: more than the filter's reach
        # (resample_poly's half length is 10 * max(up, down) taps at the upsampled rate)
        reach = -(-10 * max(self.up, self.down) // self.up) + 1
        self.pad = self.down * -(-reach // self.down)
        self.chunk_frames = max(int(chunk_frames), 2 * self.pad, 1)
        self.chunk_frames = self.down * -(-self.chunk_frames // self.down)

    def _input_chunks(self) -> Iterator[np.ndarray]:
        import soundfile as sf

        p = self.path
        try:
            f = sf.SoundFile(str(p))
        except Exception as exc:
            raise InputError(f"{p}: not a readable audio file ({_first_line(exc)})") from None
        with f:
            while True:
                try:
                    data = f.read(self.chunk_frames, dtype="float64", always_2d=True)
                except Exception as exc:
                    raise InputError(f"{p}: not a readable audio file ({_first_line(exc)})") from None
                if data.shape[0] == 0:
                    return
                x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                x = np.ascontiguousarray(x)
                if not np.all(np.isfinite(x)):
                    raise InputError(f"{p}: contains NaN or infinite samples")
                yield x

    def chunks(self) -> Iterator[np.ndarray]:
        """Consecutive chunks of the signal (float64, mono, ``sr`` Hz); together, what
        :func:`fastifkl.audio.load` returns.  Each call reads the file again from its start."""
        n = 0
        source = self._input_chunks() if self.up == self.down else self._resampled(self._input_chunks())
        for x in source:
            n += x.size
            yield x
        if n < self.min_samples:
            raise InputError(f"{self.path}: too short ({n} samples at {self.sr} Hz, need at least "
                             f"{self.min_samples})")

    def _resampled(self, inputs: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        from scipy.signal import resample_poly

        up, down, pad = self.up, self.down, self.pad
        buf = np.empty(0)
        base = 0  # input index of buf[0] (a multiple of down)
        done = 0  # input samples whose outputs were emitted (a multiple of down)

        def emit(stop: int, last: bool) -> np.ndarray:
            s = max(0, done - pad)
            e = base + buf.size if last else stop + pad
            y = resample_poly(buf[s - base: e - base], up, down)
            k0 = done * up // down - s * up // down
            k1 = (-(-stop * up // down) if last else stop * up // down) - s * up // down
            return y[k0:k1]

        for x in inputs:
            buf = np.concatenate([buf, x])
            stop = ((base + buf.size - pad) // down) * down
            if stop - done >= self.chunk_frames:
                yield emit(stop, False)
                done = stop
                cut = max(0, done - pad) - base
                buf, base = buf[cut:], base + cut
        if base + buf.size > done:
            yield emit(base + buf.size, True)


class _AtomicWriter:
    """Shared exit logic: close the temporary file, then rename it (success) or remove it (any
    error; an :class:`OSError` of the write becomes the one-line
    :class:`~fastifkl.errors.OutputError` of :func:`fastifkl.audio.atomic_path`)."""

    path: Path

    def _open_temp(self) -> Path:
        self._atomic = atomic_path(self.path)
        return self._atomic.__enter__()

    def _close(self) -> None:  # pragma: no cover - overridden
        pass

    def _incomplete(self) -> str | None:
        return None

    def _fail(self, exc: BaseException) -> None:
        """Remove the temporary file and raise (``exc``, or its OutputError)."""
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        if not self._atomic.__exit__(type(exc), exc, exc.__traceback__):
            raise exc

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            try:
                self._close()
            except Exception:  # noqa: BLE001 - the body's error is the one to report
                pass
            return self._atomic.__exit__(exc_type, exc, tb)  # False: Python re-raises the body's error
        why = self._incomplete()
        if why is not None:
            self._fail(ValueError(f"{self.path}: {why}"))
        try:
            self._close()
        except OSError as err:
            self._fail(err)
        return self._atomic.__exit__(None, None, None)


class WavWriter(_AtomicWriter):
    """A mono float32 WAV of ``n_samples`` samples, written progressively and atomically.

    Use as a context manager; :meth:`write` appends samples; the file appears under ``path``
    only when the ``with`` block ends without an error and exactly ``n_samples`` were written.
    The bytes are those of :func:`fastifkl.audio.save` (scipy's plain IEEE-float WAV: no
    timestamped PEAK chunk, so identical runs write identical files); files over 4 GB are RF64.
    """

    def __init__(self, path, n_samples: int, sr: int = SAMPLE_RATE):
        self.path = Path(path)
        self.n_samples = int(n_samples)
        self.sr = int(sr)
        self.written = 0
        self._fh = None

    def header(self) -> bytes:
        """The header scipy.io.wavfile.write gives a float32 mono signal of ``n_samples``."""
        n, sr = self.n_samples, self.sr
        nbytes = 4 * n
        fmt = struct.pack("<HHIIHH", 3, 1, sr, 4 * sr, 4, 32) + b"\x00\x00"  # IEEE float, cbSize 0
        fmt_chunk = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        fact = b"fact" + struct.pack("<II", 4, n)
        data_head = b"data" + struct.pack("<I", min(nbytes, 0xFFFFFFFF))
        if 12 + len(fmt_chunk) + 8 + nbytes - 8 > 0xFFFFFFFF:
            head = (b"RF64" + b"\xff" * 4 + b"WAVE" + b"ds64" + struct.pack("<I", 28)
                    + struct.pack("<QQQI", 0, nbytes, n, 0) + fmt_chunk + fact + data_head)
            return head[:20] + struct.pack("<Q", len(head) + nbytes - 8) + head[28:]
        head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + fmt_chunk + fact + data_head
        return head[:4] + struct.pack("<I", len(head) + nbytes - 8) + head[8:]

    def __enter__(self) -> WavWriter:
        tmp = self._open_temp()
        try:
            self._fh = open(tmp, "wb")
            self._fh.write(self.header())
        except BaseException as exc:
            self._fail(exc)
        return self

    def write(self, y: np.ndarray) -> None:
        """Append samples (any float dtype; stored as float32)."""
        y = np.asarray(y)
        if self.written + y.size > self.n_samples:
            raise ValueError(f"{self.path}: more than the {self.n_samples} samples announced")
        self._fh.write(y.astype("<f4", copy=False).tobytes())
        self.written += y.size

    def _incomplete(self) -> str | None:
        if self.written != self.n_samples:
            return f"{self.written} samples written, {self.n_samples} announced"
        return None

    def _close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()


class NpyWriter(_AtomicWriter):
    """A ``.npy`` array written through a memory map, atomically.

    ``np.lib.format.open_memmap`` creates it on the temporary path beside ``path``; its blocks
    are allocated at once (``posix_fallocate``: a full disk fails here, as one
    :class:`~fastifkl.errors.OutputError`, instead of killing the process with SIGBUS when a
    page is written later); the caller fills :attr:`array` (or uses :meth:`write_columns`);
    the file is renamed over ``path`` when the ``with`` block ends without an error.  The
    bytes are those of ``np.save`` of the same array.
    """

    def __init__(self, path, shape: tuple, dtype):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.array = None

    def __enter__(self) -> NpyWriter:
        tmp = self._open_temp()
        try:
            self.array = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=self.shape)
            _allocate(tmp)
        except BaseException as exc:
            self._fail(exc)
        return self

    def write_columns(self, start: int, values: np.ndarray) -> None:
        """``array[:, start:start + k] = values`` for ``values`` of shape (rows, k)."""
        values = np.asarray(values)
        self.array[:, start:start + values.shape[1]] = values

    def _close(self) -> None:
        arr, self.array = self.array, None
        if arr is None:
            return
        arr.flush()
        mm = getattr(arr, "_mmap", None)
        del arr
        if mm is not None:
            try:
                mm.close()
            except (BufferError, ValueError):  # a view of it is still alive: the GC closes it
                pass


def _allocate(path: Path) -> None:
    """Allocate the blocks of a (sparse) file now: ENOSPC here rather than SIGBUS later."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not Linux
        return
    size = os.path.getsize(path)
    if size == 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (getattr(os, "EOPNOTSUPP", None), getattr(os, "ENOTSUP", None)):
            raise
    finally:
        os.close(fd)


__all__ = ["AudioReader", "WavWriter", "NpyWriter"]
