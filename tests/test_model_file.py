"""Safe model loading: a model file that lies is refused in one line before anything it claims
is allocated or inflated (crafted headers, zip bombs, truncation, foreign files, bad metadata)."""
import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from fastifkl import model_file
from fastifkl.errors import ModelError
from fastifkl.separator import Separator
from tiny_model import tiny_model

MB = 1 << 20


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "good.fkl", n_channels=3, n_points=5)


def npy_bytes(a) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, np.asarray(a), allow_pickle=False)
    return b.getvalue()


def npy_header(shape, descr="<f8", fortran=False) -> bytes:
    """An .npy v1.0 header only (what a file claiming ``shape`` starts with)."""
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return b.getvalue()


def rewrite(src, dst, replace=None, drop=(), meta_raw=None):
    """Copy the zip ``src`` to ``dst`` with some entries' bytes replaced or dropped."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            buf = zin.read(item.filename)
            if item.filename == "meta.json" and meta_raw is not None:
                buf = meta_raw(buf)
            zout.writestr(item, replace.get(item.filename, buf))
    return dst


def raw_zip(path, entries):
    """A zip written by hand: entries are (name, method, payload, crc, uncompressed size), so the
    directory can declare what the test wants (zipfile itself would not write a lie)."""
    out, central = bytearray(), bytearray()
    for name, method, payload, crc, usize in entries:
        nb = name.encode()
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(payload), usize, len(nb), 0)
        out += nb + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(payload), usize,
                               len(nb), 0, 0, 0, 0, 0, off) + nb
    cd = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd, 0)
    path.write_bytes(bytes(out))
    return path


def peak_bytes(fn):
    """Peak traced allocation (bytes) while ``fn()`` runs (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def refused(path, match="corrupt model file", **kw):
    with pytest.raises(ModelError, match=match) as ei:
        model_file.read(path, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg
    return msg


# ---- the good file -------------------------------------------------------------------------
def test_round_trip_and_layout(good):
    meta, arrays = model_file.read(good)
    assert set(arrays) == set(model_file.layout(good, meta))
    assert arrays["mean"].shape == (3, 195) and arrays["ch002_points"].shape == (7, 195)
    assert arrays["ch002_points"].dtype == np.float16 and arrays["ch002_points"].flags.writeable
    with zipfile.ZipFile(good) as z:  # the same values numpy's own reader gives
        for name, a in arrays.items():
            ref = np.lib.format.read_array(io.BytesIO(z.read(f"{name}.npy")), allow_pickle=False)
            assert a.dtype == ref.dtype and np.array_equal(a, ref)
    sep = Separator.load(good)
    assert len(sep.points_) == 3


def test_fortran_order_entry_is_read_right(good, tmp_path):
    a = np.asfortranarray(np.arange(3 * 195, dtype=np.float64).reshape(3, 195))
    f = rewrite(good, tmp_path / "f.fkl", {"mean.npy": npy_bytes(a)})
    _, arrays = model_file.read(f)
    np.testing.assert_array_equal(arrays["mean"], a)


# ---- headers that lie ----------------------------------------------------------------------
@pytest.mark.parametrize("entry, shape", [("ch000_points.npy", (10**11, 195)), ("ch001_coef.npy", (10**11,)),
                                          ("ch000_points.npy", (5_000_000, 195))])
def test_header_claiming_a_huge_shape_is_refused_without_allocating(good, tmp_path, entry, shape):
    # a valid header claiming 156 TB (or 7.8 GB, a lie small enough to be allocated) + a few bytes
    evil = rewrite(good, tmp_path / "evil.fkl", {entry: npy_header(shape) + b"\0" * 64})
    claimed = np.prod(shape, dtype=np.float64) * 8
    peak = peak_bytes(lambda: pytest.raises(ModelError, model_file.read, evil))
    assert peak < 4 * MB < claimed / 1000
    want = f"array '{entry[:-4]}' claims shape {shape} of float64 = {int(claimed)} bytes, but its entry holds 64"
    assert want in refused(evil)


def test_header_shape_must_fit_the_metadata(good, tmp_path):
    evil = rewrite(good, tmp_path / "bias.fkl", {"bias.npy": npy_bytes(np.zeros(10**5))})
    assert "array 'bias' has shape (100000,), expected (3,)" in refused(evil)
    evil = rewrite(good, tmp_path / "dims.fkl", {"ch000_points.npy": npy_bytes(np.zeros((5, 194), np.float16))})
    assert "expected (n, 195)" in refused(evil)
    evil = rewrite(good, tmp_path / "coef.fkl", {"ch001_coef.npy": npy_bytes(np.zeros(5))})
    assert "'ch001_coef' has 5 entries for 6 points" in refused(evil)
    evil = rewrite(good, tmp_path / "neg.fkl", {"bias.npy": npy_header((-3,)) + b"\0" * 24})
    assert "array 'bias' has shape (-3,)" in refused(evil)


@pytest.mark.parametrize("payload, why", [
    (npy_header((3,), descr="|O") + b"\0" * 24, "dtype object"),
    (npy_bytes(np.zeros(3, dtype=[("a", "<f8")])), "which a model never holds"),
    (npy_bytes(np.zeros(3, dtype=np.int64)), "expected a float dtype"),
    (npy_bytes(np.array(["a", "b", "c"])), "which a model never holds"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b" " * 64, "header"),  # a 65535-byte header length
    (b"\x93NUMPY\x03\x00" + b"\0" * 64, ".npy format version 3"),
    (b"not an npy file at all", "not an .npy array"),
], ids=["object", "structured", "int", "str", "huge-header", "npy-v3", "not-npy"])
def test_bad_dtypes_and_headers(good, tmp_path, payload, why):
    evil = rewrite(good, tmp_path / "dt.fkl", {"bias.npy": payload})
    assert why in refused(evil)


def test_entry_longer_or_shorter_than_its_header_says(good, tmp_path):
    long = rewrite(good, tmp_path / "long.fkl", {"bias.npy": npy_bytes(np.zeros(3)) + b"\0" * 8})
    assert "entry holds 32" in refused(long)
    short = rewrite(good, tmp_path / "short.fkl", {"bias.npy": npy_bytes(np.zeros(3))[:-8]})
    assert "entry holds 16" in refused(short)


def test_nan_values_are_refused_by_expect(good, tmp_path):
    evil = rewrite(good, tmp_path / "nan.fkl", {"sigma.npy": npy_bytes(np.array([1.0, np.nan, 2.0]))})
    _, arrays = model_file.read(evil)  # the container is sound ...
    with pytest.raises(ModelError, match="corrupt model file .array 'sigma' holds NaN"):
        Separator.load(evil)  # ... the values are not
    evil = rewrite(good, tmp_path / "inf.fkl", {"ch001_coef.npy": npy_bytes(np.r_[np.zeros(5), np.inf])})
    with pytest.raises(ModelError, match="'ch001_coef' holds NaN or infinite"):
        Separator.load(evil)


# ---- zip containers that lie ---------------------------------------------------------------
def bomb_entry(header: bytes, n_zero_mib: int):
    """A real deflate stream: ``header`` then ``n_zero_mib`` MiB of zeros, from ~1 kB per MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(MB)) + c.flush(zlib.Z_FULL_FLUSH)  # self-contained: repeatable
    stream = head + block * n_zero_mib + c.flush()
    crc = zlib.crc32(header)
    zero = bytes(MB)
    for _ in range(n_zero_mib):
        crc = zlib.crc32(zero, crc)
    return stream, crc & 0xFFFFFFFF, len(header) + n_zero_mib * MB


def bomb_model(path, n_zero_mib):
    """A format-1 model (one channel, one feature) whose points and coefficients are each
    ``n_zero_mib`` MiB of deflated zeros: a valid file that inflates ~1000-fold."""
    meta = json.dumps({"format": "fastifkl-model", "format_version": 1, "cfs": [1000.0], "n_dims": 1}).encode()
    entries = [("meta.json", 0, meta, zlib.crc32(meta), len(meta))]
    for name, a in (("bias", np.ones(1)), ("sigma", np.ones(1)), ("mean", np.ones((1, 1))), ("std", np.ones((1, 1)))):
        b = npy_bytes(a)
        entries.append((f"{name}.npy", 0, b, zlib.crc32(b), len(b)))
    n = n_zero_mib * MB // 8
    for name, shape in (("ch000_points", (n, 1)), ("ch000_coef", (n,))):
        entries.append((f"{name}.npy", 8, *bomb_entry(npy_header(shape), n_zero_mib)))
    return raw_zip(path, entries)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    bomb = bomb_model(tmp_path / "bomb.fkl", 600)  # 1.26 GB inflated from a 1.2 MB file
    assert bomb.stat().st_size < 2 * MB
    with zipfile.ZipFile(bomb) as z:
        assert z.getinfo("ch000_points.npy").file_size > 600 * MB  # honest directory, valid stream
        with z.open("ch000_coef.npy") as fh:
            assert fh.read(MB)[-8:] == bytes(8)  # a real stream of zeros behind an honest header
    peak = peak_bytes(lambda: pytest.raises(ModelError, model_file.read, bomb))
    assert peak < 4 * MB
    assert "more than the limit of 1073741824 bytes" in refused(bomb)


def test_small_bomb_and_the_bound_parameter(tmp_path):
    bomb = bomb_model(tmp_path / "small.fkl", 12)  # 24 MiB of zeros from ~25 kB: a valid model
    meta, arrays = model_file.read(bomb)
    assert arrays["ch000_points"].shape == (12 * MB // 8, 1) and not arrays["ch000_points"].any()
    peak = peak_bytes(lambda: pytest.raises(ModelError, model_file.read, bomb, max_bytes=8 * MB))
    assert peak < 2 * MB
    refused(bomb, max_bytes=8 * MB)


def test_directory_declaring_more_than_deflate_can_give(tmp_path):
    # the stored stream says 1 MiB; the directory claims 3 GB for it
    meta = json.dumps({"format": "fastifkl-model", "format_version": 1, "cfs": [1.0], "n_dims": 1}).encode()
    stream, crc, _ = bomb_entry(npy_header((MB // 8, 1)), 1)
    lie = raw_zip(tmp_path / "lie.fkl", [("meta.json", 0, meta, zlib.crc32(meta), len(meta)),
                                         ("ch000_points.npy", 8, stream, crc, 3_000_000_000)])
    peak = peak_bytes(lambda: pytest.raises(ModelError, model_file.read, lie))
    assert peak < 2 * MB
    assert "declares 3000000000 bytes from" in refused(lie)
    # a stored (uncompressed) entry must declare exactly its stored size
    lie2 = raw_zip(tmp_path / "lie2.fkl", [("meta.json", 0, meta, zlib.crc32(meta), len(meta) + 10)])
    refused(lie2, match="meta.json' declares")


def test_meta_json_bombs_and_duplicates(tmp_path, good):
    big = b"[" * 100 + b"]" * 100
    deep = b"[" * 100000 + b"]" * 100000  # json.loads -> RecursionError
    f = raw_zip(tmp_path / "deep.fkl", [("meta.json", 0, deep, zlib.crc32(deep), len(deep))])
    assert "meta.json is not valid JSON" in refused(f)
    huge = zlib.compress(b" " * (20 * MB))[2:-4]
    f = raw_zip(tmp_path / "hugemeta.fkl", [("meta.json", 8, huge, zlib.crc32(b" " * (20 * MB)), 20 * MB)])
    assert "meta.json declares 20971520 bytes" in refused(f)
    with zipfile.ZipFile(tmp_path / "dup.fkl", "w") as z, pytest.warns(UserWarning):
        z.writestr("meta.json", big)
        z.writestr("meta.json", big)
    assert "appears twice" in refused(tmp_path / "dup.fkl")


@pytest.mark.parametrize("case, msg", [
    ("truncated", "corrupt or truncated"), ("not_zip", "corrupt or truncated"), ("empty", "corrupt or truncated"),
    ("older", "format version 0 .* is not the versions this fastifkl reads .1, 2.; retrain"),
    ("newer", "format version 3 .* newer than the versions this fastifkl reads .1, 2.; upgrade"),
    ("not_json", "corrupt model file .meta.json is not valid JSON"), ("foreign", "not a fastifkl model"),
    ("missing", "corrupt model file .array 'ch001_coef' is missing"), ("bad_cfs", "'cfs' is not a list"),
    ("bad_dims", "'n_dims' is -1"), ("lzma", "compression method 14"), ("no_file", "model file not found"),
])
def test_broken_files(good, tmp_path, case, msg):
    raw = good.read_bytes()
    f = tmp_path / f"{case}.fkl"

    def meta_with(**kw):
        return lambda b: json.dumps({**json.loads(b), **kw}).encode()

    if case == "truncated":
        f.write_bytes(raw[: len(raw) * 2 // 3])
    elif case == "not_zip":
        f.write_bytes(b"RIFF....WAVEfmt " + bytes(200))
    elif case == "empty":
        f.write_bytes(b"")
    elif case == "older":
        rewrite(good, f, meta_raw=meta_with(format_version=0))
    elif case == "newer":
        rewrite(good, f, meta_raw=meta_with(format_version=3))
    elif case == "not_json":
        rewrite(good, f, meta_raw=lambda b: b"{not json")
    elif case == "foreign":
        rewrite(good, f, meta_raw=meta_with(format="other"))
    elif case == "missing":
        rewrite(good, f, drop=("ch001_coef.npy",))
    elif case == "bad_cfs":
        rewrite(good, f, meta_raw=meta_with(cfs="many"))
    elif case == "bad_dims":
        rewrite(good, f, meta_raw=meta_with(n_dims=-1))
    elif case == "lzma":
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(f, "w", zipfile.ZIP_LZMA) as zout:
            for item in zin.infolist():
                zout.writestr(item.filename, zin.read(item.filename))
    with pytest.raises(ModelError, match=msg) as ei:
        Separator.load(f)
    assert "\n" not in str(ei.value) and str(f) in str(ei.value)


# ---- through the command line ---------------------------------------------------------------
def test_cli_crafted_model_one_line_exit_2(good, tmp_path):
    evil = rewrite(good, tmp_path / "evil.fkl", {"ch000_points.npy": npy_header((10**11, 195)) + b"\0" * 64})
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(wav, np.random.default_rng(0).standard_normal(4000) * 0.1, 16000)
    for args in (["separate", "-m", str(evil), str(wav), "-o", str(tmp_path / "out")], ["info", str(evil)]):
        r = subprocess.run([sys.executable, "-m", "fastifkl.cli", *args], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "corrupt model file" in lines[0] and "evil.fkl" in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "out").exists()


def test_loading_under_an_address_space_limit(good, tmp_path):
    """In a process that cannot map even 1 GB more, the crafted files are refused with ModelError
    (a MemoryError would mean the claimed size was allocated)."""
    evil = rewrite(good, tmp_path / "evil.fkl", {"ch000_points.npy": npy_header((2_000_000, 195)) + b"\0" * 64})
    bomb = bomb_model(tmp_path / "bomb.fkl", 600)
    code = f"""
import resource, sys
from fastifkl import model_file
from fastifkl.errors import ModelError
import numpy as np
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), hard))
try:
    np.empty(3 << 30, np.uint8)
    sys.exit('the limit does not hold')
