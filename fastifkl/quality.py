"""Listener-quality measures of a separated signal against the clean utterance (REFERENCE 13).

Pure NumPy pieces of the quality benchmark (``bench/quality.py``), public so that tuning code
can use the same definitions:

- :func:`estimate_delay` / :func:`compensate_delay`: the output's delay is the lag within
  +-100 ms that maximises its cross-correlation with the *mixture*; the output is shifted back
  by it (zero-filled) before any score.
- :func:`snr_db` (plain: no gain is fitted, so a quieter or louder output is penalised; an
  all-zero output scores exactly 0 dB, i.e. an SNR *gain* of minus the input SNR, which is why
  SNR gain rewards silence and must be read next to STOI) and :func:`si_snr_db`
  (scale-invariant SNR, Le Roux et al. 2019: the output is projected on the clean utterance
  with the least-squares gain; the unprocessed mixture scores its input SNR).
- :func:`listener_scores`: STOI, extended STOI (``pystoi``, imported lazily: it is in the
  ``stoi``/``test``/``bench`` extras), SNR and SI-SNR of one output.
- :func:`cell_means` and :func:`summarize`: per-cell (noise x SNR) means and the acceptance
  quantities (mean gains over the mixture per SNR, cells in which a system's mean STOI beats
  the mixture's).

All signals are 1-D float arrays at 16 kHz; delays are in samples (positive = the output lags).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import SAMPLE_RATE
from .audio import snr_db
from .errors import InputError

__all__ = [
    "estimate_delay", "shift", "compensate_delay", "snr_db", "si_snr_db", "listener_scores",
    "cell_means", "summarize", "MEASURES", "REFERENCE_SYSTEM",
]

MEASURES = ("stoi", "estoi", "snr_db", "si_snr_db")
REFERENCE_SYSTEM = "mixture"


def _vec(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{what} must be a non-empty 1-D signal, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or infinite samples")
    return a


def estimate_delay(output: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """Lag ``d`` (samples, ``|d| <= max_lag``) maximising ``sum_n output[n + d] * reference[n]``.

    ``output[n] = reference[n - d]`` gives ``d``: a positive lag means the output is late.
    Samples outside either signal count as zeros.  Ties go to the smallest lag; an all-zero
    output has lag 0.

    Parameters
    ----------
    output : ndarray, shape (N_out,)
    reference : ndarray, shape (N_ref,)
        The mixture the output was computed from.
    max_lag : int
        Largest lag searched, in samples (``0.1 * sr`` for the bench's +-100 ms).

    Returns
    -------
    int
    """
    from scipy.signal import correlate, correlation_lags

    y = _vec(output, "output")
    x = _vec(reference, "reference")
    if max_lag < 0:
        raise InputError(f"max_lag must be >= 0, got {max_lag}")
    if not np.any(y) or not np.any(x):
        return 0
    c = correlate(y, x, mode="full", method="fft")
    lags = correlation_lags(y.size, x.size, mode="full")
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(c[keep])])


def shift(output: np.ndarray, delay: int, n: int) -> np.ndarray:
    """``out[k] = output[k + delay]`` for ``k < n``, zero where that index is outside ``output``."""
    y = np.asarray(output, dtype=np.float64)
    out = np.zeros(int(n))
    lo = max(0, -delay)  # first k with k + delay >= 0
    hi = min(int(n), y.size - delay)  # first k with k + delay >= y.size
    if hi > lo:
        out[lo:hi] = y[lo + delay: hi + delay]
    return out


def compensate_delay(output: np.ndarray, mixture: np.ndarray, sr: int = SAMPLE_RATE,
                     max_ms: float = 100.0) -> tuple[np.ndarray, int]:
    """The output realigned with the mixture and cut to its length.

    Returns
    -------
    aligned : ndarray, shape (len(mixture),)
    delay : int
        Samples the output lagged the mixture by (see :func:`estimate_delay`).
    """
    d = estimate_delay(output, mixture, int(round(max_ms * 1e-3 * sr)))
    return shift(output, d, np.asarray(mixture).size), d


def si_snr_db(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SNR in dB: ``10 log10(|a s|^2 / |e - a s|^2)``, ``a = <e, s> / <s, s>``.

    The estimate is explained by the best-scaled clean utterance; what is left is error.  A
    mixture ``s + v`` with ``v`` orthogonal to ``s`` scores its input SNR.  ``-inf`` for an
    estimate orthogonal to ``s`` (including all zeros), ``+inf`` for a scaled copy of ``s``.
    """
    s = _vec(clean, "clean")
    e = _vec(estimate, "estimate")
    if s.size != e.size:
        raise InputError(f"clean and estimate differ in length: {s.size} vs {e.size}")
    ss = float(np.dot(s, s))
    if ss <= 0:
        raise InputError("clean signal is silent; SI-SNR is undefined")
    target = (float(np.dot(e, s)) / ss) * s
    t2 = float(np.dot(target, target))
    r2 = float(np.sum((e - target) ** 2))
    if t2 == 0:
        return float("-inf")
    if r2 == 0:
        return float("inf")
    return float(10.0 * np.log10(t2 / r2))


def listener_scores(clean: np.ndarray, estimate: np.ndarray, sr: int = SAMPLE_RATE) -> dict:
    """STOI, extended STOI, SNR and SI-SNR (dB) of an (already aligned) estimate.

    Parameters
    ----------
    clean, estimate : ndarray, shape (N,)

    Returns
    -------
    dict with keys ``stoi``, ``estoi``, ``snr_db``, ``si_snr_db``
    """
    from pystoi import stoi

    s = _vec(clean, "clean")
    e = _vec(estimate, "estimate")
    if s.size != e.size:
        raise InputError(f"clean and estimate differ in length: {s.size} vs {e.size}")
    return {
        "stoi": float(stoi(s, e, sr, extended=False)),
        "estoi": float(stoi(s, e, sr, extended=True)),
        "snr_db": snr_db(s, e),
        "si_snr_db": si_snr_db(s, e),
    }


def cell_means(records: list[dict]) -> list[dict]:
    """Mean of every measure per (system, noise, SNR) cell.

    Parameters
    ----------
    records : list of dict
        One per (system, mixture): ``system``, ``noise``, ``snr`` (input SNR, dB), ``utt`` and
        the :data:`MEASURES`.

    Returns
    -------
    list of dict
        ``system, noise, snr, n`` and the mean of each measure, in first-seen order.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["system"], r["noise"], float(r["snr"]))].append(r)
    out = []
    for (system, noise, snr), rs in groups.items():
        row = {"system": system, "noise": noise, "snr": snr, "n": len(rs)}
        for m in MEASURES:
            row[m] = float(np.mean([r[m] for r in rs]))
        out.append(row)
    return out


def summarize(cells: list[dict], reference: str = REFERENCE_SYSTEM) -> dict:
    """Per-system acceptance quantities from per-cell means (the output of :func:`cell_means`).

    Every cell is weighted equally (cells hold the same utterances, so this equals the mean
    over mixtures).  Gains are the system's cell mean minus the reference system's in the same
    cell; SNR gain and SI-SNR gain are the differences of the dB values.

    Returns
    -------
    dict
        ``{"snrs": [...], "systems": {name: {...}}}`` where each system has, per input SNR
        (keys as in ``snrs``, e.g. ``"-5"``): ``stoi``, ``estoi``, ``stoi_gain``, ``estoi_gain``,
        ``snr_gain``, ``si_snr_gain``; and overall: ``stoi_gain``, ``estoi_gain``, ``snr_gain``,
        ``si_snr_gain``, ``cells_better`` (cells where the mean STOI is strictly above the
        reference's), ``cells`` (number of cells), ``per_noise_stoi_gain`` (mean over SNRs).
    """
    ref = {(c["noise"], c["snr"]): c for c in cells if c["system"] == reference}
    if not ref:
        raise InputError(f"no cells of the reference system '{reference}'")
    snrs = sorted({k[1] for k in ref})
    systems: dict[str, list[dict]] = {}
    for c in cells:
        systems.setdefault(c["system"], []).append(c)
    out = {}
    for name, cs in systems.items():
        missing = [(c["noise"], c["snr"]) for c in cs if (c["noise"], c["snr"]) not in ref]
        if missing:
            raise InputError(f"system '{name}' has cells the reference lacks: {missing[:3]}")
        gains = [{
            "noise": c["noise"], "snr": c["snr"],
            "stoi": c["stoi"] - ref[(c["noise"], c["snr"])]["stoi"],
            "estoi": c["estoi"] - ref[(c["noise"], c["snr"])]["estoi"],
            "snr_gain": c["snr_db"] - ref[(c["noise"], c["snr"])]["snr_db"],
            "si_snr_gain": c["si_snr_db"] - ref[(c["noise"], c["snr"])]["si_snr_db"],
        } for c in cs]
        per_snr = {}
        for snr in snrs:
            sel = [c for c in cs if c["snr"] == snr]
            gsel = [g for g in gains if g["snr"] == snr]
            if not sel:
                continue
            per_snr[_snr_key(snr)] = {
                "stoi": _mean(c["stoi"] for c in sel),
                "estoi": _mean(c["estoi"] for c in sel),
                "stoi_gain": _mean(g["stoi"] for g in gsel),
                "estoi_gain": _mean(g["estoi"] for g in gsel),
                "snr_gain": _mean(g["snr_gain"] for g in gsel),
                "si_snr_gain": _mean(g["si_snr_gain"] for g in gsel),
            }
        noises = list(dict.fromkeys(g["noise"] for g in gains))
        out[name] = {
            "per_snr": per_snr,
            "stoi_gain": _mean(g["stoi"] for g in gains),
            "estoi_gain": _mean(g["estoi"] for g in gains),
            "snr_gain": _mean(g["snr_gain"] for g in gains),
            "si_snr_gain": _mean(g["si_snr_gain"] for g in gains),
            "cells_better": int(sum(g["stoi"] > 0 for g in gains)),
            "cells": len(gains),
            "per_noise_stoi_gain": {n: _mean(g["stoi"] for g in gains if g["noise"] == n) for n in noises},
        }
    return {"snrs": [_snr_key(s) for s in snrs], "systems": out}


def _snr_key(snr: float) -> str:
    return f"{snr:+g}" if snr else "0"


def _mean(values) -> float:
    v = list(values)
    return float(np.mean(v)) if v else float("nan")
