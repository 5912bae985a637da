"""The learned pitch tracker: a small network scores pitch states per frame, Viterbi decodes.

After Han & Wang (2014, "Neural network based pitch tracking in very noisy speech"):

1. Per-frame features from the gammatone responses: the pooled correlogram statistics of
   :mod:`fastifkl.periodicity` (D = 1212 values per frame with the shipped settings).
2. A time-delay network (:class:`PitchNet`): a shared first layer maps each frame's
   normalised features to ``h1`` ReLU units; the next layer sees the first layer's output at
   the frame offsets ``offsets`` (-4, -2, 0, 2, 4 frames: +-40 ms of context); one more hidden
   ReLU layer; a softmax over ``1 + n_bins`` states: unvoiced, and ``n_bins`` (60) log-spaced
   pitch bins from 70 to 400 Hz (3 % apart).
3. Viterbi over the states with the log posteriors as frame scores and a transition matrix
   fitted on the pitch tracks of the training speech (:func:`transition_matrix`): the
   voicing decision comes from the state sequence, not from a threshold.
4. Pitch of a voiced frame: the posterior-weighted mean log frequency of the chosen bin and
   its neighbours within ``refine`` bins.

The weights are trained by :mod:`fastifkl.pitch_train` on the corpus's training speech and
training noises and ship as ``fastifkl/data/pitch_net.fkl``; inference is NumPy + Numba.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from . import SAMPLE_RATE
from .errors import InputError, ModelError
from .periodicity import FrontEnd, bin_centres

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "data" / "pitch_net.fkl"
KIND = "pitch-net"


@dataclass
class PitchNet:
    """Weights and decoding settings of the learned tracker.

    Attributes
    ----------
    front_end : FrontEnd
    mean, scale : ndarray, shape (D,)
        Input normalisation ``(F - mean) / scale``.
    weights, biases : lists of ndarrays
        Layer 0: (D, h1); layer 1: (len(offsets) h1, h2); ...; last: (h, 1 + n_bins).
    offsets : tuple of int
        Frame offsets at which layer 1 reads the output of layer 0 (edges replicated).
    log_trans : ndarray, shape (S, S)
        Log transition probabilities, state 0 = unvoiced, state k = bin k - 1.
    refine : int
        Bins on each side used for the pitch estimate of a voiced frame.
    info : dict
        Training provenance (command, data, seed).
    """

    front_end: FrontEnd
    mean: np.ndarray
    scale: np.ndarray
    weights: list
    biases: list
    offsets: tuple
    log_trans: np.ndarray
    refine: int = 2
    info: dict = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return 1 + self.front_end.n_bins

    def bins(self) -> np.ndarray:
        fe = self.front_end
        return bin_centres(fe.fmin, fe.fmax, fe.n_bins)

    # -- inference --------------------------------------------------------------------------
    def log_posteriors(self, F: np.ndarray) -> np.ndarray:
        """Log posteriors (M, S) of the states for features F (M, D) of one signal."""
        from ._threads import blas_single_thread

        F = np.asarray(F, dtype=np.float32)
        m = F.shape[0]
        with blas_single_thread():  # same bits whatever the machine's thread count
            x = (F - self.mean) / self.scale
            h = x @ self.weights[0]
            h += self.biases[0]
            np.maximum(h, 0.0, out=h)
            idx = np.arange(m)
            h = np.concatenate([h[np.clip(idx + d, 0, m - 1)] for d in self.offsets], axis=1)
            n_l = len(self.weights)
            for i in range(1, n_l):
                h = h @ self.weights[i]
                h += self.biases[i]
                if i < n_l - 1:
                    np.maximum(h, 0.0, out=h)
        h = h.astype(np.float64)
        h -= h.max(axis=1, keepdims=True)
        h -= np.log(np.exp(h).sum(axis=1, keepdims=True))
        return h

    def decode(self, logp: np.ndarray) -> np.ndarray:
        """Pitch (M,) in Hz from log posteriors (M, S): Viterbi path, then refinement."""
        path = viterbi(np.ascontiguousarray(logp, dtype=np.float64), np.ascontiguousarray(self.log_trans))
        return refine_pitch(path, logp, self.bins(), self.refine)

    # -- file -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights (float32) and settings; deterministic bytes (:mod:`fastifkl.model_file`)."""
        from . import __version__, model_file

        dims = [int(self.mean.shape[0])] + [int(np.shape(w)[1]) for w in self.weights]
        meta = {"kind": KIND, "package_version": __version__, "front_end": self.front_end.to_dict(),
                "offsets": [int(o) for o in self.offsets], "n_layers": len(self.weights), "dims": dims,
                "refine": int(self.refine), "info": self.info}
        arrays = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
                  "log_trans": self.log_trans.astype(np.float64)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"w{i}"] = np.asarray(w, dtype=np.float32)
            arrays[f"b{i}"] = np.asarray(b, dtype=np.float32)
        return model_file.write(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PitchNet:
        """Read a file written by :meth:`save` with :func:`fastifkl.model_file.read`'s safe
        loading (bounded reads, every array's dtype and shape checked against the metadata
        before it is read, no pickles); :class:`ModelError` naming the file on any problem."""
        from . import model_file

        meta, arrays = model_file.read(path, expected=file_layout)
        fe = FrontEnd.from_dict(meta["front_end"])
        offsets = tuple(int(o) for o in meta["offsets"])
        dims = meta["dims"]
        s = dims[-1]
        mean = model_file.expect(path, arrays, "mean", np.float32, (dims[0],))
        scale = model_file.expect(path, arrays, "scale", np.float32, (dims[0],))
        if np.any(scale <= 0):
            raise ModelError(f"{path}: corrupt model file (array 'scale' has non-positive entries)")
        ws, bs = [], []
        for i in range(len(dims) - 1):
            rows = dims[i] * (len(offsets) if i == 1 else 1)
            ws.append(model_file.expect(path, arrays, f"w{i}", np.float32, (rows, dims[i + 1])).astype(np.float32))
            bs.append(model_file.expect(path, arrays, f"b{i}", np.float32, (dims[i + 1],)).astype(np.float32))
        lt = model_file.expect(path, arrays, "log_trans", np.float64, (s, s))
        return cls(fe, mean.astype(np.float32), scale.astype(np.float32), ws, bs, offsets, lt, int(meta["refine"]),
                   meta.get("info", {}))


_MAX_WIDTH = 1 << 16  # bound on any layer width or feature count in a pitch-network file
_MAX_LAYERS = 16
_MAX_OFFSETS = 64


def file_layout(path, meta: dict) -> dict[str, tuple[str, tuple]]:
    """The arrays of a pitch-network file, from (and after checking) its metadata: name ->
    (dtype kind, shape); for :func:`fastifkl.model_file.read`."""

    def bad(what):
        return ModelError(f"{path}: corrupt pitch-network file (meta.json {what})")

    def small_int(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    if meta.get("kind") != KIND:
        raise ModelError(f"{path}: not a pitch-network file (kind {meta.get('kind')!r})")
    dims, offsets = meta.get("dims"), meta.get("offsets")
    if not isinstance(dims, list) or not 3 <= len(dims) <= _MAX_LAYERS + 1 or not all(
            small_int(d, 1, _MAX_WIDTH) for d in dims):
        raise bad(f"'dims' is {dims!r}, not a list of 3 to {_MAX_LAYERS + 1} widths")
    if meta.get("n_layers") != len(dims) - 1:
        raise bad(f"'n_layers' is {meta.get('n_layers')!r}, 'dims' has {len(dims) - 1} layers")
    if not isinstance(offsets, list) or not 1 <= len(offsets) <= _MAX_OFFSETS or not all(
            small_int(o, -1000, 1000) for o in offsets):
        raise bad(f"'offsets' is {offsets!r}")
    if not small_int(meta.get("refine"), 0, 100):
        raise bad(f"'refine' is {meta.get('refine')!r}")
    try:
        fe = FrontEnd.from_dict(meta["front_end"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(f"'front_end' is unusable ({exc})") from None
    s = dims[-1]
    if s != 1 + fe.n_bins:
        raise bad(f"'dims' ends in {s} outputs, the front end has {fe.n_bins} bins + unvoiced")
    out = {"mean": ("f", (dims[0],)), "scale": ("f", (dims[0],)), "log_trans": ("f", (s, s))}
    for i in range(len(dims) - 1):
        rows = dims[i] * (len(offsets) if i == 1 else 1)
        out[f"w{i}"] = ("f", (rows, dims[i + 1]))
        out[f"b{i}"] = ("f", (dims[i + 1],))
    return out


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> PitchNet:
    return PitchNet.load(path)


def load(path: str | os.PathLike | None = None) -> PitchNet:
    """The shipped network (default) or one from ``path``; cached per file."""
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise ModelError(f"{p}: pitch-network weights not found (train them with `python -m fastifkl.pitch_train`)")
    return _load_cached(str(p), p.stat().st_mtime)


@njit(cache=True)
def viterbi(logp, log_trans):
    """Most probable state path (M,) for frame log scores (M, S) and log transitions (S, S)
    (``log_trans[i, j]``: from state i to state j); ties go to the lower state index."""
    m, s = logp.shape
    back = np.empty((m, s), dtype=np.int64)
    d = logp[0].copy()
    nd = np.empty(s)
    for t in range(1, m):
        for j in range(s):
            best = -np.inf
            arg = 0
            for i in range(s):
                v = d[i] + log_trans[i, j]
                if v > best:
                    best = v
                    arg = i
            back[t, j] = arg
            nd[j] = best + logp[t, j]
        d[:] = nd
    path = np.empty(m, dtype=np.int64)
    best = -np.inf
    arg = 0
    for j in range(s):
        if d[j] > best:
            best = d[j]
            arg = j
    path[m - 1] = arg
    for t in range(m - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def refine_pitch(path: np.ndarray, logp: np.ndarray, bins: np.ndarray, width: int) -> np.ndarray:
    """Pitch per frame: 0 for state 0; else the posterior-weighted mean of log f over the bins
    within ``width`` of the chosen one."""
    k = bins.size
    f0 = np.zeros(path.shape[0])
    v = np.flatnonzero(path > 0)
    if v.size == 0:
        return f0
    c = path[v] - 1
    offs = np.arange(-width, width + 1)
    idx = np.clip(c[:, None] + offs[None, :], 0, k - 1)
    p = np.exp(logp[v[:, None], 1 + idx])
    p[(c[:, None] + offs[None, :] < 0) | (c[:, None] + offs[None, :] >= k)] = 0.0
    lf = np.log(bins)[idx]
    f0[v] = np.exp(np.sum(p * lf, axis=1) / np.maximum(np.sum(p, axis=1), 1e-300))
    return f0


def transition_matrix(state_tracks, n_bins: int, floor: float = 1e-4) -> np.ndarray:
    """Log transition matrix (S, S) from state sequences of training speech (0 = unvoiced).

    Voiced to voiced: ``(1 - p_vu) h(j - i)`` with ``h`` the histogram of bin changes between
    consecutive voiced frames (plus ``floor``), renormalised over the bins; voiced to unvoiced
    ``p_vu``; unvoiced to unvoiced ``1 - p_uv``; unvoiced to each bin ``p_uv / n_bins`` (no
    preference for the training talkers' pitch range).
    """
    k = n_bins
    hist = np.zeros(2 * k + 1)
    nvv = nvu = nuv = nuu = 0
    for s in state_tracks:
        s = np.asarray(s)
        a, b = s[:-1], s[1:]
        va, vb = a > 0, b > 0
        nvv += int(np.sum(va & vb))
        nvu += int(np.sum(va & ~vb))
        nuv += int(np.sum(~va & vb))
        nuu += int(np.sum(~va & ~vb))
        np.add.at(hist, (b - a)[va & vb] + k, 1)
    if nvv + nvu == 0 or nuv + nuu == 0:
        raise InputError("transition_matrix needs voiced and unvoiced frames")
    h = hist / max(hist.sum(), 1.0) + floor
    p_vu = nvu / (nvv + nvu)
    p_uv = nuv / (nuv + nuu)
    T = np.zeros((k + 1, k + 1))
    T[0, 0] = 1 - p_uv
    T[0, 1:] = p_uv / k
    for i in range(1, k + 1):
        row = h[np.arange(1, k + 1) - i + k]
        T[i, 1:] = (1 - p_vu) * row / row.sum()
        T[i, 0] = p_vu
    return np.log(T)


def states_from_f0(f0: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """State of each frame: 0 if f0 <= 0, else 1 + the nearest bin in log frequency."""
    f0 = np.asarray(f0, dtype=np.float64)
    s = np.zeros(f0.shape, dtype=np.int64)
    v = f0 > 0
    step = np.log(bins[1] / bins[0])
    s[v] = 1 + np.clip(np.rint((np.log(f0[v]) - np.log(bins[0])) / step), 0, bins.size - 1).astype(np.int64)
    return s


def track(x: np.ndarray, responses: np.ndarray | None = None, cfs: np.ndarray | None = None,
          net: PitchNet | None = None, fmin: float = 0.0, fmax: float = np.inf) -> np.ndarray:
    """Pitch (M,) of a validated 16 kHz signal with the learned tracker (see the module docstring).

    ``responses`` (C, N): the gammatone responses of ``x`` for ``cfs`` (default: the
    separator's 64 channels, 80-5000 Hz), to avoid filtering twice.  Bins whose centre lies
    outside [fmin, fmax] are excluded.
    """
    from .framing import n_frames
    from .gammatone import erb_space, filterbank
    from .periodicity import frame_features

    net = load() if net is None else net
    cfs = erb_space() if cfs is None else np.asarray(cfs, dtype=np.float64)
    m = n_frames(x.size)
    if responses is None:
        responses = filterbank(x, SAMPLE_RATE, cfs, dtype=np.float32)
    else:
        responses = np.asarray(responses)
        if responses.shape != (cfs.size, x.size):
            raise InputError(f"responses have shape {responses.shape}, expected ({cfs.size}, {x.size}) for this signal")
    F, _ = frame_features(responses, cfs, net.front_end, m)
    if F.shape[1] != net.mean.shape[0]:
        raise InputError(f"the pitch network expects {net.mean.shape[0]} features per frame, the front end gave "
                         f"{F.shape[1]} "
                         f"(filterbank of {cfs.size} channels; the network was trained on 64 channels, 80-5000 Hz)")
    logp = net.log_posteriors(F)
    b = net.bins()
    out = (b < fmin * (1 - 1e-9)) | (b > fmax * (1 + 1e-9))
    if np.all(out):
        raise InputError(f"no pitch bin lies within {fmin}-{fmax} Hz")
    if np.any(out):
        logp[:, 1:][:, out] = -np.inf
    return net.decode(logp)
