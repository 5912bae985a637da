"""From a mixture set to per-channel training units (the data side of ``Separator.fit``).

One job per mixture: the mixture is rebuilt bit-for-bit from its manifest entry
(:func:`mixture_from_job`), its pitch is tracked on the signal of the pitch setting
(:func:`pitch_source`: the premixed speech for "true", the mixture for "estimated"), and its unit
features (M, C, D) and IBM (C, M) are computed (:func:`analyse`).  :func:`prepare` keeps a
class-balanced sample of units per channel from every mixture, the per-channel normalisation
statistics and the IBM class counts: a :class:`TrainingData` from which G-SVM and KL-SVM can
both be fitted.  :func:`kernel_problem` turns one channel's kernel-learning units into the
normalised points and cross-domain constraints of kernel ITML.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import FMAX, FMIN, N_CHANNELS, SAMPLE_RATE
from .errors import InputError
from .level import analysis_gain

PITCH_SETTINGS = ("true", "estimated")
PITCH_METHODS = ("learned", "correlogram")
LEGACY_PITCH_METHOD = "correlogram"
"""The tracker of model files that do not record one (trained before issue 19)."""

# ---------------------------------------------------------------------------------------------
# Front end of one signal


def cfs_for(n_channels: int = N_CHANNELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Centre frequencies (Hz) of the separator's gammatone filterbank: (n_channels,)."""
    from .gammatone import erb_space

    return erb_space(fmin, fmax, n_channels)


def unit_features(x: np.ndarray, cfs: np.ndarray, f0: np.ndarray, spec=None) -> np.ndarray:
    """Features of every T-F unit of ``x``: (M, C, D)."""
    from . import features
    from .gammatone import filterbank

    return features.extract(filterbank(x, SAMPLE_RATE, cfs), f0, SAMPLE_RATE, spec)


def ideal_mask(speech: np.ndarray, noise: np.ndarray, cfs: np.ndarray, lc_db: float) -> np.ndarray:
    """IBM (C, M) from the premixed signals."""
    from .gammatone import cochleagram, filterbank
    from .masks import ibm

    return ibm(cochleagram(filterbank(speech, SAMPLE_RATE, cfs)), cochleagram(filterbank(noise, SAMPLE_RATE, cfs)),
               lc_db)


def default_pitch_method() -> str:
    """The tracker new models are trained with: :data:`fastifkl.pitch.DEFAULT_METHOD`."""
    from .pitch import DEFAULT_METHOD

    return DEFAULT_METHOD


def check_pitch_method(method: str) -> str:
    """``method`` if it names a tracker of :func:`fastifkl.pitch.track`, else a one-line InputError."""
    if method not in PITCH_METHODS:
        raise InputError(f"pitch_method must be one of {', '.join(PITCH_METHODS)}, got {method!r}")
    return method


def track_pitch(x: np.ndarray, method: str | None = None) -> np.ndarray:
    """f0 (M,) of ``x`` in Hz (0 = unvoiced), :func:`fastifkl.pitch.track` at 16 kHz with the
    tracker ``method`` (default :func:`default_pitch_method`)."""
    from .pitch import track

    return track(x, SAMPLE_RATE, method=default_pitch_method() if method is None else check_pitch_method(method))


# ---------------------------------------------------------------------------------------------
# One mixture of a set, in a worker process


def mixture_job(mixset, entry, **fields) -> dict:
    """A picklable job for one mixture of ``mixset``: its set directory and entry, plus ``fields``."""
    return {"set_dir": str(mixset.directory), "entry": entry.__dict__, **fields}


def mixture_from_job(job: dict):
    """Rebuild the mixture of a :func:`mixture_job` bit-for-bit.

    Returns
    -------
    (corpus.Entry, audio.Mixture)
    """
    from .corpus import Entry, MixtureSet

    entry = Entry(**job["entry"])
    return entry, MixtureSet(job["set_dir"], [entry]).mixture(entry)


def pitch_source(mx, pitch: str) -> np.ndarray:
    """The signal the pitch of a setting is tracked on: the premixed speech ("true") or the
    mixture ("estimated")."""
    if pitch not in PITCH_SETTINGS:
        raise InputError(f"pitch must be 'true' or 'estimated', got {pitch!r}")
    return mx.speech if pitch == "true" else mx.mixture


