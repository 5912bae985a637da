"""The estimator users hold: :class:`Separator` (paper Section 3.2).

``fit`` analyses a mixture set once (:func:`fastifkl.training.prepare`), optionally chooses
sigma, C and gamma on tuning mixtures (:mod:`fastifkl.tuning`), and trains the 64 channels as
independent jobs (:func:`fastifkl.channel.fit_channel`: kernel ITML, the SVM, and the learned
kernel folded into the SVM).  Prediction evaluates every channel's folded expansion with one
Gaussian-kernel GEMM (:func:`fastifkl.kernels.gaussian_decision`).

Every signal is analysed at a fixed level (:mod:`fastifkl.level`: one scalar gain per file to
``level_rms``), training mixtures and inputs alike, so the mask does not depend on how loud the
recording is.  Each channel's decision values are calibrated into speech posteriors (Platt's
sigmoid, fitted at train time on units the SVM did not train on); the default output is the ratio
mask ``max(p ** mask_beta, 10 ** (mask_floor_db / 20))`` (:func:`fastifkl.masks.ratio`), and
``output="binary"`` gives the paper's binary mask ``p > 0.5`` (the SVM's sign, for HIT-FA).

Model files of format 1 (before calibration and level normalisation) still load: they analyse
the input as it is (no level normalisation) and, having no calibration, map decision values to
posteriors with the fixed sigmoid :data:`FALLBACK_PLATT`.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np

from . import FMAX, FMIN, N_CHANNELS, SAMPLE_RATE, __version__
from .blocks import BLOCK_SECONDS
from .errors import InputError, ModelError
from .level import LEVEL_RMS, analysis_gain
from .masks import RATIO_BETA, RATIO_FLOOR_DB
from .training import LEGACY_PITCH_METHOD, PITCH_METHODS, TrainingData, cfs_for, prepare, track_pitch

OUTPUTS = ("ratio", "binary")

FALLBACK_PLATT = (-1.0, 0.0)
"""(A, B) of the posterior ``1 / (1 + exp(A d + B))`` for model files without calibration
(format 1): one sigmoid for every channel, chosen on the corpus's ``tune`` split (real ``tune``
utterances x the 5 training noises x -5/0/+5 dB) with the pre-format-2 default model by mean
STOI gain of the ratio mask (docs/DEFAULT_MODEL.md)."""


class Separator:
    """Speech separation by per-channel SVMs on a learned (or Gaussian) kernel.

    Parameters
    ----------
    kernel : {"learned", "gaussian"}
        KL-SVM (kernel ITML from cross-domain constraints) or G-SVM.
    C : float
        SVM soft-margin penalty.
    sigma : float or None
        Gaussian width; None = median heuristic per channel times ``sigma_scale``.
    sigma_scale : float
    gamma : float
        ITML slack trade-off.
    per_domain : int
        Units per training noise (domain) and channel for the cross-domain constraints.
    itml_mode : {"lowrank", "exact"}
    itml_order : {"given", "similar_first", "random"}
        Order of the ITML projections (see :func:`fastifkl.itml.learn_kernel`); "random" is a
        permutation seeded by ``seed`` and the channel.
    rank : int or None
        Low-rank ITML rank (None: smallest rank with <= 1 % relative Frobenius truncation error of K0).
    max_sweeps, tol : ITML stopping rule.
    max_train : int or None
        SVM training units per channel (subsample with the class mix of ``svm_prior``); None:
        every unit of the candidate pool (paper scale, with ``solver="liblinear"``).
    units_per_mixture : int or None
        Per class and channel, units kept from each training mixture before subsampling; None:
        every frame of every SVM-training mixture except its calibration units (then the pool
        has the natural class mix).
    solver : {"libsvm", "liblinear"}
        "libsvm": C-SVC on the precomputed Gram matrix of the (capped) sample, the paper's;
        "liblinear": a linear SVM (LIBLINEAR ``-s 2``, balanced class weights) on a Nystroem map
        of the units with ``n_landmarks`` landmarks (:mod:`fastifkl.kernel_map`), folded into the
        same kernel expansion (REFERENCE 15).
    n_landmarks : int
        Landmarks of the map (liblinear only; the learned kernel uses its kernel-learning points
        plus uniform training units up to this number).
    landmark_method : {"uniform", "kmeans"}
        Landmarks of the Gaussian map: a seeded uniform sample of the training units, or k-means
        centres.
    lc_db : float
        Local criterion of the IBM (dB).
    pitch : {"estimated", "true"}
        Pitch for the training features: tracked on the mixture, or on the premixed speech.
    n_channels, fmin, fmax : the gammatone filterbank.
    seed : int
    svm_prior : {"balanced", "natural"}
        Class mix of each channel's SVM training sample: equal numbers of both IBM labels, or
        the channel's IBM prior in the training mixtures (what the test mixtures look like).
    level_rms : float or None
        RMS every analysed signal (training mixture or input) is scaled to first
        (:func:`fastifkl.level.analysis_gain`); None analyses signals as they are (format-1 models).
    calib_per_mixture : int
        Units per channel and SVM-training mixture held out for the Platt calibration (drawn
        uniformly over the mixture's frames outside the SVM candidate pool; 0: no calibration).
    mask_floor_db, mask_beta : float
        The ratio mask ``max(p ** mask_beta, 10 ** (mask_floor_db / 20))`` of the default output.
    pitch_method : {"learned", "correlogram"}
        The pitch tracker (:func:`fastifkl.pitch.track`'s ``method``) of the training features
        (both pitch settings: "true" pitch is this tracker on the premixed speech) and of
        separation: a model always separates with the tracker it was trained with.  Model files
        that do not record it were trained with the correlogram tracker and load with it.
    """

    def __init__(self, kernel: str = "learned", C: float = 1.0, sigma: float | None = None, sigma_scale: float = 1.0,
                 gamma: float = 1.0, per_domain: int = 100, itml_mode: str = "lowrank", rank: int | None = None,
                 max_sweeps: int = 20, tol: float = 1e-3, max_train: int = 3000, units_per_mixture: int = 40,
                 lc_db: float = -10.0, pitch: str = "estimated", n_channels: int = N_CHANNELS, fmin: float = FMIN,
                 fmax: float = FMAX, seed: int = 0, svm_prior: str = "natural", itml_order: str = "given",
                 level_rms: float | None = LEVEL_RMS, calib_per_mixture: int = 8,
                 mask_floor_db: float = RATIO_FLOOR_DB, mask_beta: float = RATIO_BETA, solver: str = "libsvm",
                 n_landmarks: int = 400, landmark_method: str = "uniform", pitch_method: str = "learned"):
        self.kernel = kernel
        self.C = C
        self.sigma = sigma
        self.sigma_scale = sigma_scale
        self.gamma = gamma
        self.per_domain = per_domain
        self.itml_mode = itml_mode
        self.rank = rank
        self.max_sweeps = max_sweeps
        self.tol = tol
        self.max_train = max_train
        self.units_per_mixture = units_per_mixture
        self.lc_db = lc_db
        self.pitch = pitch
        self.n_channels = n_channels
        self.fmin = fmin
        self.fmax = fmax
        self.seed = seed
        self.svm_prior = svm_prior
        self.itml_order = itml_order
        self.level_rms = level_rms
        self.calib_per_mixture = calib_per_mixture
        self.mask_floor_db = mask_floor_db
        self.mask_beta = mask_beta
        self.solver = solver
        self.n_landmarks = n_landmarks
        self.landmark_method = landmark_method
        self.pitch_method = pitch_method

    # -- scikit-learn conventions -------------------------------------------------------------
    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The parameter names, in the order of ``__init__``'s signature."""
        return tuple(inspect.signature(cls).parameters)

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params) -> Separator:
        names = self.param_names()
        for k, v in params.items():
            if k not in names:
                raise InputError(f"Separator has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return (f"Separator(kernel={self.kernel!r}, C={self.C!r}, gamma={self.gamma!r}, pitch={self.pitch!r}, "
                f"solver={self.solver!r}, pitch_method={self.pitch_method!r})")

    def check_params(self) -> Separator:
        """Validate the parameters; one-line :class:`InputError` on a bad value.  Returns ``self``."""
        if self.kernel not in ("learned", "gaussian"):
            raise InputError(f"kernel must be 'learned' or 'gaussian', got {self.kernel!r}")
        if self.itml_mode not in ("lowrank", "exact"):
            raise InputError(f"itml_mode must be 'lowrank' or 'exact', got {self.itml_mode!r}")
        if self.itml_order not in ("given", "similar_first", "random"):
            raise InputError(f"itml_order must be 'given', 'similar_first' or 'random', got {self.itml_order!r}")
        if self.pitch not in ("true", "estimated"):
            raise InputError(f"pitch must be 'true' or 'estimated', got {self.pitch!r}")
        if self.pitch_method not in PITCH_METHODS:
            raise InputError(f"pitch_method must be one of {', '.join(PITCH_METHODS)}, got {self.pitch_method!r}")
        if self.svm_prior not in ("balanced", "natural"):
            raise InputError(f"svm_prior must be 'balanced' or 'natural', got {self.svm_prior!r}")
        for k in ("C", "gamma", "sigma_scale"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"{k} must be a positive number, got {v!r}")
        if self.sigma is not None and not (np.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be positive (or None for the median heuristic), got {self.sigma!r}")
        if self.level_rms is not None and not (np.isfinite(self.level_rms) and self.level_rms > 0):
            raise InputError(f"level_rms must be positive (or None: no level normalisation), got {self.level_rms!r}")
        if int(self.calib_per_mixture) < 0:
            raise InputError(f"calib_per_mixture must be >= 0, got {self.calib_per_mixture!r}")
        if not (np.isfinite(self.mask_beta) and self.mask_beta > 0):
            raise InputError(f"mask_beta must be a positive number, got {self.mask_beta!r}")
        if np.isnan(self.mask_floor_db) or self.mask_floor_db > 0:
            raise InputError(f"mask_floor_db must be <= 0 dB, got {self.mask_floor_db!r}")
        for k in ("per_domain", "max_sweeps", "n_landmarks"):
            if int(getattr(self, k)) < 1:
                raise InputError(f"{k} must be >= 1")
        for k in ("max_train", "units_per_mixture"):  # None: every unit
            if getattr(self, k) is not None and int(getattr(self, k)) < 1:
                raise InputError(f"{k} must be >= 1 (or None: every unit)")
        from .kernel_map import LANDMARK_METHODS
        from .svm import SOLVERS

        if self.solver not in SOLVERS:
            raise InputError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.landmark_method not in LANDMARK_METHODS:
            raise InputError(f"landmark_method must be one of {', '.join(LANDMARK_METHODS)}, "
                             f"got {self.landmark_method!r}")
        if self.solver == "libsvm" and self.max_train is None:
            raise InputError("max_train=None (every unit) needs solver='liblinear': a precomputed Gram matrix of "
                             "every unit does not fit in memory")
        return self

    # -- training -----------------------------------------------------------------------------
    def fit(self, mixset, *, kernel_ids: set[str] | None = None, tune_set=None, workers: int = 1, scheduler=None,
            progress=None, log=None, select: str | None = None, select_options: dict | None = None) -> Separator:
        """Analyse the mixture set and train (kernel learning + SVM per channel).

        Parameters
        ----------
        mixset : corpus.MixtureSet or path of a mixture-set directory
            Every mixture of it trains (select with :meth:`~fastifkl.corpus.MixtureSet.select`
            or :func:`fastifkl.training.training_sets`).
        kernel_ids : ids of the mixtures for kernel learning (default: ``kernel`` split).
        tune_set : corpus.MixtureSet or path, optional
            Mixtures (training noises only) on which ``sigma_scale``, ``C`` (and ``gamma``) are
            chosen first (:func:`fastifkl.tuning.tune_on_data`); the chosen values are set on
            this estimator.
        workers, scheduler : local processes or a Dask scheduler (see :mod:`fastifkl.parallel`).
        progress : callable(stage, done, total), optional
        log : callable(str), optional; receives one line per tuning or selection trial.
        select : {"lono"} or None
            Choose the settings of :data:`fastifkl.selection.GRIDS` (or ``select_options["grid"]``)
            by leave-one-noise-out on the training set first (:func:`fastifkl.selection.select`,
            keyword arguments from ``select_options``); the record lands in ``selection_`` and
            the model file's metadata.
        """
        from .corpus import MixtureSet
        from .parallel import executor

        self.check_params()
        if not isinstance(mixset, MixtureSet):
            mixset = MixtureSet.load(mixset)
        if tune_set is not None and not isinstance(tune_set, MixtureSet):
            tune_set = MixtureSet.load(tune_set)
        with executor(workers=workers, scheduler=scheduler) as ex:
            total = len(mixset)
            done = [0]

            def tick():
                done[0] += 1
                if progress:
                    progress("features", done[0], total)

            data = prepare(mixset, kernel_ids, pitch=self.pitch, lc_db=self.lc_db,
                           cfs=cfs_for(self.n_channels, self.fmin, self.fmax),
                           units_per_mixture=self.units_per_mixture, seed=self.seed, level_rms=self.level_rms,
                           calib_per_mixture=self.calib_per_mixture, pitch_method=self.pitch_method,
                           executor=ex, progress=tick)
            if tune_set is not None:
                from .tuning import tune_on_data

                self.set_params(**tune_on_data(self, data, tune_set, executor=ex, progress=progress, log=log))
            record = None
            if select is not None:
                if select != "lono":
                    raise InputError(f"select must be 'lono' (leave one noise out), got {select!r}")
                from .selection import select as lono_select

                record = lono_select(self, data, executor=ex, log=log, **(select_options or {}))
            self.fit_data(data, executor=ex, progress=progress)
            if record is not None:
                self.selection_ = record
            return self

    def fit_data(self, data: TrainingData, *, executor=None, progress=None, check: bool = False) -> Separator:
        """Train from prepared :class:`TrainingData` (lets G-SVM and KL-SVM share one analysis)."""
        from .channel import fit_channel
        from .parallel import executor as make_executor

        self.check_params()
        if data.level_rms != self.level_rms:
            raise InputError(f"the training data were analysed at level_rms={data.level_rms}, this separator has "
                             f"level_rms={self.level_rms}: prepare them with the separator's setting")
        if data.pitch_method != self.pitch_method:
            raise InputError(f"the training data's pitch was tracked with pitch_method={data.pitch_method!r}, this "
                             f"separator has pitch_method={self.pitch_method!r}: prepare them with the separator's "
                             "setting")
        if self.kernel == "learned" and len(data.domains) < 2:
            raise InputError(f"kernel learning needs at least 2 noise conditions (domains); the set has {data.domains}")
        params = self.get_params()
        n_ch = len(data.cfs)
        jobs = ({"channel": c, "params": params, "mean": data.mean[c], "std": data.std[c], "svm": data.svm_units[c],
                 "kernel_units": data.kernel_units[c], "check": check,
                 "calib": None if data.calib_units is None else data.calib_units[c],
                 "counts": None if data.class_counts is None else data.class_counts[c]} for c in range(n_ch))
        ex = make_executor() if executor is None else executor
        chans = []
        try:
            for res in ex.imap(fit_channel, jobs):
                chans.append(res)
                if progress:
                    progress("channels", len(chans), n_ch)
        finally:
            if executor is None:
                ex.close()
        self.cfs_ = np.asarray(data.cfs, dtype=np.float64)
        self.mean_ = data.mean
        self.std_ = data.std
        self.points_ = [ch["Z"] for ch in chans]
        self.coef_ = [ch["coef"] for ch in chans]
        self.bias_ = np.array([ch["bias"] for ch in chans])
        self.sigma_ = np.array([ch["sigma"] for ch in chans])
        self.channel_info_ = [ch["info"] for ch in chans]
        platt = [ch.get("platt") for ch in chans]
        self.platt_ = None if any(p is None for p in platt) else np.array(platt, dtype=np.float64)
        self.training_ = {"digest": data.digest, "domains": data.domains, "pitch": data.pitch,
                          "pitch_method": data.pitch_method, **data.info}
        if self.platt_ is not None:
            self.training_["calibration"] = {
                "method": "platt (Lin, Lin & Weng 2007)",
                "units": f"{self.calib_per_mixture} per channel from each SVM-training mixture, uniform over its "
                         "frames outside the SVM candidate pool (never in an SVM training sample), seeded by seed",
                "per_channel": int(np.median([c.get("n_calib", 0) for c in self.channel_info_]))}
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "points_"):
            raise InputError("this Separator is not fitted; call fit() or Separator.load()")

    def decision_function(self, x: np.ndarray, f0: np.ndarray | None = None, *,
                          gain: float | None = None) -> np.ndarray:
        """SVM decision values of every unit of ``x``: (C, M).

        ``f0`` defaults to the pitch tracked on the (level-normalised) ``x`` itself (estimated
        pitch) with the model's tracker (``pitch_method``).  ``gain`` is the analysis gain
        (default :meth:`analysis_gain` of ``x``; a block-wise caller passes the one of the whole
        file)."""
        return self._decision_and_responses(x, f0, gain)[0]

    def analysis_gain(self, x: np.ndarray) -> float:
        """The scalar gain applied to ``x`` before analysis: :func:`fastifkl.level.analysis_gain`
        to ``level_rms``, or 1.0 for a model without level normalisation (format 1)."""
        return analysis_gain(x, self.level_rms)

    def _decision_and_responses(self, x, f0=None, gain=None):
        from . import features
        from .gammatone import filterbank

        self._check_fitted()
        g = self.analysis_gain(x) if gain is None else float(gain)
        f0 = track_pitch(g * x, self.pitch_method) if f0 is None else f0
        R = filterbank(x, SAMPLE_RATE, self.cfs_)  # linear: the responses of g x are g R
        return self.decision_from_features(features.extract(g * R if g != 1.0 else R, f0, SAMPLE_RATE)), R

    def decision_from_features(self, X: np.ndarray) -> np.ndarray:
        """Decision values (C, M) from raw unit features (M, C, D)."""
        self._check_fitted()
        n_ch = len(self.points_)
        if X.ndim != 3 or X.shape[1] != n_ch or X.shape[2] != self.mean_.shape[1]:
            raise InputError(f"features must be (frames, {n_ch}, {self.mean_.shape[1]}), got {X.shape}")
        from ._threads import blas_single_thread
        from .kernels import gaussian_decision

        out = np.empty((n_ch, X.shape[0]))
        g = 8  # channels normalised at a time (one vectorised pass, channels first, bounded memory)
        Xn = np.empty((min(g, n_ch), X.shape[0], X.shape[2]))
        with blas_single_thread():  # same bits whatever the thread count (see fastifkl._threads)
            for c0 in range(0, n_ch, g):
                c1 = min(n_ch, c0 + g)
                xn = Xn[: c1 - c0]
                np.subtract(X[:, c0:c1, :].transpose(1, 0, 2), self.mean_[c0:c1, None, :], out=xn)
                xn /= self.std_[c0:c1, None, :]
                for c in range(c0, c1):
                    out[c] = gaussian_decision(xn[c - c0], self.points_[c], self.coef_[c], self.bias_[c],
                                               self.sigma_[c])
        return out

    def predict_mask(self, x: np.ndarray, f0: np.ndarray | None = None) -> np.ndarray:
        """Estimated binary mask (C, M), uint8."""
        return self.mask_from_decision(self.decision_function(x, f0), "binary")

    @property
    def calibrated(self) -> bool:
        """Whether the model holds its own Platt calibration (format 2), else :data:`FALLBACK_PLATT`."""
        return getattr(self, "platt_", None) is not None

    def posterior(self, d: np.ndarray) -> np.ndarray:
        """Speech posteriors (C, M) of decision values (C, M): each channel's Platt sigmoid
        ``1 / (1 + exp(A_c d + B_c))`` (:func:`fastifkl.svm.platt_posterior`)."""
        from .svm import platt_posterior

        self._check_fitted()
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != len(self.cfs_):
            raise InputError(f"decision values must be (channels={len(self.cfs_)}, frames), got {d.shape}")
        if self.calibrated:
            return platt_posterior(d, self.platt_[:, :1], self.platt_[:, 1:])
        return platt_posterior(d, *FALLBACK_PLATT)

    def mask_from_decision(self, d: np.ndarray, output: str = "ratio") -> np.ndarray:
        """The output mask (C, M) of decision values (C, M): a pure per-unit function.

        ``"ratio"``: :func:`fastifkl.masks.ratio` of :meth:`posterior` with ``mask_floor_db`` and
        ``mask_beta`` (float64); ``"binary"``: ``d > 0`` (uint8), the SVM's sign: the paper's
        mask, the one HIT-FA scores (independent of the calibration).
        """
        if output == "binary":
            from .blocks import binary_mask

            return binary_mask(d)
        if output == "ratio":
            from .masks import ratio

            return ratio(self.posterior(d), self.mask_floor_db, self.mask_beta)
        raise InputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")

    def separate(self, x: np.ndarray, *, output: str = "ratio", return_mask: bool = False,
                 return_decision: bool = False, block_seconds: float | None = BLOCK_SECONDS):
        """Separated speech (N,) of a mixture.

        Parameters
        ----------
        x : ndarray, shape (N,)
            Mixture, 16 kHz mono.
        output : {"ratio", "binary"}
            "ratio" (default; a soft mask from calibrated posteriors) or "binary" (the paper's
            binary mask); see :meth:`mask_from_decision`.
        return_mask, return_decision : bool
            Add the (C, M) mask that was applied, and the (C, M) decision values (the binary
            mask is ``d > 0``), in that order after ``y``.
        block_seconds : float or None
            Work in blocks of this many seconds (:mod:`fastifkl.blocks`; memory bounded by the
            block, the results those of the whole signal up to the filters' truncated memory);
            None: the whole signal at once (the reference path).
        """
        self._check_fitted()
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if block_seconds is None:
            y, mask, d = self._separate_whole(x, output)
        else:
            from .blocks import separate_array

            y, mask, d = separate_array(self, x, block_seconds=block_seconds,
                                        mask_fn=lambda dd: self.mask_from_decision(dd, output))
        out = (y,) + ((mask,) if return_mask else ()) + ((d,) if return_decision else ())
        return out if len(out) > 1 else y

    def _separate_whole(self, x: np.ndarray, output: str):
        from .gammatone import resynthesize

        d, R = self._decision_and_responses(x)
        mask = self.mask_from_decision(d, output)
        y = resynthesize(x, mask, SAMPLE_RATE, self.cfs_, responses=R)
        return y, mask, d

    # -- model file -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, dtype=np.float16) -> Path:
        """Write the model file (DESIGN section 3), atomically and deterministically.

        Points (normalised feature vectors, about N(0, 1) per dimension) are stored as ``dtype``:
        float16 by default, a quarter of float64.  Its relative rounding (4.9e-4) moves squared
        distances of 195-dim points by ~1e-4 of sigma^2, far below what changes a decision (the
        tests bound the mask disagreement); the file, not the in-memory model, is what ``load``
        and ``separate`` use, so results are reproducible bit-for-bit.
        """
        from . import model_file
        from .jsonio import json_default

        self._check_fitted()
        meta = {
            "package_version": __version__,
            "sample_rate": SAMPLE_RATE,
            "cfs": self.cfs_.tolist(),
            "params": self.get_params(),
            "feature_spec": "default-195",
            "n_dims": int(self.mean_.shape[1]),
            "training": self.training_,
            "channels": self.channel_info_,
        }
        if getattr(self, "selection_", None) is not None:
            meta["selection"] = self.selection_
        if self.calibrated:
            meta["calibration"] = {"kind": "platt", "array": "platt", "columns": ["A", "B"]}
        arrays = {"mean": self.mean_, "std": self.std_, "bias": self.bias_, "sigma": self.sigma_}
        if self.calibrated:
            arrays["platt"] = np.asarray(self.platt_, dtype=np.float64)
        for c, (Z, a) in enumerate(zip(self.points_, self.coef_)):
            arrays[f"ch{c:03d}_points"] = np.asarray(Z, dtype=dtype)
            arrays[f"ch{c:03d}_coef"] = np.asarray(a, dtype=np.float64)
        return model_file.write(path, json.loads(json.dumps(meta, default=json_default)), arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Separator:
        """Read and validate a model file; :class:`ModelError` (one line) on any problem."""
        from . import model_file

        meta, arrays = model_file.read(path)
        try:
            params = {k: v for k, v in meta["params"].items() if k in cls.param_names()}
            if meta.get("format_version") == 1:
                # format 1 (before issue 11): trained on signals as they were, no calibration
                params["level_rms"] = None
                params["calib_per_mixture"] = 0
            if "pitch_method" not in meta["params"]:
                # trained before issue 19, with the correlogram tracker: keep separating with it
                params["pitch_method"] = LEGACY_PITCH_METHOD
            cfs = np.asarray(meta["cfs"], dtype=np.float64)
            n_dims = int(meta["n_dims"])
            if meta.get("sample_rate") != SAMPLE_RATE:
                raise ModelError(f"{path}: model sample rate {meta.get('sample_rate')} is not {SAMPLE_RATE}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model metadata incomplete ({exc})") from None
        n_ch = cfs.size
        sep = cls(**params)
        if sep.pitch_method not in PITCH_METHODS:
            raise ModelError(f"{path}: unknown pitch tracker {sep.pitch_method!r} in the model's parameters "
                             f"(known: {', '.join(PITCH_METHODS)})")
        sep.cfs_ = cfs
        sep.mean_ = model_file.expect(path, arrays, "mean", np.float64, (n_ch, n_dims))
        sep.std_ = model_file.expect(path, arrays, "std", np.float64, (n_ch, n_dims))
        if np.any(sep.std_ <= 0):
            raise ModelError(f"{path}: array 'std' has non-positive entries")
        sep.bias_ = model_file.expect(path, arrays, "bias", np.float64, (n_ch,))
        sep.sigma_ = model_file.expect(path, arrays, "sigma", np.float64, (n_ch,))
        if np.any(sep.sigma_ <= 0):
            raise ModelError(f"{path}: array 'sigma' has non-positive entries")
        sep.points_, sep.coef_ = [], []
        for c in range(n_ch):
            Z = model_file.expect(path, arrays, f"ch{c:03d}_points", np.float32, (None, n_dims))
            a = model_file.expect(path, arrays, f"ch{c:03d}_coef", np.float64, (Z.shape[0],))
            sep.points_.append(Z.astype(np.float32))  # float16 on disk -> exact in float32
            sep.coef_.append(a)
        sep.platt_ = None
        if "platt" in arrays:
            sep.platt_ = model_file.expect(path, arrays, "platt", np.float64, (n_ch, 2))
        sep.channel_info_ = meta.get("channels", [])
        sep.training_ = meta.get("training", {})
        sep.selection_ = meta.get("selection")
        sep.meta_ = meta
        return sep

    def size_summary(self) -> dict:
        self._check_fitted()
        n = [int(z.shape[0]) for z in self.points_]
        return {"channels": len(n), "points_total": int(sum(n)), "points_per_channel_mean": float(np.mean(n))}


DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "default.fkl"


def load_default() -> Separator:
    """The default model shipped in the package (trained on real speech and real noises)."""
    if not DEFAULT_MODEL.is_file():
        raise ModelError(f"{DEFAULT_MODEL}: the default model is missing from this installation; pass -m MODEL")
    return Separator.load(DEFAULT_MODEL)
