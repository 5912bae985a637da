"""``fastifkl separate`` on many files: one job per file, block by block, on local processes or Dask.

:func:`separate_file` is the job (a picklable dict in, a result tuple out): it reads the file
twice in blocks, once for the pre-pass (:func:`fastifkl.blocks.signal_stats`: length, mean,
RMS, peak; every chunk checked) and once for :func:`fastifkl.blocks.separate_blocks`, writing
``<name>.sep.wav`` progressively and ``<name>.mask.npy`` through a memory map, both atomically.
A worker holds one block at a time, whatever the length of the file.

:func:`separate_files` runs the jobs (:func:`fastifkl.parallel.executor`) and yields each
file's outcome in order; :class:`Summary` counts them and words the closing lines; the command
line (:mod:`fastifkl.cli`) only prints.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .blocks import BLOCK_SECONDS
from .errors import FastifklError, InputError, OutputError

# what the summary line of a batch calls each kind of failed file
FAILURE_NAMES = {"input": "bad input", "output": "cannot write", "lost": "worker died twice",
                 "failed": "unexpected error"}


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files named by paths, directories (their audio files, recursively) and glob patterns."""
    import glob

    from .audio import AUDIO_SUFFIXES

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise InputError(f"{p}: directory holds no audio files")
            files += found
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(item, recursive=True) if Path(q).is_file())
            if not found:
                raise InputError(f"{item}: no file matches this pattern")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return files


def separate_job(model: str, src, out_dir, *, mask: bool = False, downmix: bool = False, output: str = "ratio",
                 block_seconds: float = BLOCK_SECONDS) -> dict:
    """The job of one file for :func:`separate_file` (picklable)."""
    return {"model": str(model), "src": str(src), "out_dir": str(out_dir), "mask": bool(mask),
            "downmix": bool(downmix), "output": str(output), "block_seconds": float(block_seconds)}


def write_separation(sep, src, out_dir, *, mask: bool = False, downmix: bool = False, output: str = "ratio",
                     block_seconds: float = BLOCK_SECONDS) -> Path:
    """Separate one audio file into ``out_dir/<stem>.sep.wav`` (and ``<stem>.mask.npy``).

    ``output`` ("ratio" or "binary", :meth:`~fastifkl.separator.Separator.mask_from_decision`)
    is the mask the speech is resynthesised with; ``<stem>.mask.npy`` is always the binary mask
    (C x M uint8, the SVMs' sign), written through a memory map.  The level normalisation's
    gain comes from the pre-pass (the whole file's level).

    Returns the path of the separated speech.  Raises :class:`~fastifkl.errors.InputError`
    (bad input, found by the pre-pass before anything is written) or
    :class:`~fastifkl.errors.OutputError`; nothing is left behind on any error.
    """
    from .audio_stream import AudioReader, NpyWriter, WavWriter
    from .blocks import binary_mask, block_samples_for, separate_blocks, signal_stats
    from .separator import OUTPUTS

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    reader = AudioReader(src, downmix=downmix)
    stats = signal_stats(reader.chunks())  # the pre-pass: checks every chunk, counts the samples
    stem = Path(src).stem
    target = Path(out_dir) / f"{stem}.sep.wav"
    with ExitStack() as stack:
        wav = stack.enter_context(WavWriter(target, stats.n_samples))
        npy = None
        for blk, y, _, d in separate_blocks(sep, reader.chunks(), stats,
                                            block_samples=block_samples_for(block_seconds),
                                            mask_fn=lambda dd: sep.mask_from_decision(dd, output)):
            wav.write(y)
            if mask:
                if npy is None:
                    npy = stack.enter_context(NpyWriter(Path(out_dir) / f"{stem}.mask.npy",
                                                        (d.shape[0], stats.n_frames), np.uint8))
                npy.write_columns(blk.m0, binary_mask(d))  # the paper's mask, whatever ``output``
    return target


