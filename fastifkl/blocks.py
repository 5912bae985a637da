"""Block-wise analysis and separation: signals of any length in memory bounded by the block.

A signal of N samples is cut into blocks of ``block_samples`` output samples (the last may be
shorter, down to one sample).  Block k *owns* the output samples ``[start, stop)`` and the frames
whose first sample lies there (frame m starts at sample ``160 m``).  Each stage reads the
samples it needs around what the block owns and discards what it computed for the margins
(overlap and discard), or carries a small state to the next block:

=====================  =========================================================================
stage                  margin / state (constants below, each with how it was measured)
=====================  =========================================================================
pitch (f0)             tracked on the block's frames +- :data:`PITCH_MARGINS` ``[method]``
                       frames (the tracker's windows, smoothing and Viterbi look-ahead), with
                       the file's mean and peak from the pre-pass (``pitch.track(global_stats=)``),
                       with the separator's tracker (``Separator.pitch_method``)
gammatone filterbank   restarted :data:`GT_MEMORY` samples early: the 4th-order filters' impulse
                       responses (slowest: the lowest channel) have < 1e-12 of their L1 norm left
features               the frame's samples plus: the pitch-feature lag (:data:`MAX_LAG`) and the
                       pitch envelope's zero-phase band-pass (:data:`ENV_MEMORY` each side),
                       the AMS anti-alias FIR (16 samples each side); RASTA's IIR along frames
                       (pole 0.94) carries its state (``features.rasta_plp.RastaState``) and the
                       time delta the previous block's last frame: both exact
decision -> mask       per unit: ``mask_fn(d)`` on the block's decision values
resynthesis            zero-phase pass: the backward filter starts :data:`GT_MEMORY` samples after
                       the block; the Hann-weighted overlap-add takes the mask of the two frames
                       before the block from the previous block
=====================  =========================================================================

Whole-file quantities come from a streaming pre-pass (:func:`signal_stats`: sample count,
mean, RMS, peak, in constant memory) and reach the analysis through :class:`FileStats` and the
scalar ``gain`` applied to the signal before the analysis (the level normalisation plugs in
there: ``gain = f(stats)``; the output is the un-scaled mixture's resynthesis).

Results equal whole-file processing up to the filters' truncated memory (~1e-12 relative);
the masks agree unless a decision value is within that of 0 (tests/test_blocks.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from . import FRAME_LEN, HOP, SAMPLE_RATE
from .errors import InputError
from .framing import n_frames

# -- margins (samples unless named frames) ------------------------------------------------------
GT_MEMORY = 2880  # gammatone: L1 tail of the impulse response < 1e-12 after 2747 samples (80 Hz channel)
ENV_MEMORY = 2080  # pitch-feature envelope band-pass (50-550 Hz Butterworth): tail < 1e-12 after 2053
MAX_LAG = 400  # pitch-feature lag round(16000 / f0) for f0 >= 40 Hz (the tracker's floor is 70 Hz)
AMS_REACH = 16  # AMS anti-alias FIR (33 taps, zero phase): 16 samples each side of a frame


def _hop_ceil(n: int) -> int:
    return -(-n // HOP) * HOP


FEATURE_LEFT = _hop_ceil(GT_MEMORY + ENV_MEMORY + max(MAX_LAG, AMS_REACH))  # before a block's first frame
FEATURE_RIGHT = ENV_MEMORY + AMS_REACH  # after its last frame's end
PITCH_MARGINS = {"correlogram": 50, "learned": 150}  # frames each side of a block, per pitch tracker
"""Frames each side of a block for the pitch tracker, per ``fastifkl.pitch.track`` method.

correlogram: measured on 30 s of the corpus's ``tune`` speech in white noise at -5 and +5 dB and on
synthetic voiced speech at -5 dB, in blocks of 997 frames, against the whole-signal track: frames
whose f0 differs: 17-23 of 2962 with no margin, 3-4 with 10 frames, none with 20 or more; 50 leaves
room for the Viterbi path's longer re-decisions (tests/test_blocks.py: no margin changes the mask).

