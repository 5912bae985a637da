"""The ``.fkl`` model file: a zip holding ``meta.json`` and ``.npy`` arrays.

Written atomically and byte-for-byte deterministically (fixed zip timestamps, sorted entries,
``json.dumps(sort_keys=True)``).

Model files come from other people, so reading one is safe: nothing is allocated or inflated
on the file's word alone. :func:`read` refuses, with one line naming the file
(:class:`~fastifkl.errors.ModelError`, "corrupt model file (...)"), before allocating:

- a container that is not a zip, truncated, encrypted, compressed other than stored/deflated,
  or with duplicate entries;
- declared (uncompressed) sizes beyond what the file could hold: an entry may not inflate more
  than ``MAX_RATIO`` (1032, deflate's largest possible ratio, plus a small allowance) times
  its stored size, and the entries read may not declare more than ``MAX_BYTES`` (1 GiB) in
  all (a zip bomb is refused before it is inflated);
- a ``meta.json`` over ``MAX_META_BYTES``, not JSON, or of another format or version;
- an ``.npy`` entry whose header (read with a bounded read, parsed by numpy's header parser)
  has an object, structured or non-numeric dtype, a negative or non-integer shape, or whose
  ``prod(shape) * itemsize`` is not exactly the entry's declared size minus its header;
- an array that is missing or whose shape and dtype kind do not fit the model's own metadata
  (:func:`layout`: ``cfs`` gives the channels, ``n_dims`` the feature size).

Only then are the array bytes read, with a read of at most the declared size plus one byte
(a member longer or shorter than declared is refused; zipfile also checks its CRC).
``allow_pickle`` is never used.  :func:`expect` then checks what only the values can show
(NaN or infinite entries).
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .audio import atomic_path
from .errors import ModelError

FORMAT = "fastifkl-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Format 2 (issue 11) adds the per-channel Platt calibration (array ``platt``, (C, 2) = A, B,
present when ``meta["calibration"]`` is) and the level normalisation (``params.level_rms``).
Format-1 files still load: :class:`~fastifkl.separator.Separator` reads them without level
normalisation and with a fixed fallback sigmoid."""
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


MAX_BYTES = 1 << 30  # total uncompressed size of the entries read: 1 GiB (the default model: 23 MB)
MAX_META_BYTES = 16 << 20  # meta.json (the default model's: 21 kB)
MAX_RATIO = 1032  # deflate's largest inflation ratio (a 258-byte match per 2-bit code)
_SLACK = 1024  # plus this many bytes per entry (headers, tiny entries)
_CHUNK = 1 << 20  # bytes per read of array data
_MAX_HEADER = 10000  # bytes of an .npy header (numpy's own default limit)
_MAX_ENTRIES = 100000
_MAX_CHANNELS = 4096
_MAX_DIMS = 1 << 20


def read(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES,
         expected: Callable[[Path, dict], dict[str, tuple[str, tuple]]] | None = None,
         ) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a model file safely; :class:`ModelError` naming the file on any problem.

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Bound on the total uncompressed size of the entries read (default 1 GiB).
    expected : callable, optional
        ``expected(path, meta)`` -> the arrays the file must hold, name -> (dtype kind, shape),
        derived from (and checking) its metadata; default :func:`layout` (a separator model).
        Other file kinds (the pitch network, :mod:`fastifkl.pitch_net`) pass their own.

    Returns
    -------
    meta : dict
        The parsed ``meta.json``.
    arrays : dict of str -> ndarray
        The arrays :func:`layout` names for this metadata, checked against it.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: model file not found")
    try:
        size = p.stat().st_size
        with zipfile.ZipFile(p) as zf:
            infos = _directory(p, zf, size)
            if "meta.json" not in infos:
                raise ModelError(f"{p}: not a fastifkl model (no meta.json)")
            meta = _read_meta(p, zf, infos["meta.json"])
            want = (layout if expected is None else expected)(p, meta)
            missing = [n for n in want if f"{n}.npy" not in infos]
            if missing:
                raise ModelError(f"{p}: corrupt model file (array '{missing[0]}' is missing"
                                 + (f", and {len(missing) - 1} more)" if len(missing) > 1 else ")"))
            total = infos["meta.json"].file_size + sum(infos[f"{n}.npy"].file_size for n in want)
            bound = min(max_bytes, MAX_RATIO * size + _SLACK)
            if total > bound:
                limit = f"a {size}-byte file can hold" if bound < max_bytes else f"the limit of {max_bytes} bytes"
                raise ModelError(f"{p}: corrupt model file (its entries declare {total} bytes uncompressed, "
                                 f"more than {limit})")
            # every header first: nothing is allocated until all of them fit the metadata
            headers = {n: _read_header(p, zf, infos[f"{n}.npy"], n, want[n]) for n in want}
            _check_lengths(p, headers)
            arrays = {n: _read_data(p, zf, infos[f"{n}.npy"], n, *headers[n]) for n in want}
    except ModelError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile, KeyError, RuntimeError,
            NotImplementedError, OverflowError, zlib.error) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"{p}: corrupt or truncated model file ({type(exc).__name__}: {detail})") from None
    return meta, arrays


