"""Talker augmentation of training speech (issue 11 item 4; REFERENCE section 12).

The training speech has two male voices (one synthetic, one real).  To make the SVMs meet other
vocal tracts and pitch ranges, each training utterance is transformed into new "talkers":

- ``vtlp``: vocal-tract-length perturbation with a warp factor ``alpha`` drawn uniformly from
  [0.9, 1.1] (Jaitly & Hinton 2013), the pitch kept.  In the waveform domain the warp is Praat's
  "Change gender" with formant shift ratio ``alpha`` and the pitch median unchanged: the sound is
  resampled by ``alpha`` (every spectral-envelope frequency scales by ``alpha``) and PSOLA restores
  the original pitch and duration.  Unlike the feature-domain VTLP the warp is linear up to the
  Nyquist frequency, with no fixed-point cut-off: the filterbank stops at 5 kHz, far below
  where a cut-off would matter.
- ``female``: Praat's "Change gender" (PSOLA) with formant shift ratio drawn from [1.1, 1.2] and a
  new pitch median drawn from [180, 240] Hz (pitch range factor 1, duration 1): female-like voices
  from male ones.

The IBM labels are computed later, from the augmented speech and the noise, when the augmented
utterances are mixed (``fastifkl mix``) like any other.  :func:`augment_corpus` writes them once
to a directory with its own ``MANIFEST.tsv`` (same ``split`` column as the sources, plus the
transform and its parameters), deterministically from the seed.

Needs praat-parselmouth, a training-time extra (``pip install "fastifkl[train]"``); nothing at
separation time imports this module.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from . import SAMPLE_RATE
from .errors import InputError

__all__ = ["KINDS", "change_gender", "vtlp", "draw_params", "transform", "augment_corpus"]

KINDS = {
    "vtlp": {"formant_ratio": (0.9, 1.1), "pitch_median": None},
    "female": {"formant_ratio": (1.1, 1.2), "pitch_median": (180.0, 240.0)},
}
PITCH_FLOOR = 75.0  # Hz, Praat's analysis range for "Change gender" (REFERENCE section 12)
PITCH_CEILING = 600.0
PEAK = 0.99  # written files are scaled down when their peak would exceed this (24-bit FLAC)


def _praat():
    try:
        import parselmouth
        from parselmouth.praat import call, run
    except ImportError:
        raise InputError("talker augmentation needs praat-parselmouth: pip install \"fastifkl[train]\"") from None
    return parselmouth, call, run


def change_gender(x: np.ndarray, formant_ratio: float, pitch_median: float = 0.0, sr: int = SAMPLE_RATE, *,
                  pitch_range: float = 1.0, seed: int = 0) -> np.ndarray:
    """Praat's "Change gender" of a signal (PSOLA; Praat manual, Sound: Change gender...).

    Parameters
    ----------
    x : ndarray, shape (N,)
        Speech (its mean is removed first).
    formant_ratio : float
        Formant shift ratio (> 1 shortens the vocal tract: higher formants).
    pitch_median : float
        New pitch median in Hz; 0 keeps the pitch.
    sr : int
    pitch_range : float
        Pitch range factor (1 keeps the range around the new median).
    seed : int
        Seed of Praat's random generator for this call (its PSOLA draws random pulse positions
        in unvoiced stretches): the same seed gives the same samples.  Praat's generator is
        re-seeded unpredictably afterwards.

    Returns
    -------
    y : ndarray, shape (N,), float64, with the RMS of ``x``.
    """
    parselmouth, call, run = _praat()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise InputError("change_gender needs a finite, non-empty 1-D signal")
    if not (0.5 <= formant_ratio <= 2.0):
        raise InputError(f"formant ratio must lie in [0.5, 2], got {formant_ratio!r}")
    if pitch_median < 0:
        raise InputError(f"pitch median must be >= 0 Hz (0 = unchanged), got {pitch_median!r}")
    x = x - x.mean()
    snd = parselmouth.Sound(x, sampling_frequency=float(sr))
    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        out = call(snd, "Change gender", PITCH_FLOOR, PITCH_CEILING, float(formant_ratio), float(pitch_median),
                   float(pitch_range), 1.0)
    finally:
        run("random_initializeSafelyAndUnpredictably ()")
    y = np.asarray(out.values[0], dtype=np.float64)
    if int(round(out.sampling_frequency)) != sr:
        from .audio import resample

        y = resample(y, int(round(out.sampling_frequency)), sr)
    y = y[: x.size] if y.size >= x.size else np.pad(y, (0, x.size - y.size))
    sx, sy = float(np.std(x)), float(np.std(y))
    return y * (sx / sy) if sy > 0 else y


def vtlp(x: np.ndarray, alpha: float, sr: int = SAMPLE_RATE, *, seed: int = 0) -> np.ndarray:
    """Vocal-tract-length perturbation by the warp factor ``alpha``, pitch kept (see the module
    docstring): :func:`change_gender` with formant ratio ``alpha`` and the pitch unchanged."""
    return change_gender(x, alpha, 0.0, sr, seed=seed)


def draw_params(kind: str, rng: np.random.Generator) -> dict:
    """Random parameters of a transform of ``kind`` ("vtlp" or "female"), uniform in :data:`KINDS`,
    and the seed of Praat's generator for it."""
    if kind not in KINDS:
        raise InputError(f"unknown augmentation {kind!r}; known: {', '.join(KINDS)}")
    spec = KINDS[kind]
    lo, hi = spec["formant_ratio"]
    params = {"formant_ratio": round(float(rng.uniform(lo, hi)), 4), "pitch_median": 0.0,
              "seed": int(rng.integers(1, 2**31 - 1))}
    if spec["pitch_median"] is not None:
        lo, hi = spec["pitch_median"]
        params["pitch_median"] = round(float(rng.uniform(lo, hi)), 1)
    return params