except MemoryError:
    pass
for f in {[str(evil), str(bomb), str(good)]!r}:
    try:
        model_file.read(f)
        print('ok', f)
    except ModelError as e:
        print('refused', f)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", str(evil), "refused", str(bomb), "ok", str(good)]


# ---- format 2 (calibration) and the format-1 fallback -------------------------------------------
def test_calibrated_model_round_trip_and_missing_platt(tmp_path):
    from fastifkl.separator import Separator

    path = tiny_model(tmp_path / "cal.fkl", n_channels=3, n_points=5, platt=True)
    meta, arrays = model_file.read(path)
    assert meta["format_version"] == 2 and "platt" in model_file.layout(path, meta)
    sep = Separator.load(path)
    assert sep.calibrated and sep.platt_.shape == (3, 2) and sep.level_rms is not None
    refused(rewrite(path, tmp_path / "noplatt.fkl", drop=("platt.npy",)), "array 'platt' is missing")
    refused(rewrite(path, tmp_path / "badplatt.fkl", replace={"platt.npy": npy_bytes(np.zeros((3, 3)))}),
            "'platt' has shape")


def test_format_1_file_loads_with_the_documented_fallback(tmp_path):
    """A model written before issue 11 (format 1: no calibration, no level normalisation)."""
    from fastifkl.separator import FALLBACK_PLATT, Separator

    path = tiny_model(tmp_path / "new.fkl", n_channels=3, n_points=5)

    def v1(b):
        meta = json.loads(b)
        meta["format_version"] = 1
        for k in ("level_rms", "calib_per_mixture", "mask_floor_db", "mask_beta"):
            meta["params"].pop(k)
        return json.dumps(meta).encode()

    old = rewrite(path, tmp_path / "old.fkl", meta_raw=v1)
    sep = Separator.load(old)
    assert sep.meta_["format_version"] == 1
    assert sep.level_rms is None and not sep.calibrated
    d = np.random.default_rng(0).normal(size=(3, 20))
    A, B = FALLBACK_PLATT
    np.testing.assert_allclose(sep.posterior(d), 1 / (1 + np.exp(A * d + B)), rtol=1e-12)
    x = 0.01 * np.random.default_rng(1).standard_normal(8000)
    assert sep.analysis_gain(x) == 1.0  # analysed as it is
    from typer.testing import CliRunner

    from fastifkl.cli import app

    out = CliRunner().invoke(app, ["info", str(old)]).output
    assert "level: none" in out and "calibration: none in the file" in out and "fallback" in out
    out = CliRunner().invoke(app, ["info", str(tiny_model(tmp_path / "c.fkl", 3, 5, platt=True))]).output
    assert "calibration: Platt per channel" in out and "level: every input is scaled to RMS" in out


