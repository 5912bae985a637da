"""The embedded demo: everything it needs is generated here (no corpus required)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import SAMPLE_RATE


def synthetic_voiced_speech(seconds: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A speech-like test signal: harmonic source with a gliding f0, syllable-rate on/off
    envelope and two moving formant resonances.  Deterministic under ``rng``."""
    from scipy.signal import lfilter

    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.cos(k * phase) / k for k in range(1, 40))
    # syllables: ~4 Hz raised-cosine bursts with gaps
    env = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 0.7
    y = src * env
    for fc, bw in ((500.0, 120.0), (1500.0, 200.0), (2500.0, 300.0)):
        r = np.exp(-np.pi * bw / sr)
        th = 2 * np.pi * fc / sr
        y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y) + 0.3 * y
    return y / np.max(np.abs(y))


def run_frontend_demo(out: str | Path, seed: int = 0):
    """Front end on a generated signal; yields progress lines."""
    from .audio import mix_at_snr, save, snr_db
    from .gammatone import cochleagram, erb_space, filterbank, resynthesize
    from .masks import ibm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    speech = synthetic_voiced_speech(3.0, rng)
    noise = rng.standard_normal(5 * SAMPLE_RATE)
    mx = mix_at_snr(speech, noise, -5.0, rng)
    cfs = erb_space()
    e_mix = cochleagram(filterbank(mx.mixture, cfs=cfs))
    mask = ibm(cochleagram(filterbank(mx.speech, cfs=cfs)), cochleagram(filterbank(mx.noise, cfs=cfs)))
    ref = resynthesize(mx.speech, np.ones_like(mask, dtype=float), cfs=cfs)
    sep = resynthesize(mx.mixture, mask, cfs=cfs)
    unproc = resynthesize(mx.mixture, np.ones_like(mask, dtype=float), cfs=cfs)
    np.save(out / "cochleagram.npy", e_mix)
    save(out / "mixture.wav", mx.mixture)
    save(out / "ibm_separated.wav", sep)
    yield f"mixture at -5 dB: {out / 'mixture.wav'}"
    yield f"IBM resynthesis SNR {snr_db(ref, sep):.1f} dB vs mixture {snr_db(ref, unproc):.1f} dB: {out / 'ibm_separated.wav'}"
    try:
        from .plots import save_masks_png

        save_masks_png(out / "cochleagram.png", {"IBM (LC = -10 dB)": mask}, title="front end on a generated signal")
        from .plots import save_cochleagram_png

        save_cochleagram_png(out / "cochleagram_mixture.png", e_mix, title="Cochleagram of the mixture (dB)")
    except Exception as exc:  # matplotlib missing: the rest of the demo stands
        yield f"skipped figures: {exc}"
        return
    yield f"figures: {out / 'cochleagram.png'}, {out / 'cochleagram_mixture.png'}"
