"""The ideal binary mask, ratio masks from posteriors, and the scores of an estimated mask."""
from __future__ import annotations

import numpy as np

from .errors import InputError

LC_DB = -10.0
RATIO_FLOOR_DB = -15.0  # g_min of :func:`ratio`, dB of amplitude gain
RATIO_BETA = 0.5  # exponent of the posterior in :func:`ratio`
# Chosen on the corpus's `tune` split (the 10 real tune utterances x the 5 training noises x
# -5/0/+5 dB, model trained without them): STOI gain over the mixture +0.0426 for (-15 dB, 0.5)
# against +0.0403 for (-15 dB, 1.0) and -0.0138 for the binary mask; floors -10..-30 dB at
# beta 0.5 lie within 0.0015 of each other (docs/QUALITY.md).


def ibm(speech_energy: np.ndarray, noise_energy: np.ndarray, lc_db: float = LC_DB) -> np.ndarray:
    """Ideal binary mask from premixed speech and noise cochleagrams.

    ``IBM[c, m] = 1`` where ``10 log10(E_s / E_n) > LC``, else 0.  Units where both energies
    are zero are 0; units with zero noise and non-zero speech are 1.

    Parameters
    ----------
    speech_energy, noise_energy : ndarray, shape (C, M)
        Cochleagram energies of the premixed speech and noise.
    lc_db : float
        Local criterion in dB (paper: -10 dB at -5 dB input SNR).

    Returns
    -------
    mask : ndarray, shape (C, M), uint8 in {0, 1}
    """
    es = np.asarray(speech_energy, dtype=np.float64)
    en = np.asarray(noise_energy, dtype=np.float64)
    if es.shape != en.shape:
        raise InputError(f"speech and noise cochleagrams differ in shape: {es.shape} vs {en.shape}")
    # E_s / E_n > 10^(LC/10)  <=>  E_s > E_n 10^(LC/10)   (no division, no log of zero)
    return (es > en * 10.0 ** (lc_db / 10.0)).astype(np.uint8)


def ratio(posterior: np.ndarray, floor_db: float = RATIO_FLOOR_DB, beta: float = RATIO_BETA) -> np.ndarray:
    """Ratio (soft) mask from per-unit speech posteriors: ``max(p ** beta, g_min)``.

    ``g_min = 10 ** (floor_db / 20)`` is an amplitude gain (the resynthesis weights each unit's
    filtered mixture by the mask), so -15 dB keeps 0.178 of a unit the model calls noise.  A
    floor keeps the residual noise natural and bounds what a wrong "noise" decision throws away;
    ``beta`` > 1 sharpens the mask towards the binary one, < 1 softens it (REFERENCE section 11).

    Parameters
    ----------
    posterior : ndarray, shape (C, M)
        P(unit is target-dominant) in [0, 1] (e.g. :meth:`fastifkl.separator.Separator.posterior`).
    floor_db : float
        Floor in dB of amplitude gain, <= 0 (``-inf``: no floor).
    beta : float
        Positive exponent.

    Returns
    -------
    mask : ndarray, shape (C, M), float64 in [g_min, 1]
    """
    p = np.asarray(posterior, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise InputError("posteriors must be finite and lie in [0, 1]")
    if not (np.isfinite(beta) and beta > 0):
        raise InputError(f"beta must be a positive number, got {beta!r}")
    if np.isnan(floor_db) or floor_db > 0:
        raise InputError(f"floor_db must be <= 0 dB, got {floor_db!r}")
    g_min = 10.0 ** (floor_db / 20.0)
    return np.maximum(p if beta == 1 else p ** beta, g_min)


def scores(estimated: np.ndarray, ibm_mask: np.ndarray) -> dict:
    """HIT, FA, HIT-FA and accuracy of an estimated binary mask.

    HIT = share of target-dominant units (IBM = 1) labelled 1; FA = share of
    interference-dominant units (IBM = 0) labelled 1; accuracy = share of units where the
    estimate equals the IBM.  A rate whose denominator is empty is reported as NaN.

    Parameters
    ----------
    estimated, ibm_mask : ndarray, shape (C, M)
        Binary masks (any values; non-zero counts as 1).

    Returns
    -------
    dict with keys ``hit, fa, hit_fa, accuracy`` (floats) and the counts ``n_target, n_noise``.
    """
    est = np.asarray(estimated) != 0
    ref = np.asarray(ibm_mask) != 0
    if est.shape != ref.shape:
        raise InputError(f"mask shapes differ: estimated {est.shape} vs IBM {ref.shape}")
    return _scores_from_counts(*confusion(est, ref))


def confusion(estimated: np.ndarray, ibm_mask: np.ndarray) -> tuple[int, int, int, int]:
    """Counts ``(hits, n_target, false_alarms, n_noise)`` for pooling scores over utterances."""
    est = np.asarray(estimated) != 0
    ref = np.asarray(ibm_mask) != 0
    n_t = int(ref.sum())
    n_n = int(ref.size - n_t)
    hits = int(np.count_nonzero(est & ref))
    fas = int(np.count_nonzero(est & ~ref))
    return hits, n_t, fas, n_n


def _scores_from_counts(hits: int, n_t: int, fas: int, n_n: int) -> dict:
    hit = hits / n_t if n_t else float("nan")
    fa = fas / n_n if n_n else float("nan")
    total = n_t + n_n
    acc = (hits + (n_n - fas)) / total if total else float("nan")
    return {
        "hit": float(hit),
        "fa": float(fa),
        "hit_fa": float(hit - fa),
        "accuracy": float(acc),
        "n_target": n_t,
        "n_noise": n_n,
    }


def pooled_scores(counts) -> dict:
    """Scores of several masks pooled by summing their :func:`confusion` counts."""
    tot = np.zeros(4, dtype=np.int64)
    for c in counts:
        tot += np.asarray(c, dtype=np.int64)
    return _scores_from_counts(*[int(v) for v in tot])
