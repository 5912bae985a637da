"""Level normalisation before analysis: one scalar gain per file (issue 11, item 3).

The unit features are not level-free (AMS is a linear magnitude, MFCC and RASTA-PLP c0 are log
energies): the same recording 6 dB louder moves them by most of a standard deviation.  So the
separator scales every signal it analyses -- training mixtures and inputs alike -- to a fixed
RMS first, as the paper group's published feature code does (it scales each mixture to a fixed
RMS before the front end).  Only the *analysis* sees the scaled signal; the separated output is
resynthesised from the input as it came, at its own level.

Why one scalar per file and not a local (windowed) gain: a scalar gain makes the analysis
exactly level-independent (``analysis_gain(a x) * a x == analysis_gain(x) * x`` up to rounding)
and changes no feature's relation between frames; a bounded-window gain would modulate the
envelope features (AMS, RASTA) and the pitch features' energy thresholds with the talker's own
loudness.  It is computable in a streaming pre-pass over a long file with constant memory
(:class:`LevelMeter`: count, mean and sum of squared deviations, merged block by block with
Chan et al.'s pairwise update), so a block-wise separation engine reads the file once to get the
gain and once more to separate.  The statistic is the standard deviation (RMS after removing the
mean): a DC offset, which the filterbank (80 Hz and up) ignores, does not count as level.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["LEVEL_RMS", "SILENCE_RMS", "LevelMeter", "analysis_gain", "rms"]

LEVEL_RMS = 0.05
"""RMS (about -26 dB re full scale) every analysed signal is scaled to."""

SILENCE_RMS = 1e-9
"""Below this RMS a signal counts as digital silence: its gain is 1 (nothing to normalise)."""


class LevelMeter:
    """Streaming level of a signal: feed blocks with :meth:`update`, read :meth:`gain`.

    Blocks may have any length (including 0); the result equals :func:`analysis_gain` of the
    concatenated signal up to floating-point rounding, whatever the block boundaries.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def update(self, block: np.ndarray) -> LevelMeter:
        """Add the samples of ``block`` (1-D); returns ``self``."""
        b = np.asarray(block, dtype=np.float64)
        if b.ndim != 1:
            raise InputError(f"level: a block must be 1-D, got shape {b.shape}")
        nb = b.size
        if nb == 0:
            return self
        if not np.all(np.isfinite(b)):
            raise InputError("level: the signal contains NaN or infinite samples")
        mb = float(b.mean())
        d = b - mb
        m2b = float(np.dot(d, d))
        n = self.n + nb
        delta = mb - self.mean
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.mean += delta * nb / n
        self.n = n
        return self

    def rms(self) -> float:
        """Standard deviation of the samples so far (RMS after removing the mean); 0 when empty."""
        return float(np.sqrt(max(self.m2, 0.0) / self.n)) if self.n else 0.0

    def gain(self, target_rms: float | None = LEVEL_RMS) -> float:
        """The factor that brings the signal to ``target_rms`` (1.0 for silence, and for
        ``target_rms=None``: no level normalisation, as in format-1 models)."""
        if target_rms is None:
            return 1.0
        if not (np.isfinite(target_rms) and target_rms > 0):
            raise InputError(f"level: target RMS must be a positive number, got {target_rms!r}")
        r = self.rms()
        return float(target_rms / r) if r > SILENCE_RMS else 1.0


def rms(x: np.ndarray) -> float:
    """Standard deviation of ``x`` (its RMS after removing the mean)."""
    return LevelMeter().update(np.ravel(x)).rms()


def analysis_gain(x: np.ndarray, target_rms: float | None = LEVEL_RMS) -> float:
    """The scalar gain that brings ``x`` to ``target_rms`` before analysis.

    Parameters
    ----------
    x : ndarray, shape (N,)
        The whole signal (for a long file read in blocks, use :class:`LevelMeter`).
    target_rms : float or None
        Wanted standard deviation after scaling (default :data:`LEVEL_RMS`); None: no level
        normalisation (gain 1.0).

    Returns
    -------
    float
        ``target_rms / std(x)``, or 1.0 when ``std(x) <= SILENCE_RMS`` (digital silence) or
        ``target_rms`` is None.
    """
    return LevelMeter().update(x).gain(target_rms)