def test_damaged_deflate_stream_is_a_corrupt_model_file(good, tmp_path):
    """A deflated entry whose compressed bytes are damaged makes zlib raise ``zlib.error`` (not a
    zipfile or OS error) inside the reader; it must read as a corrupt model file, one line."""
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = max((i for i in z.infolist() if i.compress_type == zipfile.ZIP_DEFLATED), key=lambda i: i.compress_size)
    # the entry's data starts after its local header (30 bytes + name + extra)
    lh = info.header_offset
    start = lh + 30 + int.from_bytes(raw[lh + 26:lh + 28], "little") + int.from_bytes(raw[lh + 28:lh + 30], "little")
    rng = np.random.default_rng(0)
    for _ in range(50):
        bad = bytearray(raw)
        pos = start + int(rng.integers(16, max(17, info.compress_size // 4)))
        bad[pos:pos + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        f = tmp_path / "deflate.fkl"
        f.write_bytes(bytes(bad))
        try:
            with zipfile.ZipFile(f) as z:
                z.read(info.filename)
        except zlib.error:
            break  # this damage reaches zlib itself
        except Exception:  # noqa: BLE001 - another failure mode (e.g. CRC); try other damage
            continue
    else:
        pytest.fail("no damage of the deflate stream raised zlib.error")
    msg = refused(f, match="corrupt")
    assert "error" in msg.lower()
