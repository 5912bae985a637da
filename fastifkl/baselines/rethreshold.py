"""SVM rethresholding (Han & Wang, ICASSP 2012 style), REFERENCE.md section 8.

The G-SVM labels a unit 1 where its decision value is > 0. Under a noise unseen in training the
decision values shift, so this baseline moves each channel's threshold using the test mixture
itself: on frames that contain no speech, every unit ought to be 0, so the threshold of
channel c is set to the ``(1 - target_fa)`` quantile of channel c's decision values over those
frames -- the share of noise-only units labelled 1 then equals the target false-alarm rate.

Noise-only frames (our choice, documented): the first ``n_lead`` frames (a mixture is assumed
to start with a short noise lead-in), plus every frame whose total mixture energy (summed over
channels, in dB) stays within ``vad_margin_db`` of the lead-in's level, where the margin is
widened to three standard deviations of the lead-in frames' dB energies when they fluctuate
more than that (non-stationary noise).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["rethreshold", "noise_frames", "channel_thresholds"]


def _check_pair(decision: np.ndarray, mixture_energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(decision, dtype=np.float64)
    e = np.asarray(mixture_energy, dtype=np.float64)
    if d.ndim != 2:
        raise InputError(f"decision values must be a (channels x frames) array, got shape {d.shape}")
    if e.shape != d.shape:
        raise InputError(f"mixture energies must have the shape of the decision values {d.shape}, got {e.shape}")
    if d.shape[1] == 0:
        raise InputError("no frames to rethreshold")
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        raise InputError("decision values and mixture energies must be finite")
    if np.any(e < 0):
        raise InputError("mixture energies must be non-negative")
    return d, e


def noise_frames(mixture_energy: np.ndarray, n_lead: int = 10, vad_margin_db: float = 1.0) -> np.ndarray:
    """Boolean mask (M,) of the frames taken as noise-only by the simple energy VAD.

    Parameters
    ----------
    mixture_energy : ndarray, shape (C, M)
        Cochleagram energies of the mixture.
    n_lead : int
        Leading frames assumed noise-only (their level is the VAD's reference).
    vad_margin_db : float
        A frame is noise-only if its total energy in dB is below the lead-in mean plus
        ``max(vad_margin_db, 3 * std of the lead-in frames)``.
    """
    e = np.asarray(mixture_energy, dtype=np.float64)
    if e.ndim != 2:
        raise InputError(f"mixture energies must be (channels x frames), got shape {e.shape}")
    if not isinstance(n_lead, (int, np.integer)) or n_lead < 1:
        raise InputError(f"n_lead must be a positive integer, got {n_lead!r}")
    m = e.shape[1]
    lead = min(int(n_lead), m)
    level = 10.0 * np.log10(e.sum(axis=0) + 1e-300)
    ref = level[:lead]
    thr = ref.mean() + max(float(vad_margin_db), 3.0 * float(ref.std()))
    quiet = level <= thr
    quiet[:lead] = True
    return quiet


def channel_thresholds(decision: np.ndarray, frames: np.ndarray, target_fa: float = 0.05) -> np.ndarray:
    """Per-channel thresholds giving ``target_fa`` labelled-1 share on the selected frames.

    With n selected frames and ``k = floor(target_fa * n)``, the threshold of a channel is its
    (k+1)-th largest decision value there, so exactly k of them (barring ties) lie above it.

    Returns
    -------
    ndarray, shape (C,)
    """
    d = np.asarray(decision, dtype=np.float64)
    sel = d[:, np.asarray(frames, dtype=bool)]
    n = sel.shape[1]
    if n == 0:
        raise InputError("no noise-only frames to adapt the thresholds on")
    k = int(np.floor(target_fa * n + 1e-9))
    k = min(k, n - 1)
    # (k+1)-th largest == (n-1-k)-th smallest
    return np.partition(sel, n - 1 - k, axis=1)[:, n - 1 - k]


def rethreshold(decision: np.ndarray, mixture_energy: np.ndarray, target_fa: float = 0.05,
                n_lead: int = 10, *, vad_margin_db: float = 1.0) -> np.ndarray:
    """Binary mask from SVM decision values with per-channel thresholds adapted on noise frames.

    Parameters
    ----------
    decision : ndarray, shape (C, M)
        G-SVM decision values of the test mixture (positive = target-dominated).
    mixture_energy : ndarray, shape (C, M)
        Cochleagram energies of the test mixture (for the energy VAD).
    target_fa : float
        False-alarm rate wanted on noise-only frames, in [0, 1).
    n_lead : int
        Number of leading frames assumed noise-only.
    vad_margin_db : float
        See :func:`noise_frames`.

    Returns
    -------
    ndarray of int8, shape (C, M)
        1 where ``decision > threshold`` of the unit's channel.
    """
    d, e = _check_pair(decision, mixture_energy)
    if not (0.0 <= float(target_fa) < 1.0):
        raise InputError(f"target_fa must lie in [0, 1), got {target_fa!r}")
    frames = noise_frames(e, n_lead, vad_margin_db)
    thr = channel_thresholds(d, frames, target_fa)
    return (d > thr[:, None]).astype(np.int8)