learned (``python bench/pitch_margin.py``, bench/results/pitch_margin.jsonl): 30 s of the ``tune``
talker in the training noises street and ssn at -5 and +5 dB and synthetic voiced speech in white
noise at -5 dB, blocks of 997 frames, against the whole-signal track (14 847 frames): frames with a
different voicing decision 37 / 6 / 5 / 0 / 0 with margins 0 / 20 / 50 / 100 / 150, and f0 more
than 1 % apart 20 / 4 / 0 / 0 / 0; from 100 frames on the rest differs by float32 rounding of
the filterbank only (<= 1.7e-8 relative).  The tracker's reach is its energy reference (the
maximum over +-100 frames) plus the network's +-4 frames and the Viterbi path's re-decisions: 150."""
PITCH_MARGIN = PITCH_MARGINS["learned"]
"""The margin of the default tracker (``fastifkl.pitch.DEFAULT_METHOD``)."""
BLOCK_SECONDS = 20.0  # default block length
MIN_BLOCK = 1


@dataclass(frozen=True)
class FileStats:
    """Whole-signal scalars from the pre-pass (16 kHz mono signal as analysed).

    Attributes
    ----------
    n_samples : int
    mean : float
    rms : float
        ``sqrt(mean(x ** 2))`` (DC included).
    max, min : float
        Largest and smallest sample.
    level : fastifkl.level.LevelMeter
        The streaming level of the signal (count, mean, squared deviations merged chunk by
        chunk): the analysis gain's statistic.
    """

    n_samples: int
    mean: float
    rms: float
    max: float
    min: float
    level: object = field(default=None, compare=False, repr=False)

    @property
    def std(self) -> float:
        """RMS after removing the mean (:meth:`fastifkl.level.LevelMeter.rms`)."""
        return self.level.rms()

    def analysis_gain(self, level_rms: float | None) -> float:
        """The file's analysis gain: :func:`fastifkl.level.analysis_gain` of the whole signal,
        from the pre-pass's :class:`~fastifkl.level.LevelMeter` (equal up to rounding); 1.0 when
        ``level_rms`` is None (no level normalisation: format-1 models)."""
        return self.level.gain(level_rms)

    @property
    def peak(self) -> float:
        """``max |x|``."""
        return max(abs(self.max), abs(self.min))

    @property
    def centered_peak(self) -> float:
        """``max |x - mean|``."""
        return max(self.max - self.mean, self.mean - self.min)

    @property
    def n_frames(self) -> int:
        return n_frames(self.n_samples)


def signal_stats(chunks: Iterable[np.ndarray]) -> FileStats:
    """The pre-pass: :class:`FileStats` of a signal given as consecutive chunks, in constant
    memory (float64 sums per chunk, pairwise within a chunk; the level by
    :class:`fastifkl.level.LevelMeter`)."""
    from .level import LevelMeter

    level = LevelMeter()
    n = 0
    s = s2 = 0.0
    hi, lo = -np.inf, np.inf
    for c in chunks:
        c = np.asarray(c, dtype=np.float64)
        if c.size == 0:
            continue
        level.update(c)
        n += c.size
        s += float(np.sum(c))
        s2 += float(np.dot(c, c))
        hi = max(hi, float(c.max()))
        lo = min(lo, float(c.min()))
    if n == 0:
        raise InputError("signal is empty")
    return FileStats(n, s / n, float(np.sqrt(s2 / n)), hi, lo, level)


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One block: what it owns and the segments its stages read (sample indices of the signal).

    ``[start, stop)``: output samples owned; ``[m0, m1)``: frames owned (possibly none);
    ``[seg0, seg1)``: the analysis segment (filterbank, features, resynthesis), ``seg0`` on the
    frame grid; ``[pit0, pit1)``: the pitch tracker's segment, on the frame grid.
    """

    index: int
    start: int
    stop: int
    m0: int
    m1: int
    seg0: int
    seg1: int
    pit0: int
    pit1: int

    @property
    def frames(self) -> slice:
        """The owned frames as frame indices of the analysis segment."""
        a = self.seg0 // HOP
        return slice(self.m0 - a, self.m1 - a)

    @property
    def pitch_frames(self) -> slice:
        """The owned frames as frame indices of the pitch segment."""
        a = self.pit0 // HOP
        return slice(self.m0 - a, self.m1 - a)