def analyse(mx, cfs: np.ndarray, pitch: str, lc_db: float,
            level_rms: float | None = None, pitch_method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit features (M, C, D) of a mixture with the pitch of the setting, and its IBM (C, M).

    The pitch is tracked with ``pitch_method`` (default :func:`default_pitch_method`) on the
    signal of the setting (:func:`pitch_source`): "true" pitch is the same tracker run on the
    premixed speech.

    With ``level_rms`` the features (and the pitch) are computed on the mixture scaled to that
    RMS (:func:`fastifkl.level.analysis_gain` of the mixture; the premixed speech of "true" pitch
    gets the same gain), as :class:`~fastifkl.separator.Separator` does with its inputs; None
    analyses the signals as they are (models from before format 2).  The IBM is a ratio and does
    not depend on the level.
    """
    g = analysis_gain(mx.mixture, level_rms)
    X = unit_features(g * mx.mixture, cfs, track_pitch(g * pitch_source(mx, pitch), pitch_method))
    return X, ideal_mask(mx.speech, mx.noise, cfs, lc_db)




# ---------------------------------------------------------------------------------------------
# Training data


@dataclass
class ChannelUnits:
    """Raw (unnormalised) feature vectors of sampled units of one channel."""

    X: np.ndarray  # (n, D)
    y: np.ndarray  # (n,) IBM labels
    domain: np.ndarray  # (n,) int index into TrainingData.domains


@dataclass
class TrainingData:
    """Sampled units per channel plus the per-channel normalisation statistics."""

    cfs: np.ndarray
    domains: list[str]
    kernel_units: list[ChannelUnits]
    svm_units: list[ChannelUnits]
    mean: np.ndarray  # (C, D)
    std: np.ndarray  # (C, D)
    n_frames: int
    digest: str
    pitch: str
    info: dict = field(default_factory=dict)
    # (C, 2) IBM counts (label 0, label 1) per channel over all frames of the SVM-training
    # mixtures: the class prior the SVM training sample can be drawn with (``svm_prior``)
    class_counts: np.ndarray | None = None
    # per channel: units of the SVM-training mixtures drawn uniformly over frames (the natural
    # class prior) from the frames NOT in the SVM candidate pool, so never in the SVM's training
    # sample: Platt calibration (``calib_per_mixture`` per mixture; empty when 0)
    calib_units: list[ChannelUnits] | None = None
    # the RMS the mixtures were scaled to before analysis (None: analysed as they were)
    level_rms: float | None = None
    # the pitch tracker of the features (``fastifkl.pitch.track``'s method)
    pitch_method: str = "learned"


def _mixture_units(job: dict) -> dict:
    """Analyse one mixture of a set: feature moments, IBM counts, a class-balanced sample per channel."""
    from .features import moments

    _, mx = mixture_from_job(job)
    X, ibm = analyse(mx, np.asarray(job["cfs"]), job["pitch"], job["lc_db"], job.get("level_rms"),
                     job.get("pitch_method"))
    rng = np.random.default_rng(job["seed"])
    # calibration frames come from their own stream: the pool is the same with or without them
    rng_cal = np.random.default_rng([*job["seed"], 1])
    n_cal = job.get("calib", 0) if job["role"] == "svm" else 0
    cap = job["cap"]
    picks, calib = [], []
    if cap is None and job["role"] == "svm":
        return {"stats": moments(X), **_all_units(X, ibm, n_cal, rng_cal), "role": job["role"],
                "domain": job["domain"], "counts": _counts(ibm)}
    if cap is None:  # kernel-learning mixtures keep their class-balanced pool (ITML draws ~100 per noise)
        cap = KERNEL_POOL_CAP
    for c in range(X.shape[1]):
        y = ibm[c]
        sel = []
        for lab in (0, 1):
            idx = np.flatnonzero(y == lab)
            if idx.size > cap:
                idx = np.sort(rng.choice(idx, cap, replace=False))
            sel.append(idx)
        sel = np.concatenate(sel)
        picks.append((X[sel, c, :].copy(), y[sel].astype(np.int8)))
        if n_cal:
            free = np.setdiff1d(np.arange(y.size), sel, assume_unique=False)
            cal = np.sort(rng_cal.choice(free, min(n_cal, free.size), replace=False))
            calib.append((X[cal, c, :].astype(np.float32), y[cal].astype(np.int8)))
    return {"stats": moments(X), "picks": picks, "calib": calib, "role": job["role"], "domain": job["domain"],
            "counts": _counts(ibm)}


KERNEL_POOL_CAP = 40
"""Units per class, channel and kernel-learning mixture kept when ``units_per_mixture`` is None
(every unit is for the SVMs; kernel learning samples ``per_domain`` units per noise from this pool)."""


def _counts(ibm: np.ndarray) -> np.ndarray:
    """IBM counts (C, 2): label 0, label 1 per channel."""
    n1 = ibm.astype(np.int64).sum(axis=1)
    return np.stack([ibm.shape[1] - n1, n1], axis=1)


def _all_units(X: np.ndarray, ibm: np.ndarray, n_cal: int, rng_cal: np.random.Generator) -> dict:
    """Every frame of an SVM-training mixture per channel (float32; paper scale), except
    ``n_cal`` calibration frames per channel drawn first, uniformly over all frames."""
    picks, calib = [], []
    M = ibm.shape[1]
    for c in range(X.shape[1]):
        cal = np.sort(rng_cal.choice(M, min(n_cal, M), replace=False)) if n_cal else np.zeros(0, np.int64)
        rest = np.setdiff1d(np.arange(M), cal, assume_unique=True)
        picks.append((X[rest, c, :].astype(np.float32), ibm[c, rest].astype(np.int8)))
        if n_cal:
            calib.append((X[cal, c, :].astype(np.float32), ibm[c, cal].astype(np.int8)))
    return {"picks": picks, "calib": calib}


def _stack(pool: list) -> ChannelUnits:
    if not pool:
        return ChannelUnits(np.zeros((0, 0)), np.zeros(0, np.int8), np.zeros(0, np.int16))
    if len(pool) == 1:
        return ChannelUnits(*pool[0])
    return ChannelUnits(np.concatenate([a for a, _, _ in pool]), np.concatenate([b for _, b, _ in pool]),
                        np.concatenate([d for _, _, d in pool]))


def _svm_rows(mixset, jobs: list, n_cal: int) -> int:
    """Units per channel of the SVM-training mixtures at paper scale: every frame but the
    calibration ones (frame counts from the utterances' lengths, as the mixtures have them)."""
    from .audio import load
    from .framing import n_frames

    lengths: dict[str, int] = {}
    total = 0
    for j in jobs:
        if j["role"] != "svm":
            continue
        sp = j["entry"]["speech"]
        if sp not in lengths:
            lengths[sp] = n_frames(load(mixset.resolve(sp)).size)
        total += lengths[sp] - min(n_cal, lengths[sp])
    return total


class _UnitBuffer:
    """Per-channel preallocated unit arrays, filled mixture by mixture (float32 features)."""

    def __init__(self, n_ch: int, rows: int):
        self.rows = rows
        self.pos = np.zeros(n_ch, dtype=np.int64)
        self.X: list = [None] * n_ch
        self.y = [np.empty(rows, np.int8) for _ in range(n_ch)]
        self.d = [np.empty(rows, np.int16) for _ in range(n_ch)]

    def add(self, c: int, X: np.ndarray, y: np.ndarray, domain: int) -> None:
        if self.X[c] is None:
            self.X[c] = np.empty((self.rows, X.shape[1]), np.float32)
        a, b = int(self.pos[c]), int(self.pos[c]) + y.size
        if b > self.rows:
            raise InputError(f"the mixtures hold more frames than their utterances ({b} > {self.rows} in channel {c})")
        self.X[c][a:b] = X
        self.y[c][a:b] = y
        self.d[c][a:b] = domain
        self.pos[c] = b

    def finish(self) -> list[ChannelUnits]:
        if np.any(self.pos != self.rows):
            raise InputError(f"the mixtures hold fewer frames than their utterances ({self.pos.min()} < {self.rows})")
        return [ChannelUnits(X if X is not None else np.zeros((0, 0), np.float32), y, d)
                for X, y, d in zip(self.X, self.y, self.d)]


def _stack_all(pools: list) -> list[ChannelUnits]:
    """``_stack`` each channel's pool, releasing the pieces as it goes (peak memory: the units
    plus one channel, not twice the units)."""
    out = []
    for c in range(len(pools)):
        out.append(_stack(pools[c]))
        pools[c] = None
    return out


def prepare(
    mixset,
    kernel_ids: set[str] | None,
    *,
    pitch: str = "estimated",
    lc_db: float = -10.0,
    cfs: np.ndarray | None = None,
    units_per_mixture: int | None = 40,
    seed: int = 0,
    level_rms: float | None = None,
    calib_per_mixture: int = 0,
    pitch_method: str | None = None,
    executor=None,
    progress=None,
) -> TrainingData:
    """Analyse every mixture of ``mixset`` once and keep what training needs.

    Parameters
    ----------
    mixset : corpus.MixtureSet
    kernel_ids : set of mixture ids used for kernel learning (the rest train the SVMs); None
        means the set's ``kernel`` split if present, else a seeded fifth of the utterances.
    units_per_mixture : int or None
        Units per class and channel kept from each mixture (a class-balanced pool from which
        the per-channel caps are drawn later); None: every frame of each SVM-training mixture
        (float32, outside its calibration units; paper scale) and :data:`KERNEL_POOL_CAP` per
        class from each kernel-learning mixture.
    level_rms : float or None
        Analyse each mixture scaled to this RMS (see :func:`analyse`); None: as it is.
    calib_per_mixture : int
        Calibration units per channel drawn from each SVM-training mixture, uniformly over its
        frames outside the candidate pool (so never in an SVM's training sample; natural class
        prior): ``TrainingData.calib_units``, on which each channel's Platt sigmoid is fitted.
    pitch_method : {"learned", "correlogram"}, optional
        The pitch tracker (default :func:`default_pitch_method`), for both pitch settings.
    executor : parallel executor, optional (default: a serial one)
    progress : callable(), optional; called once per analysed mixture.
    """
    from .features import Normalizer
    from .parallel import executor as make_executor

    if pitch not in PITCH_SETTINGS:
        raise InputError(f"pitch must be 'true' or 'estimated', got {pitch!r}")
    pitch_method = default_pitch_method() if pitch_method is None else check_pitch_method(pitch_method)
    cfs = cfs_for() if cfs is None else np.asarray(cfs, dtype=np.float64)
    entries = list(mixset.entries)
    if kernel_ids is None:
        kernel_ids = default_kernel_ids(entries, seed)
    domains = sorted({e.domain for e in entries})
    jobs = [mixture_job(mixset, e, cfs=cfs.tolist(), pitch=pitch, lc_db=lc_db, cap=units_per_mixture, seed=[seed, k],
                        role="kernel" if e.id in kernel_ids else "svm", domain=domains.index(e.domain),
                        level_rms=level_rms, calib=int(calib_per_mixture), pitch_method=pitch_method)
            for k, e in enumerate(entries)]
    n_ch = len(cfs)
    pools = {"kernel": [[] for _ in range(n_ch)], "svm": [[] for _ in range(n_ch)],
             "calib": [[] for _ in range(n_ch)]}
    # paper scale: every unit goes straight into preallocated per-channel arrays (the pieces of
    # each mixture are freed as they are copied; concatenating them would hold the units twice)
    buf = _UnitBuffer(n_ch, _svm_rows(mixset, jobs, calib_per_mixture)) if units_per_mixture is None else None
    norm = Normalizer()
    counts = np.zeros((n_ch, 2), dtype=np.int64)
    ex = make_executor() if executor is None else executor
    try:
        for res in ex.imap(_mixture_units, jobs):
            norm.partial_fit_moments(*res["stats"])
            if res["role"] == "svm":
                counts += res["counts"]
            for c, (Xc, yc) in enumerate(res["picks"]):
                if buf is not None and res["role"] == "svm":
                    buf.add(c, Xc, yc, res["domain"])
                else:
                    pools[res["role"]][c].append((Xc, yc, np.full(yc.size, res["domain"], dtype=np.int16)))
            for c, (Xc, yc) in enumerate(res["calib"]):
                pools["calib"][c].append((Xc, yc, np.full(yc.size, res["domain"], dtype=np.int16)))
            res = Xc = yc = None  # the mixture's pieces go now (their units are in the buffer)
            if progress is not None:
                progress()
    finally:
        if executor is None:
            ex.close()
    n_kernel = sum(1 for j in jobs if j["role"] == "kernel")
    return TrainingData(
        cfs=cfs,
        domains=domains,
        kernel_units=_stack_all(pools["kernel"]),
        svm_units=_stack_all(pools["svm"]) if buf is None else buf.finish(),
        mean=norm.mean_,
        std=norm.std_,
        n_frames=int(norm.n_),
        digest=mixset.digest(),
        pitch=pitch,
        info={"mixtures": len(jobs), "kernel_mixtures": n_kernel, "svm_mixtures": len(jobs) - n_kernel},
        class_counts=counts,
        calib_units=_stack_all(pools["calib"]) if calib_per_mixture else None,
        level_rms=level_rms,
        pitch_method=pitch_method,
    )


def default_kernel_ids(entries, seed: int) -> set[str]:
    """The ``kernel`` split when the set has one, else a seeded fifth of the utterances."""
    ids = {e.id for e in entries if e.split == "kernel"}
    if ids:
        return ids
    utts = sorted({e.speech for e in entries})
    if len(utts) < 2:
        raise InputError("the mixture set needs at least 2 utterances (kernel learning and SVM training use different "
                         "ones)")
    rng = np.random.default_rng(seed)
    k = max(1, len(utts) // 5)
    chosen = set(rng.choice(utts, k, replace=False).tolist())
    return {e.id for e in entries if e.speech in chosen}


TEST_SPLITS = ("test", "test_real")
"""Splits never trained on unless asked for by name (the protocol's held-out talkers)."""


def training_sets(mixset, splits: list[str] | None = None, *, tune: bool = False, tune_split: str = "tune"):
    """The training mixtures of a set and, with ``tune``, its tuning mixtures.

    Training uses the mixtures of ``splits`` (default: every split but ``tune_split``, which is
    held out for tuning, and the test splits ``TEST_SPLITS``, which are only used when named in
    ``splits``); tuning uses the ``tune_split`` mixtures.

    Returns
    -------
    (train_set, tune_set or None) : corpus.MixtureSet
    """
    if tune and tune_split not in mixset.splits:
        raise InputError(f"{mixset.directory}: tuning needs mixtures with split '{tune_split}' in the set")
    if not splits:
        splits = [s for s in mixset.splits if s != tune_split and s not in TEST_SPLITS]
        if not splits:
            held = sorted(set(mixset.splits) & {tune_split, *TEST_SPLITS})
            raise InputError(f"{mixset.directory}: no mixtures left for training (held out by default: "
                             f"{', '.join(held)}; name a split with --split to train on it)")
    train = mixset.select(splits=splits)
    if len(train) == 0:
        raise InputError(f"{mixset.directory}: no mixtures left for training")
    return train, (mixset.select(splits=[tune_split]) if tune else None)


# ---------------------------------------------------------------------------------------------
# One channel's kernel-learning problem


def kernel_problem(ku: ChannelUnits, mean: np.ndarray, std: np.ndarray, per_domain: int,
                   rng: np.random.Generator, info: dict | None = None) -> tuple[np.ndarray, tuple]:
    """The kernel-learning problem of one channel: normalised points and their cross-domain
    constraints.

    A noise that never lets speech dominate in the channel (e.g. a low hum in the lowest
    channels) gives a one-class domain: it cannot pair similar/dissimilar, so it is left out.

    ``info["domains_used"]`` (if ``info`` is given) is set to the number of domains with both
    classes before the constraints are drawn, so it is kept when that raises InputError.

    Returns
    -------
    X : ndarray, shape (n, D), the constrained units normalised by ``mean``/``std``
    constraints : (i, j, similar) into ``X`` (see :func:`fastifkl.constraints.cross_domain_constraints`)
    """
    from .constraints import cross_domain_constraints

    both = [d for d in np.unique(ku.domain) if np.unique(ku.y[ku.domain == d]).size == 2]
    keep = np.isin(ku.domain, both)
    if info is not None:
        info["domains_used"] = int(len(both))
    pts, cons = cross_domain_constraints(ku.y[keep], ku.domain[keep], per_domain, rng)
    pts = np.flatnonzero(keep)[pts]
    return (ku.X[pts] - mean) / std, cons
