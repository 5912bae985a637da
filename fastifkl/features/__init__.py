"""Per-unit features of the time-frequency units (channel c, frame m).

``extract(responses, f0)`` returns X of shape (M, C, D), frames first.  The default layout has
D = 195 dimensions: three blocks of 65 in the order ``delta = "none", "time", "freq"``, and
inside each block the families in the order AMS (15), RASTA-PLP (13), MFCC (31), pitch (6).
:class:`FeatureSpec` names every dimension as ``(family, index, delta)`` and selects subsets;
only the families a spec needs are computed.  :class:`Normalizer` holds per-channel
mean / std learned on training data.  Definitions: REFERENCE.md section 4 and the family
modules (:mod:`.ams`, :mod:`.rasta_plp`, :mod:`.mfcc`, :mod:`.pitch_features`, :mod:`.deltas`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import SAMPLE_RATE
from ..errors import InputError
from ..framing import n_frames
from . import ams as _ams
from . import mfcc as _mfcc
from . import pitch_features as _pitch
from . import rasta_plp as _plp
from ._common import band_energies, check_responses
from .deltas import freq_delta, time_delta
from .normalize import Normalizer, merge_moments, moments

FAMILIES: dict[str, int] = {"ams": 15, "rasta_plp": 13, "mfcc": 31, "pitch": 6}
DELTAS: tuple[str, ...] = ("none", "time", "freq")


def _full_layout() -> list[tuple[str, int, str]]:
    return [(fam, i, d) for d in DELTAS for fam, n in FAMILIES.items() for i in range(n)]


_FULL = _full_layout()
_FULL_INDEX = {dim: k for k, dim in enumerate(_FULL)}


@dataclass(frozen=True)
class FeatureSpec:
    """An ordered selection of feature dimensions.

    Every dimension is a triple ``(family, index, delta)`` with family in
    ``("ams", "rasta_plp", "mfcc", "pitch")``, ``index`` within the family and ``delta`` in
    ``("none", "time", "freq")``.  The default is all 195 dimensions in the canonical order.

    Examples
    --------
    >>> FeatureSpec().n_dims
    195
    >>> FeatureSpec.select(families=["mfcc"], deltas=["none"]).n_dims
    31
    """

    dims: tuple[tuple[str, int, str], ...] = field(default_factory=lambda: tuple(_FULL))

    def __post_init__(self):
        dims = tuple((str(f), int(i), str(d)) for f, i, d in self.dims)
        if not dims:
            raise InputError("feature spec selects no dimensions")
        for dim in dims:
            if dim not in _FULL_INDEX:
                raise InputError(f"unknown feature dimension {dim}; families {list(FAMILIES)}, deltas {list(DELTAS)}")
        if len(set(dims)) != len(dims):
            raise InputError("feature spec lists a dimension twice")
        object.__setattr__(self, "dims", dims)

    @classmethod
    def select(cls, families=None, deltas=None, indices=None) -> FeatureSpec:
        """Subset of the canonical layout.

        Parameters
        ----------
        families : iterable of str, optional (default all)
        deltas : iterable of str, optional (default all)
        indices : dict family -> iterable of int, optional (default all indices)
        """
        fams = set(FAMILIES) if families is None else set(families)
        dels = set(DELTAS) if deltas is None else set(deltas)
        bad = (fams - set(FAMILIES)) | (dels - set(DELTAS))
        if bad:
            raise InputError(f"unknown feature family or delta kind: {sorted(bad)}")
        idx = {} if indices is None else {k: set(int(i) for i in v) for k, v in indices.items()}
        dims = [d for d in _FULL if d[0] in fams and d[2] in dels and (d[0] not in idx or d[1] in idx[d[0]])]
        return cls(tuple(dims))

    @property
    def n_dims(self) -> int:
        return len(self.dims)

    @property
    def names(self) -> list[str]:
        """Readable names, e.g. ``"mfcc[3]"``, ``"ams[0]/dt"``, ``"pitch[5]/dc"``."""
        suffix = {"none": "", "time": "/dt", "freq": "/dc"}
        return [f"{f}[{i}]{suffix[d]}" for f, i, d in self.dims]

    @property
    def families(self) -> list[str]:
        """Families needed by this spec, canonical order."""
        need = {f for f, _, _ in self.dims}
        return [f for f in FAMILIES if f in need]

    @property
    def full_indices(self) -> np.ndarray:
        """Positions of the selected dimensions in the canonical 195-dim layout."""
        return np.array([_FULL_INDEX[d] for d in self.dims], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"dims": [list(d) for d in self.dims]}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        try:
            return cls(tuple(tuple(x) for x in d["dims"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed feature spec: {e}") from None


def base_features(responses: np.ndarray, f0: np.ndarray | None, sr: int = SAMPLE_RATE,
                  families=None, *, frames: slice | None = None,
                  rasta_state: _plp.RastaState | None = None) -> dict[str, np.ndarray]:
    """The undifferentiated families, each (M, C, n_family), for the families asked.

    Parameters
    ----------
    responses : ndarray, shape (C, N)
    f0 : ndarray, shape (M,) or None
        Pitch per frame of ``responses`` (needed for the pitch family only).
    families : list of str, optional (default all)
    frames : slice, optional
        Return only these frames (contiguous, step 1): the others are context, e.g. when
        ``responses`` is a block of a longer signal with margins (:mod:`fastifkl.blocks`).
        Every family but RASTA-PLP is local to a frame (given the samples around it); the RASTA
        filter runs along frames, over the returned frames only, from ``rasta_state``.
    rasta_state : features.rasta_plp.RastaState, optional
        State of the RASTA filter from the previous block of the same signal (updated in
        place); default: the returned frames start the signal.
    """
    r = check_responses(responses, sr)
    fams = list(FAMILIES) if families is None else list(families)
    m = n_frames(r.shape[1])
    lo, hi, step = (0, m, 1) if frames is None else frames.indices(m)
    if step != 1:
        raise InputError("frames must be a contiguous slice")
    keep = slice(lo, max(lo, hi))
    out: dict[str, np.ndarray] = {}
    need = [f for f in ("mfcc", "rasta_plp") if f in fams]
    if need:
        # one batched power spectrum per unit, shared by MFCC and RASTA-PLP
        mats = {"mfcc": _mfcc.mel_filterbank(), "rasta_plp": _plp.bark_filterbank()}
        energies = dict(zip(need, band_energies(r, [mats[f] for f in need])))
        if "mfcc" in energies:
            out["mfcc"] = _mfcc.from_energies(energies["mfcc"][keep])
        if "rasta_plp" in energies:
            out["rasta_plp"] = _plp.from_energies(energies["rasta_plp"][keep], sr, rasta_state)
        del energies
    if "ams" in fams:
        out["ams"] = _ams.from_envelope(_ams.envelope(r, sr), m, sr)[keep]
    if "pitch" in fams:
        if f0 is None:
            raise InputError("pitch features need f0 (one value per frame, 0 = unvoiced)")
        out["pitch"] = _pitch.from_checked(r, f0, sr)[keep]
    return out


def extract(responses: np.ndarray, f0: np.ndarray | None, sr: int = SAMPLE_RATE,
            spec: FeatureSpec | None = None, cfs: np.ndarray | None = None) -> np.ndarray:
    """Feature vectors of all time-frequency units.

    Parameters
    ----------
    responses : ndarray, shape (C, N)
        Gammatone filterbank outputs (channels first) at 16 kHz.
    f0 : ndarray, shape (M,) or None
        Pitch in Hz per frame (0 = unvoiced), ``M = 1 + (N - 320) // 160``; may be None when
        the spec has no pitch features.
    sr : int
        Sample rate, must be 16000.
    spec : FeatureSpec, optional
        Dimensions to return (default all 195).
    cfs : ndarray, shape (C,), optional
        Channel centre frequencies; accepted for API stability (no current family needs them,
        all are computed from the responses alone).

    Returns
    -------
    X : ndarray, shape (M, C, D), float64
    """
    spec = FeatureSpec() if spec is None else spec
    if cfs is not None and np.asarray(cfs).shape != (np.asarray(responses).shape[0],):
        raise InputError("cfs must have one centre frequency per channel of responses")
    return assemble(base_features(responses, f0, sr, spec.families), spec)


def assemble(base: dict[str, np.ndarray], spec: FeatureSpec | None = None, *,
             previous: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The feature vectors of ``spec`` from the undifferentiated families of :func:`base_features`
    (the deltas are computed here); ``extract`` is ``assemble(base_features(...), spec)``.

    Parameters
    ----------
    base : dict family -> ndarray, shape (M, C, n_family)
        At least the families ``spec`` needs (others are ignored); ``base`` is not modified,
        so one dict can be assembled several times (e.g. with the pitch family of another f0).
    spec : FeatureSpec, optional
        Dimensions to return (default all 195).
    previous : dict family -> ndarray, shape (C, n_family), optional
        The base features of the frame before the first of ``base`` when ``base`` is a block of
        a longer signal's frames (the time delta of the first frame is taken against it);
        default: ``base`` starts the signal (time delta 0 at its first frame).

    Returns
    -------
    X : ndarray, shape (M, C, D), float64
    """
    spec = FeatureSpec() if spec is None else spec
    missing = [f for f in spec.families if f not in base]
    if missing:
        raise InputError(f"base features lack the families {missing}")
    m, c = base[spec.families[0]].shape[:2]
    # base block in canonical order, frames first: (M, C, 65-ish)
    fams = spec.families
    offs = {}
    o = 0
    for f in fams:
        offs[f] = o
        o += FAMILIES[f]
    full = spec.dims == tuple(_FULL)
    x = np.empty((m, c, 3 * o)) if full else None
    b = x[:, :, :o] if full else np.empty((m, c, o))
    for f in fams:
        b[:, :, offs[f]: offs[f] + FAMILIES[f]] = base[f]
    prev = None
    if previous is not None:
        lacking = [f for f in fams if f not in previous]
        if lacking:
            raise InputError(f"previous frame lacks the families {lacking}")
        prev = np.empty((c, o))
        for f in fams:
            prev[:, offs[f]: offs[f] + FAMILIES[f]] = previous[f]
    kinds = {d for _, _, d in spec.dims}
    if full:
        # the three blocks are written straight into the output
        time_delta(b, out=x[:, :, o: 2 * o], previous=prev)
        freq_delta(b, out=x[:, :, 2 * o:])
        return x
    blocks = {"none": b}
    if "time" in kinds:
        blocks["time"] = time_delta(b, previous=prev)
    if "freq" in kinds:
        blocks["freq"] = freq_delta(b)
    x = np.empty((m, c, spec.n_dims))
    for k, (f, i, d) in enumerate(spec.dims):
        x[:, :, k] = blocks[d][:, :, offs[f] + i]
    return x


__all__ = ["extract", "assemble", "base_features", "FeatureSpec", "Normalizer", "moments", "merge_moments", "FAMILIES",
           "DELTAS"]