def _directory(p: Path, zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The zip's entries by name, after the checks that need no reading."""
    infos = zf.infolist()
    if len(infos) > _MAX_ENTRIES:
        raise ModelError(f"{p}: corrupt model file ({len(infos)} entries)")
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if name in out:
            raise ModelError(f"{p}: corrupt model file (entry '{name}' appears twice)")
        out[name] = info
        if info.flag_bits & 0x1:
            raise ModelError(f"{p}: corrupt model file (entry '{name}' is encrypted)")
        if info.compress_type == zipfile.ZIP_STORED:
            ok = info.file_size == info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            ok = info.file_size <= MAX_RATIO * info.compress_size + _SLACK
        else:
            raise ModelError(f"{p}: corrupt model file (entry '{name}' uses compression method {info.compress_type})")
        if not ok or info.compress_size > size:
            raise ModelError(f"{p}: corrupt model file (entry '{name}' declares {info.file_size} bytes from "
                             f"{info.compress_size} stored bytes)")
    return out


def _read_exact(zf: zipfile.ZipFile, info: zipfile.ZipInfo, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes of an entry (never more than ``n + 1``); short or long -> ValueError."""
    with zf.open(info) as fh:
        data = fh.read(n + 1)
    if len(data) != n:
        raise ValueError(f"{what} holds {'more' if len(data) > n else len(data)} bytes, declared {n}")
    return data


def _read_meta(p: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    if info.file_size > MAX_META_BYTES:
        raise ModelError(f"{p}: corrupt model file (meta.json declares {info.file_size} bytes)")
    raw = _read_exact(zf, info, info.file_size, "meta.json")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ModelError(f"{p}: corrupt model file (meta.json is not valid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{p}: not a fastifkl model file")
    ver = meta.get("format_version")
    if ver not in READABLE_VERSIONS or isinstance(ver, bool):
        made_by = meta.get("package_version", "?")
        newer = isinstance(ver, int) and not isinstance(ver, bool) and ver > FORMAT_VERSION
        raise ModelError(
            f"{p}: model format version {ver} (written by fastifkl {made_by}) is "
            f"{'newer than' if newer else 'not'} the versions this fastifkl reads "
            f"({', '.join(str(v) for v in READABLE_VERSIONS)})"
            + ("; upgrade fastifkl" if newer else "; retrain the model")
        )
    return meta


def layout(path, meta: dict) -> dict[str, tuple[str, tuple]]:
    """The arrays a model holds, from its metadata: name -> (dtype kind, shape).

    ``None`` in a shape is a per-channel point count, the same for ``chNNN_points`` (rows)
    and ``chNNN_coef``; :func:`read` checks that they agree.
    """
    cfs, n_dims = meta.get("cfs"), meta.get("n_dims")
    if (not isinstance(cfs, list) or not 1 <= len(cfs) <= _MAX_CHANNELS
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in cfs)):
        raise ModelError(f"{path}: corrupt model file (meta.json 'cfs' is not a list of 1 to {_MAX_CHANNELS} numbers)")
    if not isinstance(n_dims, int) or isinstance(n_dims, bool) or not 1 <= n_dims <= _MAX_DIMS:
        raise ModelError(f"{path}: corrupt model file (meta.json 'n_dims' is {n_dims!r})")
    n_ch = len(cfs)
    out = {"mean": ("f", (n_ch, n_dims)), "std": ("f", (n_ch, n_dims)), "bias": ("f", (n_ch,)), "sigma": ("f", (n_ch,))}
    if meta.get("format_version", 1) >= 2 and meta.get("calibration") is not None:
        out["platt"] = ("f", (n_ch, 2))
    for c in range(n_ch):
        out[f"ch{c:03d}_points"] = ("f", (None, n_dims))
        out[f"ch{c:03d}_coef"] = ("f", (None,))
    return out


def _read_header(p: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, want: tuple[str, tuple]):
    """(dtype, shape, fortran_order, header length) of an .npy entry, checked before any data is read."""
    kind, shape_want = want
    with zf.open(info) as fh:
        head = fh.read(10)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise ModelError(f"{p}: corrupt model file (entry '{name}.npy' is not an .npy array)")
        major = head[6]
        if major == 1:
            hlen = int.from_bytes(head[8:10], "little")
            prefix = head
        elif major == 2:
            more = fh.read(2)
            prefix = head + more
            hlen = int.from_bytes(prefix[8:12], "little")
        else:
            raise ModelError(f"{p}: corrupt model file (entry '{name}.npy' has .npy format version {major})")
        if hlen > _MAX_HEADER or len(prefix) + hlen > info.file_size:
            raise ModelError(f"{p}: corrupt model file (entry '{name}.npy' declares a {hlen}-byte header)")
        header = fh.read(hlen)
    if len(header) != hlen:
        raise ModelError(f"{p}: corrupt or truncated model file (entry '{name}.npy' ends inside its header)")
    buf = io.BytesIO(prefix + header)
    version = np.lib.format.read_magic(buf)
    try:
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(buf, max_header_size=_MAX_HEADER)
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted header (numpy's parser raises
        # ValueError, SyntaxError, tokenize.TokenError, TypeError, ...) means a corrupt file
        raise ModelError(f"{p}: corrupt model file (entry '{name}.npy' has a bad header: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise ModelError(f"{p}: corrupt model file (array '{name}' has dtype {dtype}, which a model never holds)")
    if dtype.kind != kind:
        raise ModelError(f"{p}: corrupt model file (array '{name}' has dtype {dtype}, expected a "
                         f"{'float' if kind == 'f' else kind} dtype)")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ModelError(f"{p}: corrupt model file (array '{name}' has shape {shape})")
    if len(shape) != len(shape_want) or any(w is not None and w != d for w, d in zip(shape_want, shape)):
        dims = ["n" if w is None else str(w) for w in shape_want]
        want_txt = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        raise ModelError(f"{p}: corrupt model file (array '{name}' has shape {shape}, expected {want_txt})")
    nbytes = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    if nbytes != info.file_size - len(prefix) - hlen:
        raise ModelError(f"{p}: corrupt model file (array '{name}' claims shape {shape} of {dtype} = {nbytes} bytes, "
                         f"but its entry holds {info.file_size - len(prefix) - hlen})")
    return dtype, shape, fortran, len(prefix) + hlen


def _check_lengths(p: Path, headers: dict) -> None:
    """Each channel's points and coefficients have the same length."""
    for name, (_, shape, _, _) in headers.items():
        if name.endswith("_coef"):
            pts = headers.get(name[: -len("_coef")] + "_points")
            if pts is not None and pts[1][0] != shape[0]:
                raise ModelError(f"{p}: corrupt model file (array '{name}' has {shape[0]} entries for "
                                 f"{pts[1][0]} points)")


def _read_data(p: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, dtype, shape, fortran,
               hsize) -> np.ndarray:
    """The array of an entry whose header passed :func:`_read_header`: read straight into it, in
    chunks (peak memory: the array plus one chunk), never past its declared size plus one byte."""
    count = math.prod(shape)
    a = np.empty(count, dtype=dtype)
    view = memoryview(a).cast("B") if a.nbytes else memoryview(bytearray(0))
    with zf.open(info) as fh:
        if len(fh.read(hsize)) != hsize:
            raise ValueError(f"entry '{name}.npy' ends inside its header")
        got = 0
        while got < len(view):
            chunk = fh.read(min(_CHUNK, len(view) - got))
            if not chunk:
                raise ValueError(f"entry '{name}.npy' holds {got} bytes of data, its header declares {len(view)}")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        if fh.read(1):
            raise ValueError(f"entry '{name}.npy' holds more data than its header declares")
    if fortran:
        return np.ascontiguousarray(a.reshape(shape[::-1]).T)
    return a.reshape(shape)


def expect(path, arrays: dict, name: str, dtype, shape: tuple) -> np.ndarray:
    """Return ``arrays[name]`` after checking its dtype kind, shape (None = any length) and values."""
    if name not in arrays:
        raise ModelError(f"{path}: corrupt model file (array '{name}' is missing)")
    a = arrays[name]
    if np.dtype(a.dtype).kind != np.dtype(dtype).kind:
        raise ModelError(f"{path}: corrupt model file (array '{name}' has dtype {a.dtype}, expected {np.dtype(dtype)})")
    if len(a.shape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ModelError(f"{path}: corrupt model file (array '{name}' has shape {a.shape}, expected {shape})")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelError(f"{path}: corrupt model file (array '{name}' holds NaN or infinite values)")
    return a