def transform(x: np.ndarray, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Apply a parameter set of :func:`draw_params` (``formant_ratio``, ``pitch_median``, ``seed``)."""
    return change_gender(x, params["formant_ratio"], params.get("pitch_median", 0.0), sr,
                         seed=params.get("seed", 0))


def augment_corpus(items, out_dir: str | os.PathLike, *, kinds=("vtlp", "female"), per_kind: int = 1,
                   seed: int = 0, progress=None) -> Path:
    """Write ``per_kind`` transformed copies of every utterance per kind, and a MANIFEST.tsv.

    Parameters
    ----------
    items : list of :class:`fastifkl.corpus.Item`
        The source utterances (their ``split`` is copied).
    out_dir : path-like
        Directory for ``<stem>.<kind><k>.flac`` (24-bit FLAC, 16 kHz) and ``MANIFEST.tsv``
        (columns ``file kind label split source transform formant_ratio pitch_median``).
    kinds : the transforms (:data:`KINDS`).
    per_kind : int
        Copies per utterance and kind (each with its own drawn parameters).
    seed : int
        Parameters of utterance i, kind j, copy k are drawn from ``default_rng([seed, i, j, k])``:
        the same seed gives the same files.
    progress : callable(done, total), optional

    Returns
    -------
    Path of the written MANIFEST.tsv.
    """
    from .audio import atomic_path, load, save

    for k in kinds:
        if k not in KINDS:
            raise InputError(f"unknown augmentation {k!r}; known: {', '.join(KINDS)}")
    if per_kind < 1:
        raise InputError(f"per_kind must be >= 1, got {per_kind}")
    _praat()
    out = Path(out_dir)
    rows = []
    total = len(items) * len(kinds) * per_kind
    done = 0
    for i, it in enumerate(items):
        x = load(it.path)
        for j, kind in enumerate(kinds):
            for k in range(per_kind):
                params = draw_params(kind, np.random.default_rng([seed, i, j, k]))
                y = transform(x, params)
                peak = float(np.max(np.abs(y)))
                if peak > PEAK:
                    y = y * (PEAK / peak)
                name = f"{Path(it.path).stem}.{kind}{k}.flac"
                save(out / name, y)
                rows.append([name, "speech", f"{it.label}+{kind}", it.split, os.path.relpath(it.path, out.resolve()),
                             kind, f"{params['formant_ratio']:.4f}", f"{params['pitch_median']:.1f}"])
                done += 1
                if progress:
                    progress(done, total)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["file", "kind", "label", "split", "source", "transform", "formant_ratio", "pitch_median"])
    w.writerows(rows)
    target = out / "MANIFEST.tsv"
    with atomic_path(target) as tmp:
        Path(tmp).write_text(buf.getvalue())
    return target