def separate_file(job: dict) -> tuple:
    """One file of a batch (a :func:`separate_job`): load the model (once per process), separate.

    Returns ``(input, output, None)``, or ``(input, None, (kind, message))`` when the file
    failed: kind ``"input"`` (bad input), ``"output"`` (its output cannot be written),
    ``"disk"`` (no output can be written any more: a full or read-only disk) or ``"failed"``
    (an unexpected error; one file's failure must not end the batch).
    """
    from .evaluate import cached_model

    src = job["src"]
    try:
        sep = cached_model(job["model"])
        target = write_separation(sep, src, job["out_dir"], mask=job["mask"], downmix=job["downmix"],
                                  output=job.get("output", "ratio"),
                                  block_seconds=job.get("block_seconds", BLOCK_SECONDS))
        return src, str(target), None
    except OutputError as exc:
        return src, None, ("disk" if exc.whole_batch else "output", str(exc))
    except FastifklError as exc:
        return src, None, ("input", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in one line; the rest of the batch goes on
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return src, None, ("failed", f"{src}: failed ({type(exc).__name__}{': ' + detail if detail else ''})")


@dataclass
class Summary:
    """Outcome counts of a batch of ``n_files``."""

    n_files: int
    done: int = 0
    failures: Counter = field(default_factory=Counter)
    lost_workers: int = 0

    def lines(self) -> list[str]:
        """The closing stderr lines (without the ``fastifkl: `` prefix)."""
        out = []
        if self.lost_workers:
            out.append(f"note: {self.lost_workers} worker process(es) died and were replaced; "
                       "the files they held were run again")
        if self.failures and self.n_files > 1:
            parts = ", ".join(f"{n} {FAILURE_NAMES[k]}" for k, n in self.failures.items())
            out.append(f"{sum(self.failures.values())} of {self.n_files} files failed ({parts}); {self.done} done")
        return out

    @property
    def exit_code(self) -> int:
        """2 if an input was bad or an output could not be written, else 1 if a file failed, else 0."""
        if not self.failures:
            return 0
        return 2 if self.failures["input"] or self.failures["output"] else 1


def separate_files(files: list, model: str, out_dir, *, mask: bool = False, downmix: bool = False,
                   output: str = "ratio", workers: int = 1, scheduler=None, block_seconds: float = BLOCK_SECONDS,
                   summary: Summary | None = None, job_fn=None) -> Iterator[tuple]:
    """Separate ``files`` with the model file ``model``; yield ``(input, output, error)`` per file,
    in order (``error`` is None or ``(kind, message)``, see :func:`separate_file`).

    A file whose worker died twice is reported as kind ``"lost"``; a full or read-only disk
    ends the batch with an :class:`~fastifkl.errors.OutputError` ("...; stopped after k of n
    files").  ``summary`` (optional) is updated as the files finish.
    """
    from .audio import remove_stale_temps
    from .errors import WorkerLostError
    from .parallel import executor

    summary = Summary(len(files)) if summary is None else summary
    job_fn = separate_file if job_fn is None else job_fn
    jobs = (separate_job(model, f, out_dir, mask=mask, downmix=downmix, output=output,
                         block_seconds=block_seconds) for f in files)
    ex = executor(workers=workers, scheduler=scheduler)
    try:
        with ex:
            for res in ex.imap(job_fn, jobs, on_lost="yield"):
                if isinstance(res, WorkerLostError):
                    src = res.item["src"]
                    res = (src, None, ("lost", f"{src}: worker process died twice ({res.reason})"))
                src, target, err = res
                if err is None:
                    summary.done += 1
                elif err[0] == "disk":  # every further file would fail too: stop here
                    raise OutputError(f"{err[1]}; stopped after {summary.done} of {len(files)} files")
                else:
                    summary.failures[err[0]] += 1
                yield res
    finally:
        summary.lost_workers = ex.lost_workers
        if ex.kind != "dask":  # temporary files of killed local workers (Dask workers may be elsewhere)
            remove_stale_temps(out_dir)


def write_cochleagram(src, out_dir, cfs, *, downmix: bool = False, block_seconds: float = BLOCK_SECONDS,
                      stats=None) -> Path:
    """``out_dir/<stem>.cochleagram.npy`` (C x M energies) of one file, block by block, written
    through a memory map (atomically).  ``stats``: the file's pre-pass, if already made."""

    from .audio_stream import AudioReader, NpyWriter
    from .blocks import block_samples_for, cochleagram_blocks, signal_stats

    reader = AudioReader(src, downmix=downmix)
    stats = signal_stats(reader.chunks()) if stats is None else stats
    target = Path(out_dir) / f"{Path(src).stem}.cochleagram.npy"
    with NpyWriter(target, (len(cfs), stats.n_frames), np.float64) as npy:
        for blk, E in cochleagram_blocks(reader.chunks(), stats.n_samples, cfs,
                                         block_samples=block_samples_for(block_seconds)):
            npy.write_columns(blk.m0, E)
    return target


def file_stats(src, *, downmix: bool = False):
    """The pre-pass of one audio file (:class:`fastifkl.blocks.FileStats`); validates it."""
    from .audio_stream import AudioReader
    from .blocks import signal_stats

    return signal_stats(AudioReader(src, downmix=downmix).chunks())


__all__ = ["expand_inputs", "separate_job", "separate_file", "write_separation", "separate_files", "Summary",
           "write_cochleagram", "file_stats", "FAILURE_NAMES"]