def plan(n_samples: int, block_samples: int, pitch_margin: int = PITCH_MARGIN) -> list[Block]:
    """The blocks of a signal of ``n_samples`` (>= one frame) in blocks of ``block_samples``."""
    n = int(n_samples)
    b = int(block_samples)
    if b < MIN_BLOCK:
        raise InputError(f"block length must be >= {MIN_BLOCK} sample, got {b}")
    m = n_frames(n)
    if m < 1:
        raise InputError(f"signal is too short: {n} samples, need at least {FRAME_LEN} (one 20 ms frame)")
    out = []
    for k, start in enumerate(range(0, n, b)):
        stop = min(n, start + b)
        m0 = min(m, -(-start // HOP))
        m1 = m if stop == n else min(m, -(-stop // HOP))
        seg0 = max(0, m0 * HOP - FEATURE_LEFT)
        feat_end = (m1 - 1) * HOP + FRAME_LEN + FEATURE_RIGHT if m1 > m0 else 0
        seg1 = min(n, max(feat_end, stop + GT_MEMORY))
        p_lo, p_hi = max(0, m0 - pitch_margin), min(m, m1 + pitch_margin)
        pit0 = p_lo * HOP
        pit1 = n if p_hi == m else (p_hi - 1) * HOP + FRAME_LEN
        out.append(Block(k, start, stop, m0, m1, seg0, seg1, pit0, pit1))
    return out


def block_samples_for(seconds: float | None) -> int:
    """Block length in samples for a length in seconds."""
    if seconds is None or not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"block length must be a positive number of seconds, got {seconds!r}")
    return max(MIN_BLOCK, int(round(seconds * SAMPLE_RATE)))


# -- a sliding window over a signal given in chunks ----------------------------------------------
class SampleWindow:
    """Random access to a signal given as consecutive chunks, for ranges that move forwards:
    ``get(a, e)`` reads chunks as far as needed; ``drop_before(a)`` forgets earlier samples."""

    def __init__(self, chunks: Iterable[np.ndarray]):
        self._it = iter(chunks)
        self._buf = np.empty(0)
        self._base = 0

    def get(self, a: int, e: int) -> np.ndarray:
        """Samples ``[a, e)`` (fewer if the signal ends first); a read-only view."""
        if a < self._base:
            raise ValueError(f"samples before {self._base} were dropped (asked from {a})")
        parts = [self._buf]
        end = self._base + self._buf.size
        while end < e:
            c = next(self._it, None)
            if c is None:
                break
            c = np.asarray(c, dtype=np.float64)
            parts.append(c)
            end += c.size
        if len(parts) > 1:
            self._buf = np.concatenate(parts)
        v = self._buf[a - self._base: e - self._base]
        v.flags.writeable = False
        return v

    def drop_before(self, a: int) -> None:
        cut = min(max(0, a - self._base), self._buf.size)
        if cut:
            self._buf = self._buf[cut:].copy()
            self._base += cut


# -- the stages ------------------------------------------------------------------------------------
def pitch_margin_for(method: str | None) -> int:
    """:data:`PITCH_MARGINS` of a tracker (None: the default tracker)."""
    from .pitch import DEFAULT_METHOD

    m = DEFAULT_METHOD if method is None else method
    if m not in PITCH_MARGINS:
        raise InputError(f"pitch method must be one of {', '.join(PITCH_MARGINS)}, got {method!r}")
    return PITCH_MARGINS[m]


def block_pitch(x_pitch: np.ndarray, blk: Block, stats: FileStats, gain: float = 1.0,
                method: str | None = None) -> np.ndarray:
    """f0 (Hz, 0 = unvoiced) of the block's frames from its pitch segment ``x[pit0:pit1]``, with
    the tracker ``method`` (default ``fastifkl.pitch.DEFAULT_METHOD``)."""
    from .pitch import DEFAULT_METHOD, track

    f0 = track(x_pitch * gain if gain != 1.0 else x_pitch, SAMPLE_RATE,
               method=DEFAULT_METHOD if method is None else method,
               global_stats=(stats.mean * gain, stats.centered_peak * abs(gain)))
    return f0[blk.pitch_frames]


class FeatureStream:
    """Unit features of consecutive blocks of one signal: carries RASTA's filter state and the
    base features of the last frame (for the time delta) from block to block."""

    def __init__(self, spec=None):
        from .features.rasta_plp import RastaState

        self.spec = spec
        self.rasta = RastaState()
        self.previous: dict | None = None

    def __call__(self, responses: np.ndarray, blk: Block, f0: np.ndarray) -> np.ndarray:
        """Features (m1 - m0, C, D) of the block's frames from the segment's responses (C, seg)."""
        from . import features

        fr = blk.frames
        f0_seg = np.zeros(n_frames(responses.shape[1]))
        f0_seg[fr] = f0
        spec = features.FeatureSpec() if self.spec is None else self.spec
        base = features.base_features(responses, f0_seg, SAMPLE_RATE, spec.families, frames=fr,
                                      rasta_state=self.rasta)
        X = features.assemble(base, spec, previous=self.previous)
        self.previous = {k: v[-1].copy() for k, v in base.items()}
        return X


class Resynthesizer:
    """The output samples of consecutive blocks: zero-phase pass over the segment, the
    Hann-weighted mask (this block's frames and the two before, kept from the last block),
    the channel sum and the resynthesis gain."""

    def __init__(self, cfs: np.ndarray):
        from .gammatone import resynthesis_gain

        self.cfs = np.asarray(cfs, dtype=np.float64)
        self.scale = resynthesis_gain(self.cfs, SAMPLE_RATE)
        self.tail = np.zeros((self.cfs.size, 0))  # mask of the frames just before the next block
        self.tail_m = 0  # index of the first frame of ``tail``

    def __call__(self, x_seg: np.ndarray, responses: np.ndarray, blk: Block, mask: np.ndarray) -> np.ndarray:
        """``y[start:stop]``; ``responses`` (C, seg1 - seg0), the forward pass of the segment,
        is overwritten (filtered backwards in place)."""
        from .gammatone import weighted_sum, zero_phase

        mask = np.asarray(mask)
        if self.tail.shape[1]:
            mask = np.concatenate([self.tail.astype(mask.dtype, copy=False), mask], axis=1)
        first = self.tail_m if self.tail.shape[1] else blk.m0
        F = zero_phase(x_seg, SAMPLE_RATE, self.cfs, responses=responses, overwrite_responses=True)
        off = first * HOP - blk.seg0
        y = weighted_sum(F[:, off:], mask)[blk.start - first * HOP: blk.stop - first * HOP]
        keep = min(2, mask.shape[1])
        self.tail = mask[:, mask.shape[1] - keep:].copy()
        self.tail_m = first + mask.shape[1] - keep
        return y * self.scale


def binary_mask(d: np.ndarray) -> np.ndarray:
    """The binary mask of decision values: ``d > 0`` as uint8 (C, M)."""
    return (np.asarray(d) > 0).astype(np.uint8)


# -- analysis and separation -----------------------------------------------------------------------
def _analysis(chunks, stats: FileStats, cfs: np.ndarray, block_samples: int, *, pitch_chunks=None,
              pitch_stats: FileStats | None = None, gain: float = 1.0, pitch_margin: int | None = None,
              spec=None, pitch_method: str | None = None):
    """Per block: ``(block, x_seg, R, X)``: the analysis segment, its filterbank responses
    (C, seg; the caller may overwrite them) and the unit features of the block's frames
    (m1 - m0, C, D; None when the block owns no frame).  The pitch is tracked on
    ``pitch_chunks`` (a signal of the same length, e.g. the premixed speech) when given, else
    on the signal itself, with the tracker ``pitch_method`` (default
    ``fastifkl.pitch.DEFAULT_METHOD``) and ``pitch_margin`` frames each side of a block (default
    :func:`pitch_margin_for` the tracker)."""
    from .gammatone import filterbank

    if pitch_margin is None:
        pitch_margin = pitch_margin_for(pitch_method)
    blocks = plan(stats.n_samples, block_samples, pitch_margin)
    window = SampleWindow(chunks)
    if pitch_chunks is None:
        pwindow, pstats = window, stats
    else:
        pwindow, pstats = SampleWindow(pitch_chunks), (stats if pitch_stats is None else pitch_stats)
    feats = FeatureStream(spec)
    for k, blk in enumerate(blocks):
        x_seg = window.get(blk.seg0, blk.seg1)
        R = filterbank(x_seg, SAMPLE_RATE, cfs)
        X = None
        if blk.m1 > blk.m0:
            f0 = block_pitch(pwindow.get(blk.pit0, blk.pit1), blk, pstats, gain, pitch_method)
            X = feats(R * gain if gain != 1.0 else R, blk, f0)  # the filterbank is linear
        if k + 1 < len(blocks):
            nxt = blocks[k + 1]
            window.drop_before(min(nxt.seg0, nxt.pit0))
            if pwindow is not window:
                pwindow.drop_before(nxt.pit0)
        yield blk, x_seg, R, X
        del x_seg, R, X


def feature_blocks(chunks: Iterable[np.ndarray], stats: FileStats, cfs: np.ndarray, *, block_samples: int,
                   pitch_chunks: Iterable[np.ndarray] | None = None, pitch_stats: FileStats | None = None,
                   gain: float = 1.0, spec=None, pitch_method: str | None = None) -> Iterator[tuple[Block, np.ndarray]]:
    """Unit features of a signal block by block: ``(block, X)`` with X (m1 - m0, C, D) for every
    block that owns frames; the pitch is tracked with ``pitch_method`` (default
    ``fastifkl.pitch.DEFAULT_METHOD``; pass the model's ``Separator.pitch_method``) on
    ``pitch_chunks`` (with ``pitch_stats``) when given (e.g. the premixed speech: "true" pitch),
    else on the signal."""
    for blk, _, _, X in _analysis(chunks, stats, cfs, block_samples, pitch_chunks=pitch_chunks,
                                  pitch_stats=pitch_stats, gain=gain, spec=spec, pitch_method=pitch_method):
        if X is not None:
            yield blk, X


def separate_blocks(sep, chunks: Iterable[np.ndarray], stats: FileStats, *, block_samples: int,
                    mask_fn: Callable[[np.ndarray], np.ndarray] | None = None, gain: float | None = None,
                    pitch_margin: int | None = None) -> Iterator[tuple[Block, np.ndarray, np.ndarray, np.ndarray]]:
    """Separate a signal block by block.

    Parameters
    ----------
    sep : fastifkl.separator.Separator (fitted)
    chunks : iterable of ndarray
        The signal (16 kHz mono float64) as consecutive chunks of any size, read once.
    stats : FileStats
        Of the same signal (:func:`signal_stats`, the pre-pass).
    block_samples : int
        Output samples per block.
    mask_fn : callable, optional
        Decision values (C, m) of a block's units -> its mask (C, m); default :func:`binary_mask`.
    gain : float, optional
        Scalar applied to the signal before the analysis (pitch, features); the output is the
        resynthesis of the signal itself.  Default: the level normalisation of the separator,
        ``stats.analysis_gain(sep.level_rms)`` (the whole file's gain, from the pre-pass).
    pitch_margin : int, optional
        Frames each side of a block for the pitch tracker; default :func:`pitch_margin_for` the
        separator's tracker (``sep.pitch_method``, the one the model was trained with).

    Yields
    ------
    (block, y, mask, d)
        ``y``: output samples ``[block.start, block.stop)``; ``mask`` and the decision values
        ``d``: (C, m1 - m0) of the block's frames.  Memory is bounded by the block length, not
        the signal's.
    """
    mask_fn = binary_mask if mask_fn is None else mask_fn
    if gain is None:
        gain = stats.analysis_gain(getattr(sep, "level_rms", None))
    resyn = Resynthesizer(sep.cfs_)
    method = getattr(sep, "pitch_method", None)
    for blk, x_seg, R, X in _analysis(chunks, stats, sep.cfs_, block_samples, gain=gain, pitch_margin=pitch_margin,
                                      pitch_method=method):
        if X is not None:
            d = sep.decision_from_features(X)
            mask = mask_fn(d)
        else:  # a block too short to own a frame (its samples are in the previous frames)
            d = np.zeros((len(sep.cfs_), 0))
            mask = mask_fn(d)
        del X
        yield blk, resyn(x_seg, R, blk, mask), mask, d


def separate_array(sep, x: np.ndarray, *, block_seconds: float = BLOCK_SECONDS, mask_fn=None,
                   gain: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`separate_blocks` of an in-memory signal: ``(y (N,), mask (C, M), d (C, M))``."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"signal must be 1-D (mono), got shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError("signal contains NaN or infinite samples")
    if x.size < FRAME_LEN:
        raise InputError(f"signal is too short: {x.size} samples, need at least {FRAME_LEN} (one 20 ms frame)")
    stats = signal_stats([x])
    y = np.empty(x.size)
    mask = d = None
    for blk, yb, mb, db in separate_blocks(sep, [x], stats, block_samples=block_samples_for(block_seconds),
                                           mask_fn=mask_fn, gain=gain):
        if mask is None:
            mask = np.empty((mb.shape[0], stats.n_frames), dtype=mb.dtype)
            d = np.empty((db.shape[0], stats.n_frames))
        y[blk.start:blk.stop] = yb
        mask[:, blk.m0:blk.m1] = mb
        d[:, blk.m0:blk.m1] = db
    return y, mask, d


# -- analysis without separation (evaluate, cochleagram) -----------------------------------------
def cochleagram_blocks(chunks: Iterable[np.ndarray], n_samples: int, cfs: np.ndarray, *,
                       block_samples: int) -> Iterator[tuple[Block, np.ndarray]]:
    """Cochleagram (C, m1 - m0) of each block's frames: ``(block, E)``."""
    from .gammatone import cochleagram, filterbank

    blocks = plan(n_samples, block_samples, 0)
    window = SampleWindow(chunks)
    for k, blk in enumerate(blocks):
        if blk.m1 > blk.m0:
            x_seg = window.get(blk.seg0, (blk.m1 - 1) * HOP + FRAME_LEN)
            E = cochleagram(filterbank(x_seg, SAMPLE_RATE, cfs))
            yield blk, E[:, blk.frames]
        if k + 1 < len(blocks):
            window.drop_before(blocks[k + 1].seg0)


__all__ = ["FileStats", "signal_stats", "Block", "plan", "SampleWindow", "block_pitch", "FeatureStream",
           "Resynthesizer", "binary_mask", "separate_blocks", "feature_blocks", "separate_array", "cochleagram_blocks",
           "block_samples_for", "BLOCK_SECONDS", "PITCH_MARGIN", "PITCH_MARGINS",
           "pitch_margin_for", "GT_MEMORY", "ENV_MEMORY", "FEATURE_LEFT",
           "FEATURE_RIGHT"]
