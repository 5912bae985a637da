"""The ``.fkl`` model file: a zip holding ``meta.json`` and ``.npy`` arrays.

Written atomically and byte-for-byte deterministically (fixed zip timestamps, sorted entries,
``json.dumps(sort_keys=True)``).  Reading validates the container, the format version, and the
dtype/shape of every array against what the caller declares, and refuses anything else with
one clear line (:class:`~fastifkl.errors.ModelError`).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .audio import atomic_path
from .errors import ModelError

FORMAT = "fastifkl-model"
FORMAT_VERSION = 1
_EPOCH = (2020, 1, 1, 0, 0, 0)


def write(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON-able) and ``arrays`` (name -> ndarray) to ``path`` atomically."""
    p = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    with atomic_path(p) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            info = zipfile.ZipInfo("meta.json", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, json.dumps(meta, sort_keys=True, indent=1))
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())
    return p


def read(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a model file; raises :class:`ModelError` naming the file on any problem."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: model file not found")
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            if "meta.json" not in names:
                raise ModelError(f"{p}: not a fastifkl model (no meta.json)")
            try:
                meta = json.loads(zf.read("meta.json"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ModelError(f"{p}: corrupt model file (meta.json is not valid JSON)") from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ModelError(f"{p}: not a fastifkl model file")
            ver = meta.get("format_version")
            if ver != FORMAT_VERSION:
                made_by = meta.get("package_version", "?")
                newer = isinstance(ver, int) and ver > FORMAT_VERSION
                raise ModelError(
                    f"{p}: model format version {ver} (written by fastifkl {made_by}) is "
                    f"{'newer than' if newer else 'not'} the version this fastifkl reads ({FORMAT_VERSION})"
                    + ("; upgrade fastifkl" if newer else "; retrain the model")
                )
            arrays = {}
            for n in names:
                if not n.endswith(".npy"):
                    continue
                with zf.open(n) as fh:
                    arrays[n[:-4]] = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
    except ModelError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile, KeyError) as exc:
        raise ModelError(f"{p}: corrupt or truncated model file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return meta, arrays


def expect(path, arrays: dict, name: str, dtype, shape: tuple) -> np.ndarray:
    """Return ``arrays[name]`` after checking its dtype kind and shape (None = any length)."""
    if name not in arrays:
        raise ModelError(f"{path}: model file lacks array '{name}'")
    a = arrays[name]
    if np.dtype(a.dtype).kind != np.dtype(dtype).kind:
        raise ModelError(f"{path}: array '{name}' has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if len(a.shape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ModelError(f"{path}: array '{name}' has shape {a.shape}, expected {shape}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelError(f"{path}: array '{name}' holds NaN or infinite values")
    return a
