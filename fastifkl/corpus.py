"""Corpus manifests and deterministic mixture sets.

A *corpus* directory may carry a ``MANIFEST.tsv`` (columns ``file kind label split ...``, paths
relative to the manifest's directory), found in the directory itself or its parent.  Without
one, every audio file below the directory is used and a noise's label is its file stem.

A *mixture set* is a directory with ``manifest.jsonl``: one JSON object per mixture (id,
speech file, noise file, noise offset, SNR, split, domain label, seed).  Every mixture, its
premixed signals and its IBM are regenerated bit-for-bit from those fields; writing the wavs
is optional.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import SAMPLE_RATE
from .audio import AUDIO_SUFFIXES, Mixture, atomic_path, load, mix_at_snr
from .errors import InputError

MANIFEST_TSV = "MANIFEST.tsv"
SET_MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Item:
    """One audio file of a corpus: absolute path, kind (speech/noise), label, split."""

    path: Path
    kind: str
    label: str
    split: str


def _find_manifest(directory: Path) -> Path | None:
    for d in [directory, *list(directory.parents)[:2]]:
        m = d / MANIFEST_TSV
        if m.is_file():
            return m
    return None


def _audio_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan(directory: str | os.PathLike, kind: str) -> list[Item]:
    """Audio items of ``kind`` ("speech" or "noise") under ``directory``, sorted by path.

    Uses the ``MANIFEST.tsv`` of the directory or an ancestor (up to two levels) when there is one (only rows of
    that kind lying under ``directory``), else every audio file (label = file stem, split "").
    """
    d = Path(directory).resolve()
    if not d.is_dir():
        raise InputError(f"{directory}: not a directory")
    man = _find_manifest(d)
    items: list[Item] = []
    if man is not None:
        root = man.parent
        with open(man, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                if row.get("kind", kind) != kind:
                    continue
                p = (root / row["file"]).resolve()
                if d != p and d not in p.parents:
                    continue
                items.append(Item(p, kind, row.get("label") or p.stem, row.get("split") or ""))
    else:
        items = [Item(p, kind, p.stem, "") for p in _audio_files(d)]
    if not items:
        raise InputError(f"{directory}: no {kind} audio files found")
    return sorted(items, key=lambda it: str(it.path))


def select_speech(items: list[Item], splits: list[str] | None) -> list[Item]:
    """Utterances whose split is in ``splits`` (all when None)."""
    if not splits:
        return items
    out = [it for it in items if it.split in splits]
    if not out:
        have = sorted({it.split for it in items})
        raise InputError(f"no utterances with split in {splits}; available splits: {have}")
    return out


def select_noises(items: list[Item], names: list[str] | None) -> list[Item]:
    """Noise files whose label (or file stem) is in ``names``, in the order given."""
    if not names:
        return items
    out = []
    for name in names:
        hit = [it for it in items if it.label == name or it.path.stem == name]
        if not hit:
            have = sorted({it.label for it in items})
            raise InputError(f"noise '{name}' not found; available: {', '.join(have)}")
        out.append(hit[0])
    return out


@dataclass(frozen=True)
class Entry:
    """One mixture of a set; ``speech``/``noise`` paths are relative to the set directory."""

    id: str
    speech: str
    noise: str
    noise_label: str
    offset: int
    snr_db: float
    split: str
    domain: str
    seed: int
    sr: int = SAMPLE_RATE


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> np.ndarray:
    x = load(path)
    x.setflags(write=False)
    return x


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: no such file (referenced by the mixture set)")
    return _load_cached(str(path), path.stat().st_mtime)


def _draw_offset(noise: np.ndarray, n: int, rng: np.random.Generator, name) -> int:
    """A random noise offset whose segment is not (near-)silent.

    Some recordings hold silent stretches (an alarm between rings); a segment there cannot be
    scaled to an SNR.  Offsets are redrawn from the same seeded generator until the segment
    carries at least 1 % of the file's average power (deterministic for a given seed).
    """
    from .audio import noise_segment

    mean_power = float(np.mean(noise * noise))
    if mean_power <= 0:
        raise InputError(f"{name}: noise file is silent")
    for _ in range(200):
        off = int(rng.integers(0, noise.size - n + 1)) if noise.size >= n else int(rng.integers(0, noise.size))
        seg = noise_segment(noise, n, off)
        if float(np.mean(seg * seg)) >= 0.01 * mean_power:
            return off
    raise InputError(f"{name}: found no segment of {n} samples with audible noise")


class MixtureSet:
    """A list of mixtures regenerated on demand from ``manifest.jsonl``.

    Parameters
    ----------
    directory : path-like
        The set directory.
    entries : list of Entry
    """

    def __init__(self, directory: str | os.PathLike, entries: list[Entry]):
        self.directory = Path(directory)
        self.entries = list(entries)

    # ------------------------------------------------------------------ construction / io
    @classmethod
    def create(
        cls,
        speech: list[Item],
        noises: list[Item],
        directory: str | os.PathLike,
        *,
        snr_db: float | list[float] = -5.0,
        seed: int = 0,
        draw_snr: bool = False,
        append: bool = False,
    ) -> MixtureSet:
        """Pair every utterance with every noise; offsets drawn from ``default_rng([seed, k])``.

        Parameters
        ----------
        snr_db : float or list of floats
            One SNR; or several: every pair is mixed at each of them (ids get an ``__<snr>dB``
            suffix), or, with ``draw_snr``, at one of them drawn uniformly from
            ``default_rng([seed, k, 1])`` (the mixture count of a single SNR).
        append : bool
            Add the mixtures to the set already in ``directory`` (its manifest is kept; an id
            that is already there is an error) instead of starting a new set.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        snrs = [float(v) for v in np.atleast_1d(snr_db)]
        if not snrs:
            raise InputError("no SNR given")
        several = len(snrs) > 1 and not draw_snr
        entries = list(cls.load(d).entries) if append else []
        seen = {e.id for e in entries}
        k = 0
        for it in speech:
            s = _load(it.path)
            for nz in noises:
                v = _load(nz.path)
                if draw_snr:
                    pair_snrs = [snrs[int(np.random.default_rng([seed, k, 1]).integers(len(snrs)))]]
                else:
                    pair_snrs = snrs
                for snr in pair_snrs:
                    offset = _draw_offset(v, s.size, np.random.default_rng([seed, k]), nz.path)
                    eid = f"{it.path.stem}__{nz.label}" + (f"__{snr:+g}dB" if several else "")
                    if eid in seen:
                        raise InputError(f"{d}: mixture '{eid}' is already in the set")
                    seen.add(eid)
                    entries.append(
                        Entry(
                            id=eid,
                            speech=os.path.relpath(it.path, d.resolve()),
                            noise=os.path.relpath(nz.path, d.resolve()),
                            noise_label=nz.label,
                            offset=offset,
                            snr_db=snr,
                            split=it.split,
                            domain=nz.label,
                            seed=int(seed),
                        )
                    )
                    k += 1
        ms = cls(d, entries)
        ms.write_manifest()
        return ms

    def write_manifest(self) -> Path:
        path = self.directory / SET_MANIFEST
        with atomic_path(path) as tmp:
            with open(tmp, "w") as fh:
                for e in self.entries:
                    fh.write(json.dumps(asdict(e), sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> MixtureSet:
        d = Path(directory)
        path = d / SET_MANIFEST
        if not path.is_file():
            raise InputError(f"{directory}: not a mixture set (no {SET_MANIFEST}; create one with 'fastifkl mix')")
        entries = []
        with open(path) as fh:
            for ln, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entries.append(Entry(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as exc:
                    raise InputError(f"{path}:{ln}: malformed mixture entry ({exc})") from None
        if not entries:
            raise InputError(f"{path}: mixture set is empty")
        ms = cls(d, entries)
        for e in entries:  # fail early, with the file named, if anything is missing
            for rel in (e.speech, e.noise):
                p = ms.resolve(rel)
                if not p.is_file():
                    raise InputError(f"{directory}: mixture '{e.id}' needs {p}, which is missing")
        return ms

    def digest(self) -> str:
        """sha256 of the manifest lines (identifies the training corpus in a model file)."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(json.dumps(asdict(e), sort_keys=True).encode())
        return h.hexdigest()

    # ------------------------------------------------------------------ access
    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else (self.directory / p).resolve()

    def select(self, splits: list[str] | None = None, domains: list[str] | None = None) -> MixtureSet:
        ents = [
            e
            for e in self.entries
            if (not splits or e.split in splits) and (not domains or e.domain in domains)
        ]
        return MixtureSet(self.directory, ents)

    @property
    def domains(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.domain, None)
        return list(seen)

    @property
    def splits(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.split, None)
        return list(seen)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def mixture(self, entry: Entry) -> Mixture:
        """Regenerate one mixture bit-for-bit: (mixture, speech, scaled noise, offset).

        The utterance's mean (DC offset) is removed before mixing.  Some recordings carry a
        large constant offset (the corpus's real IEEE files: -0.04 to -0.28, up to 93 % of a
        file's energy); it is inaudible and the filterbank (80 Hz and up) ignores it, but the
        SNR of the mixing would count it as speech energy, so a nominal -5 dB mixture would
        hold the audible speech several dB lower.  ``speech`` is the DC-free utterance.
        """
        s = _load(self.resolve(entry.speech))
        v = _load(self.resolve(entry.noise))
        return mix_at_snr(s - s.mean(), v, entry.snr_db, offset=entry.offset)

    def write_wavs(self, subdir: str = "wav") -> None:
        """Write mixture, premixed speech and premixed noise wavs of every entry (atomically)."""
        from .audio import save

        out = self.directory / subdir
        for e in self.entries:
            mx = self.mixture(e)
            save(out / f"{e.id}.mix.wav", mx.mixture)
            save(out / f"{e.id}.speech.wav", mx.speech)
            save(out / f"{e.id}.noise.wav", mx.noise)
